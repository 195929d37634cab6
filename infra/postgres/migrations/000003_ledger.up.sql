-- The reactors' side-effect ledger (projections.Effect), one row per
-- effect id ("<projector>/<event id>"); at in unix nanoseconds (UTC).
-- Their checkpoints are in checkpoints, per (projector, segment).
CREATE TABLE effects (
    id         TEXT    PRIMARY KEY,
    projector  TEXT    NOT NULL,
    urn        TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    event_name TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    refusal    JSONB,
    at         BIGINT  NOT NULL
);
-- The parked ones, oldest first.
CREATE INDEX effects_parked ON effects (at, id) WHERE status = 'parked';
