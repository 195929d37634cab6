DROP TABLE deadlines;
DROP TABLE prescriptions;
