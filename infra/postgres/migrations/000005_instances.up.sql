-- The live projector instances: each marks itself live for one lease time
-- at every round of claims, so that each can compute its fair share of the
-- segments, ceil(segments / live instances).
CREATE TABLE projector_instances (
    id         text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
