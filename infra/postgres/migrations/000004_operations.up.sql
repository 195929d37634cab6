-- The operations store: dead letters and refusals consumed from Kafka, keyed
-- by their Kafka coordinates ("<partition>-<offset>"), so that a redelivery
-- (another instance of the consumer group, after a rebalance) stores nothing
-- new; and the record of every operator action. Times are Unix nanoseconds,
-- as given by the projector (the SQLite store's encoding).
CREATE TABLE dead_letters (
    id                 text    PRIMARY KEY,
    topic              text    NOT NULL,
    partition_no       integer NOT NULL,
    offset_no          bigint  NOT NULL,
    record_key         text    NOT NULL,
    code               text    NOT NULL,
    error              text    NOT NULL,
    raw                bytea   NOT NULL,
    dead_lettered_at   bigint  NOT NULL,
    received_at        bigint  NOT NULL,
    -- the one redrive's claim: all three set, or none
    redrive_command_id text,
    redrive_at         bigint,
    redrive_by         text,
    CHECK ((redrive_command_id IS NULL) = (redrive_at IS NULL) AND (redrive_at IS NULL) = (redrive_by IS NULL))
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC, id);
CREATE INDEX dead_letters_at ON dead_letters (dead_lettered_at);

CREATE TABLE refusals (
    id          text   PRIMARY KEY,
    urn         text   NOT NULL,
    code        text   NOT NULL,
    event       text   NOT NULL,
    command_id  text   NOT NULL,
    rejected_at bigint NOT NULL,
    received_at bigint NOT NULL
);
CREATE INDEX refusals_at ON refusals (rejected_at);

CREATE TABLE operator_actions (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     bigint NOT NULL,
    actor  text   NOT NULL,
    action text   NOT NULL,
    target text   NOT NULL,
    urn    text   NOT NULL,
    result text   NOT NULL,
    detail text   NOT NULL
);
CREATE INDEX operator_actions_urn ON operator_actions (urn, seq);

-- The query API's access log, append-only: the triggers refuse UPDATE,
-- DELETE and TRUNCATE. Writers take an EXCLUSIVE lock on access_log for
-- each transaction, so ids are assigned in commit order (see postgres.AccessLog).
CREATE TABLE access_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          bigint NOT NULL,
    subject     text   NOT NULL,
    role        text   NOT NULL,
    pharmacy_id text   NOT NULL,
    method      text   NOT NULL,
    route       text   NOT NULL,
    status      integer NOT NULL,
    outcome     text   NOT NULL
);
CREATE INDEX access_log_subject ON access_log (subject, id);
CREATE TABLE access_log_urns (
    access_id bigint  NOT NULL REFERENCES access_log (id),
    ord       integer NOT NULL,
    urn       text    NOT NULL,
    PRIMARY KEY (access_id, ord)
);
CREATE INDEX access_log_urns_urn ON access_log_urns (urn, access_id);

CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the access log is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
CREATE TRIGGER access_log_urns_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON access_log_urns
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
