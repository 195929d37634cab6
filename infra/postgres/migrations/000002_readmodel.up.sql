-- The read model: one row per prescription, the columns declared in
-- infra/readmodel (Columns; a test checks this table against them). urn
-- sorts bytewise (COLLATE "C"), as in SQLite, so List's keyset pages hold
-- the same rows in the same order. Timestamps are BIGINT unix nanoseconds
-- in UTC, NULL when unset.
CREATE TABLE prescriptions (
    urn TEXT COLLATE "C" PRIMARY KEY,
    status TEXT NOT NULL,
    revision BIGINT NOT NULL,
    patient_id TEXT NOT NULL,
    prescriber_id TEXT NOT NULL,
    pharmacy_id TEXT NOT NULL,
    medication_name TEXT NOT NULL,
    medication_code TEXT NOT NULL,
    medication_strength TEXT NOT NULL,
    medication_quantity BIGINT NOT NULL,
    medication_refills BIGINT NOT NULL,
    approved_by TEXT NOT NULL,
    rejected_by TEXT NOT NULL,
    rejection_reason TEXT NOT NULL,
    failure_reason TEXT NOT NULL,
    dispensed_by TEXT NOT NULL,
    dispensed_quantity BIGINT NOT NULL,
    dispensed_lot_number TEXT NOT NULL,
    requested_at BIGINT,
    approved_at BIGINT,
    rejected_at BIGINT,
    processing_at BIGINT,
    dispensed_at BIGINT,
    completed_at BIGINT,
    failed_at BIGINT,
    last_revision BIGINT NOT NULL,
    last_position BIGINT NOT NULL,
    updated_at BIGINT,
    medication_code_system TEXT NOT NULL,
    status_since BIGINT NOT NULL,
    status_at BIGINT,
    passed_deadlines BIGINT NOT NULL
);
CREATE INDEX prescriptions_status ON prescriptions (status, urn);
CREATE INDEX prescriptions_patient ON prescriptions (patient_id, urn);
CREATE INDEX prescriptions_pharmacy ON prescriptions (pharmacy_id, urn);

-- The deadlines each prescription waits for (projections.Waiting);
-- started_at in unix nanoseconds. The due ones of a deadline are one range
-- of deadlines_due.
CREATE TABLE deadlines (
    urn        TEXT COLLATE "C" NOT NULL,
    deadline   TEXT   NOT NULL,
    since      BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (urn, deadline)
);
CREATE INDEX deadlines_due ON deadlines (deadline, started_at);
