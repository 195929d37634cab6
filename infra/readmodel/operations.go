package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// operationsMigrations are the operations store's schema versions; the same
// rules as migrations.
var operationsMigrations = []string{`
CREATE TABLE dead_letters (
	id               TEXT PRIMARY KEY,
	topic            TEXT NOT NULL,
	partition_no     BIGINT NOT NULL,
	offset_no        BIGINT NOT NULL,
	record_key       TEXT NOT NULL,
	code             TEXT NOT NULL,
	error            TEXT NOT NULL,
	raw              BLOB NOT NULL,
	dead_lettered_at BIGINT NOT NULL,
	received_at      BIGINT NOT NULL,
	redrive_command_id TEXT,
	redrive_at       BIGINT,
	redrive_by       TEXT
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
CREATE INDEX dead_letters_at ON dead_letters (dead_lettered_at);
CREATE TABLE refusals (
	id          TEXT PRIMARY KEY,
	urn         TEXT NOT NULL,
	code        TEXT NOT NULL,
	event       TEXT NOT NULL,
	command_id  TEXT NOT NULL,
	rejected_at BIGINT NOT NULL,
	received_at BIGINT NOT NULL
);
CREATE INDEX refusals_at ON refusals (rejected_at);
CREATE TABLE operator_actions (
	seq    INTEGER PRIMARY KEY AUTOINCREMENT,
	at     BIGINT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	urn    TEXT NOT NULL,
	result TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX operator_actions_urn ON operator_actions (urn, seq);
`}

// Operations is the operators' store, beside the read model in its own
// SQLite file: the dead letters and refusals consumed from Kafka, and the
// record of every operator action. It is not derived from the event store,
// so a read-model rebuild leaves it alone. Records are keyed by their Kafka
// coordinates, so a redelivery or a replay stores each once.
type Operations struct {
	db      *sql.DB
	writeMu sync.Mutex
}

// DeadLetterRow is one record of the dead-letter topic.
type DeadLetterRow struct {
	ID        string // DeadLetterID(Partition, Offset)
	Topic     string // the dead-letter topic
	Partition int32
	Offset    int64
	Key       string // the record key: the original command's key, as text
	Code      string // the dead-letter code, e.g. "malformed_json"; "unreadable" when Raw is not a dead letter
	Error     string
	Raw       []byte    // the dead-letter record's value, exactly
	At        time.Time // when it was dead-lettered (deadLetteredAt), else when consumed
	Received  time.Time // when the projector consumed it
	Redrive   *Redrive  // nil until redriven
}

// Redrive is how a dead letter was sent again to the command topic.
type Redrive struct {
	CommandID string    `json:"commandId"`
	At        time.Time `json:"at"`
	By        string    `json:"by"`
}

// RefusalRow is one record of the refusals topic.
type RefusalRow struct {
	ID        string // DeadLetterID(partition, offset) on the refusals topic
	URN       string
	Code      string
	Event     string
	CommandID string
	At        time.Time // rejectedAt
	Received  time.Time
}

// OperatorAction is one recorded operator action.
type OperatorAction struct {
	Seq    int64     `json:"seq"` // order of recording, from 1
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`  // who acted
	Action string    `json:"action"` // "retry" or "redrive"
	Target string    `json:"target"` // the effect id or the dead letter id
	URN    string    `json:"urn,omitempty"`
	Result string    `json:"result"` // "done", "failed", "already_redriven", …
	Detail string    `json:"detail,omitempty"`
}

// ErrAlreadyRedriven is returned by ClaimRedrive for a dead letter that was
// redriven before.
var ErrAlreadyRedriven = errors.New("readmodel: dead letter already redriven")

// DeadLetterID names a record of a topic by partition and offset: "3-41".
func DeadLetterID(partition int32, offset int64) string {
	return fmt.Sprintf("%d-%d", partition, offset)
}

// OpenOperations opens (creating if needed) the operations store at path;
// "" or ":memory:" is a private in-memory database.
func OpenOperations(path string) (*Operations, error) {
	dsn := path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	inMemory := path == "" || path == ":memory:"
	if inMemory {
		dsn = ":memory:"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("operations store: open %q: %w", path, err)
	}
	if inMemory {
		db.SetMaxOpenConns(1)
	}
	if err := migrate(context.Background(), db, operationsMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("operations store: open %q: %w", path, err)
	}
	return &Operations{db: db}, nil
}

// Close closes the database.
func (o *Operations) Close() error { return o.db.Close() }

// AddDeadLetter stores d unless a record with its id is already stored.
func (o *Operations) AddDeadLetter(ctx context.Context, d DeadLetterRow) error {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	_, err := o.db.ExecContext(ctx, `INSERT INTO dead_letters
		(id, topic, partition_no, offset_no, record_key, code, error, raw, dead_lettered_at, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		d.ID, d.Topic, d.Partition, d.Offset, d.Key, d.Code, d.Error, d.Raw, d.At.UnixNano(), d.Received.UnixNano())
	if err != nil {
		return fmt.Errorf("operations store: add dead letter %s: %w", d.ID, err)
	}
	return nil
}

// AddRefusal stores r unless a record with its id is already stored.
func (o *Operations) AddRefusal(ctx context.Context, r RefusalRow) error {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	_, err := o.db.ExecContext(ctx, `INSERT INTO refusals (id, urn, code, event, command_id, rejected_at, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.URN, r.Code, r.Event, r.CommandID, r.At.UnixNano(), r.Received.UnixNano())
	if err != nil {
		return fmt.Errorf("operations store: add refusal %s: %w", r.ID, err)
	}
	return nil
}

const deadLetterColumns = `id, topic, partition_no, offset_no, record_key, code, error, raw, dead_lettered_at, received_at,
	redrive_command_id, redrive_at, redrive_by`

func scanDeadLetter(sc scanner) (DeadLetterRow, error) {
	var d DeadLetterRow
	var at, received int64
	var cmd, by sql.NullString
	var rat sql.NullInt64
	if err := sc.Scan(&d.ID, &d.Topic, &d.Partition, &d.Offset, &d.Key, &d.Code, &d.Error, &d.Raw, &at, &received, &cmd, &rat, &by); err != nil {
		return DeadLetterRow{}, err
	}
	d.At, d.Received = time.Unix(0, at).UTC(), time.Unix(0, received).UTC()
	if cmd.Valid {
		d.Redrive = &Redrive{CommandID: cmd.String, At: time.Unix(0, rat.Int64).UTC(), By: by.String}
	}
	return d, nil
}

// DeadLetters returns up to limit dead letters, the most recently consumed first.
func (o *Operations) DeadLetters(ctx context.Context, limit int) ([]DeadLetterRow, error) {
	rows, err := o.db.QueryContext(ctx, "SELECT "+deadLetterColumns+" FROM dead_letters ORDER BY received_at DESC, id LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("operations store: dead letters: %w", err)
	}
	defer rows.Close()
	var out []DeadLetterRow
	for rows.Next() {
		d, err := scanDeadLetter(rows)
		if err != nil {
			return nil, fmt.Errorf("operations store: dead letters: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeadLetter returns the dead letter id; an error matching ErrNoSuchRecord if none.
func (o *Operations) DeadLetter(ctx context.Context, id string) (DeadLetterRow, error) {
	d, err := scanDeadLetter(o.db.QueryRowContext(ctx, "SELECT "+deadLetterColumns+" FROM dead_letters WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return DeadLetterRow{}, fmt.Errorf("operations store: dead letter %q: %w", id, ErrNoSuchRecord)
	}
	return d, err
}

// ErrNoSuchRecord is returned for an unknown dead letter.
var ErrNoSuchRecord = errors.New("no such record")

// ClaimRedrive marks dead letter id as redriven by r, once: a second claim
// returns the first one's Redrive and ErrAlreadyRedriven, and an unknown id
// ErrNoSuchRecord.
func (o *Operations) ClaimRedrive(ctx context.Context, id string, r Redrive) (Redrive, error) {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	for {
		res, err := o.db.ExecContext(ctx, `UPDATE dead_letters SET redrive_command_id = ?, redrive_at = ?, redrive_by = ?
			WHERE id = ? AND redrive_command_id IS NULL`, r.CommandID, r.At.UnixNano(), r.By, id)
		if err != nil {
			return Redrive{}, fmt.Errorf("operations store: claim redrive of %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return r, err
		}
		d, err := o.DeadLetter(ctx, id)
		if err != nil {
			return Redrive{}, err
		}
		if d.Redrive != nil {
			return *d.Redrive, ErrAlreadyRedriven
		}
		// Released in between, through another handle on the file: claim again.
	}
}

// ReleaseRedrive undoes the claim commandID holds on dead letter id: its
// publication failed, so it may be redriven again.
func (o *Operations) ReleaseRedrive(ctx context.Context, id, commandID string) error {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	_, err := o.db.ExecContext(ctx, `UPDATE dead_letters SET redrive_command_id = NULL, redrive_at = NULL, redrive_by = NULL
		WHERE id = ? AND redrive_command_id = ?`, id, commandID)
	if err != nil {
		return fmt.Errorf("operations store: release redrive of %s: %w", id, err)
	}
	return nil
}

// CountSince counts the dead letters and refusals that happened (their
// deadLetteredAt and rejectedAt) at or after since.
func (o *Operations) CountSince(ctx context.Context, since time.Time) (deadLetters, refusals int, err error) {
	err = o.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM dead_letters WHERE dead_lettered_at >= ?),
		(SELECT COUNT(*) FROM refusals WHERE rejected_at >= ?)`, since.UnixNano(), since.UnixNano()).Scan(&deadLetters, &refusals)
	if err != nil {
		return 0, 0, fmt.Errorf("operations store: counts: %w", err)
	}
	return deadLetters, refusals, nil
}

// RecordAction appends a and returns it with its Seq.
func (o *Operations) RecordAction(ctx context.Context, a OperatorAction) (OperatorAction, error) {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	res, err := o.db.ExecContext(ctx, `INSERT INTO operator_actions (at, actor, action, target, urn, result, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, a.At.UnixNano(), a.Actor, a.Action, a.Target, a.URN, a.Result, a.Detail)
	if err != nil {
		return OperatorAction{}, fmt.Errorf("operations store: record action: %w", err)
	}
	a.Seq, err = res.LastInsertId()
	return a, err
}

// Actions returns up to limit recorded actions, oldest first: every
// action if urn is "", else those concerning urn.
func (o *Operations) Actions(ctx context.Context, urn string, limit int) ([]OperatorAction, error) {
	q := "SELECT seq, at, actor, action, target, urn, result, detail FROM operator_actions"
	args := []any{}
	if urn != "" {
		q += " WHERE urn = ?"
		args = append(args, urn)
	}
	q += " ORDER BY seq DESC LIMIT ?"
	args = append(args, limit)
	rows, err := o.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("operations store: actions: %w", err)
	}
	defer rows.Close()
	var out []OperatorAction
	for rows.Next() {
		var a OperatorAction
		var at int64
		if err := rows.Scan(&a.Seq, &at, &a.Actor, &a.Action, &a.Target, &a.URN, &a.Result, &a.Detail); err != nil {
			return nil, fmt.Errorf("operations store: actions: %w", err)
		}
		a.At = time.Unix(0, at).UTC()
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Reverse(out) // the latest limit, oldest first
	return out, nil
}
