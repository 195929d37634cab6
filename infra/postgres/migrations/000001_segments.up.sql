-- One row per segment: who holds it, until when, and its fencing token,
-- which every claim increments (projections.Lease).
CREATE TABLE segment_leases (
    segment    integer     PRIMARY KEY CHECK (segment >= 0),
    owner      text        NOT NULL DEFAULT '',
    token      bigint      NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);

-- The $all position each projector has handled, per segment.
CREATE TABLE checkpoints (
    projector text    NOT NULL,
    segment   integer NOT NULL,
    position  bigint  NOT NULL CHECK (position >= 0),
    PRIMARY KEY (projector, segment)
);
