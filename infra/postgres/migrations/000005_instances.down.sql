DROP TABLE projector_instances;
