DROP TABLE checkpoints;
DROP TABLE segment_leases;
