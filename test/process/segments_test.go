//go:build unix

package process_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"rxflow/domain"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

// Several projector instances on one PostgreSQL database share the event
// space by segment leases and take over from each other (docs/deploy.md).
// The lease is short, so that a takeover happens within the test's time.
const (
	segmentCount = 8
	leaseTTL     = 2 * time.Second
	// sharedSettle bounds waiting for a large workload to be handled: a
	// liveness bound, not a performance assertion.
	sharedSettle = 10 * time.Minute
)

// segmentTables are the tables whose rows are a segment's writes: each row
// written, with its checkpoint, under the segment's lease (fenced). Their
// rows carry the segment or the prescription's urn: the read model
// (prescriptions, deadlines), the reactors' ledger (effects) and every
// projector's checkpoints.
var segmentTables = []string{"checkpoints", "prescriptions", "deadlines", "effects"}

// instance is one projector process of a shared system.
type instance struct {
	id   string // PROJECTOR_INSTANCE_ID, and the application_name of its connections
	addr string // its HTTP address
	c    *child
}

// shared is a system whose read side is several projector instances on one
// PostgreSQL database.
type shared struct {
	*system
	db    *pgxpool.Pool // the test's own connections: leases and the write audit
	insts []*instance
}

// newShared starts the core system and n projector instances on a fresh
// PostgreSQL database, and waits until every segment is held. It skips the
// test without RXFLOW_TEST_POSTGRES. Kafka is the real cluster of
// KAFKA_BROKERS if set, else an embedded one: these tests are long, so
// they run on one cluster only.
func newShared(t *testing.T, n int) *shared {
	t.Helper()
	dbURL := postgrestest.URL(t)
	brokers := kafkatest.RealBrokers()
	if brokers == nil {
		brokers = kafkatest.Brokers(t)
	}
	ctx := t.Context()
	// Migrate first, so that the audit covers every write of the instances.
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	installAudit(t, pool)

	s := &shared{system: newCore(t, brokers), db: pool}
	s.poll = time.Second // the partner report alone is megabytes
	for i := range n {
		id := fmt.Sprintf("projector-%c", 'a'+i)
		in := &instance{id: id, addr: freeAddr(t)}
		in.c = newChild(t, id, bin.projector, nil, append(s.projectorEnv(),
			"DATABASE_URL="+withAppName(t, dbURL, id), "PROJECTOR_INSTANCE_ID="+id,
			fmt.Sprint("PROJECTOR_SEGMENTS=", segmentCount), "PROJECTOR_LEASE_TTL="+leaseTTL.String(),
			"PROJECTOR_HTTP_ADDR="+in.addr, "PROJECTOR_DATA_DIR="+t.TempDir()))
		s.insts = append(s.insts, in)
		s.projs = append(s.projs, in.c)
	}
	for _, in := range s.insts {
		in.c.start(t)
	}
	for _, in := range s.insts {
		s.waitHTTP(t, in.c, "http://"+in.addr+"/healthz")
	}
	s.waitAllHeld(t, "")
	s.projAddr = s.insts[0].addr
	return s
}

// withAppName sets application_name in a PostgreSQL URL: the audit names
// the instance that wrote each row by it.
func withAppName(t *testing.T, dbURL, name string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// installAudit adds the write audit: a trigger on the lease table and on
// each segment table records every row written, in the order the writes
// took their row locks (a claim waits for the fenced writes that hold its
// lease row, and they for it), with the writer's application_name.
func installAudit(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	stmts := []string{`CREATE TABLE rxtest_audit (
			id        bigserial   PRIMARY KEY,
			at        timestamptz NOT NULL DEFAULT clock_timestamp(),
			app       text        NOT NULL DEFAULT current_setting('application_name'),
			tbl       text        NOT NULL,
			segment   integer,
			urn       text,
			owner     text,
			token     bigint,
			projector text,
			position  bigint)`,
		`CREATE FUNCTION rxtest_audit() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE r jsonb;
		BEGIN
			IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
			INSERT INTO rxtest_audit (tbl, segment, urn, owner, token, projector, position)
			VALUES (TG_TABLE_NAME, (r->>'segment')::integer, r->>'urn', r->>'owner', (r->>'token')::bigint,
				r->>'projector', (r->>'position')::bigint);
			RETURN NULL;
		END $$`}
	for _, table := range append([]string{"segment_leases"}, segmentTables...) {
		stmts = append(stmts, `CREATE TRIGGER rxtest_audit AFTER INSERT OR UPDATE OR DELETE ON `+
			pgx.Identifier{table}.Sanitize()+` FOR EACH ROW EXECUTE FUNCTION rxtest_audit()`)
	}
	for _, q := range stmts {
		if _, err := db.Exec(t.Context(), q); err != nil {
			t.Fatalf("write audit: %v\n%s", err, q)
		}
	}
}

// lease is a row of segment_leases.
type lease struct {
	segment int
	owner   string
	token   int64
	live    bool // not expired
}

func (s *shared) leases(t *testing.T) []lease {
	t.Helper()
	rows, err := s.db.Query(t.Context(), `SELECT segment, owner, token, expires_at > now() FROM segment_leases ORDER BY segment`)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (l lease, err error) {
		return l, r.Scan(&l.segment, &l.owner, &l.token, &l.live)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// heldBy returns the segments id holds now.
func (s *shared) heldBy(t *testing.T, id string) []int {
	t.Helper()
	var held []int
	for _, l := range s.leases(t) {
		if l.owner == id && l.live {
			held = append(held, l.segment)
		}
	}
	return held
}

// waitAllHeld waits until every segment is held by a live lease of an
// instance other than gone.
func (s *shared) waitAllHeld(t *testing.T, gone string) {
	t.Helper()
	s.eventuallyf(t, startTimeout, "every segment held by a live instance", func() (bool, string) {
		ls := s.leases(t)
		ok := len(ls) == segmentCount
		for _, l := range ls {
			ok = ok && l.live && l.owner != "" && l.owner != gone
		}
		return ok, fmt.Sprintf("leases %+v", ls)
	})
}

// busiest returns the running instance that holds the most segments, and
// them; it fails the test if none holds any.
func (s *shared) busiest(t *testing.T) (*instance, []int) {
	t.Helper()
	var best *instance
	var held []int
	for _, in := range s.insts {
		if h := s.heldBy(t, in.id); in.c.running() && len(h) > len(held) {
			best, held = in, h
		}
	}
	if best == nil {
		t.Fatalf("no running instance holds a segment: %+v", s.leases(t))
	}
	return best, held
}

// serveFrom points the query helpers at a running instance other than not.
func (s *shared) serveFrom(t *testing.T, not *instance) {
	t.Helper()
	for _, in := range s.insts {
		if in != not && in.c.running() {
			s.projAddr = in.addr
			return
		}
	}
	t.Fatal("no running instance to query")
}

// takeover waits until every segment of held (held by in when it stopped
// at since) is held by another instance, and returns how long after since
// the last of them was claimed, by the audit's clock.
func (s *shared) takeover(t *testing.T, in *instance, held []int, since time.Time) time.Duration {
	t.Helper()
	s.waitAllHeld(t, in.id)
	var last time.Time
	err := s.db.QueryRow(t.Context(), `SELECT max(first) FROM (
			SELECT min(at) AS first FROM rxtest_audit
			WHERE tbl = 'segment_leases' AND at > $1 AND owner <> $2 AND owner <> '' AND segment = ANY($3)
			GROUP BY segment) claims`, since, in.id, held).Scan(&last)
	if err != nil {
		t.Fatalf("takeover time: %v", err)
	}
	return last.Sub(since)
}

// write is one audited row write.
type write struct {
	id      int64
	at      time.Time
	app     string // the writer's instance id
	table   string
	segment int
	owner   string // segment_leases: the holder written
}

// audit returns every audited write, in lock order, each with its segment
// (a row's own, or its urn's: projections.SegmentOf hashes the urn; the
// deadline scheduler's effects are segment 0's).
func (s *shared) audit(t *testing.T) []write {
	t.Helper()
	rows, err := s.db.Query(t.Context(), `SELECT id, at, app, tbl, segment, urn, coalesce(owner, ''), coalesce(projector, '') FROM rxtest_audit ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (w write, err error) {
		var segment *int
		var urn *string
		var projector string
		if err := r.Scan(&w.id, &w.at, &w.app, &w.table, &segment, &urn, &w.owner, &projector); err != nil {
			return w, err
		}
		switch {
		case w.table == "effects" && projector == "deadlines":
			w.segment = 0 // the deadline scheduler's, under segment 0's lease
		case segment != nil:
			w.segment = *segment
		case urn != nil:
			w.segment = projections.SegmentOf(*urn, segmentCount)
		default:
			return w, fmt.Errorf("audit %d: a write to %s names no segment", w.id, w.table)
		}
		return w, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// checkFencing reads the whole write audit (fencingViolations) and returns
// the number of segment writes per instance.
func (s *shared) checkFencing(t *testing.T, ws []write) map[string]int {
	t.Helper()
	bad := fencingViolations(ws)
	for _, v := range bad[:min(10, len(bad))] {
		t.Error(v)
	}
	if len(bad) > 0 {
		t.Errorf("%d writes in all by an instance that did not hold the segment's lease", len(bad))
	}
	writes := map[string]int{}
	for _, w := range ws {
		if w.table != "segment_leases" {
			writes[w.app]++
		}
	}
	return writes
}

// fencingViolations: every write to a segment table must come from the
// instance that holds the segment's lease at that point of the lock order
// (the last lease row written for the segment). A write by an instance
// that has lost the lease is what fencing forbids; each is described.
func fencingViolations(ws []write) []string {
	owner := map[int]string{}
	var bad []string
	for _, w := range ws {
		if w.table == "segment_leases" {
			owner[w.segment] = w.owner
			continue
		}
		if owner[w.segment] != w.app {
			bad = append(bad, fmt.Sprintf("audit %d at %s: %s wrote to %s for segment %d while %q held its lease",
				w.id, w.at.Format(time.TimeOnly+".000"), w.app, w.table, w.segment, owner[w.segment]))
		}
	}
	return bad
}

// writesBy counts id's checkpoint writes after since to segments (every
// segment write commits with its checkpoint).
func (s *shared) writesBy(t *testing.T, id string, segments []int, since time.Time) int {
	t.Helper()
	var n int
	err := s.db.QueryRow(t.Context(), `SELECT count(*) FROM rxtest_audit
		WHERE tbl = 'checkpoints' AND app = $1 AND at > $2 AND segment = ANY($3)`, id, since, segments).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// planShared returns n prescriptions: per ten, one rejected, one failed by
// its own prescription.fail, one whose order the pharmacy refuses (the
// projector fails it), seven completed.
func planShared(n int) []rx {
	out := make([]rx, n)
	for i := range out {
		r := rx{urn: fmt.Sprintf("urn:rx:shared-%04d", i), final: domain.StatusCompleted}
		cmds := lifecycles[domain.StatusCompleted]
		switch i % 10 {
		case 3:
			r.final, cmds = domain.StatusRejected, lifecycles[domain.StatusRejected]
		case 7:
			r.final, cmds = domain.StatusFailed, lifecycles[domain.StatusFailed]
		case 5:
			r.final, r.refused, cmds = domain.StatusFailed, true, cmds[:3] // request, approve, process
		}
		for j, e := range cmds {
			r.cmds = append(r.cmds, command{id: fmt.Sprintf("cmd-%04d-%d", i, j), event: e})
		}
		out[i] = r
	}
	return out
}

// expectedAccepted counts the partner calls each partner must accept: a
// refused order is none, and its prescription's failure alerts support.
func expectedAccepted(rxs []rx) map[partnersim.Partner]int {
	n := expectedCalls(rxs)
	for _, r := range rxs {
		if r.refused {
			n[partnersim.Pharmacy]--
			n[partnersim.Alerting]++
		}
	}
	return n
}

// accepted is how many calls each partner has accepted so far.
func (s *shared) accepted(t *testing.T) map[partnersim.Partner]int {
	t.Helper()
	n := map[partnersim.Partner]int{}
	for p, r := range s.simCalls(t) {
		n[p] = len(r.Accepted)
	}
	return n
}

func total(n map[partnersim.Partner]int) int {
	sum := 0
	for _, v := range n {
		sum += v
	}
	return sum
}

// simControl POSTs a /_sim/ control to the partner simulators.
func (s *shared) simControl(t *testing.T, pathAndQuery string) {
	t.Helper()
	resp, err := client.Post("http://"+s.simAddr+pathAndQuery, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: status %d", pathAndQuery, resp.StatusCode)
	}
}

// tryRows is rows without failing: the instance asked may be going down.
func (s *shared) tryRows() (map[string]projections.RowView, error) {
	out := map[string]projections.RowView{}
	cursor := ""
	for {
		path := "http://" + s.projAddr + "/prescriptions?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		req, err := newAuthRequest(path)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items      []projections.RowView
			NextCursor string
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			return nil, fmt.Errorf("GET %s: status %d, %v", path, resp.StatusCode, err)
		}
		for _, r := range page.Items {
			out[r.URN] = r
		}
		if cursor = page.NextCursor; cursor == "" {
			return out, nil
		}
	}
}

// waitSettled waits until the read model shows every prescription in its
// final status and every partner accepted every call it must.
func (s *shared) waitSettled(t *testing.T, rxs []rx) {
	t.Helper()
	want := expectedAccepted(rxs)
	s.eventuallyf(t, sharedSettle, "every prescription final and every partner call accepted", func() (bool, string) {
		rows, err := s.tryRows()
		if err != nil {
			return false, err.Error()
		}
		var pending []string
		for _, r := range rxs {
			if rows[r.urn].Status != r.final {
				pending = append(pending, fmt.Sprintf("%s is %q", r.urn, rows[r.urn].Status))
			}
		}
		got := s.accepted(t)
		state := fmt.Sprintf("%d of %d prescriptions not final %v; partner calls accepted %v of %v; leases %+v",
			len(pending), len(rxs), pending[:min(3, len(pending))], got, want, s.leases(t))
		if len(pending) > 0 {
			return false, state
		}
		for p, n := range want {
			if got[p] < n {
				return false, state
			}
		}
		return true, state
	})
}

// waitOutbound waits until prescription.status-changed carries every
// stored event: the outbound projectors of every segment have caught up.
func (s *shared) waitOutbound(t *testing.T, hist map[string][]projections.HistoryEntry) {
	t.Helper()
	want := 0
	for _, h := range hist {
		want += len(h)
	}
	s.eventuallyf(t, sharedSettle, "every event on "+s.topics.changed, func() (bool, string) {
		keys := map[string]bool{}
		for _, rec := range kafkatest.ConsumeAll(t, s.brokers, s.topics.changed) {
			keys[rec.Headers["dedupe-key"]] = true
		}
		return len(keys) >= want, fmt.Sprintf("%d distinct dedupe keys of %d events", len(keys), want)
	})
}

// checkReadModelIsStreams: each prescription's read-model row is its
// stream folded (the query API's state as of its last revision), at the
// stream's last revision.
func (s *shared) checkReadModelIsStreams(t *testing.T, rxs []rx) {
	t.Helper()
	rows := s.rows(t)
	bad := 0
	for _, r := range rxs {
		var snap projections.Snapshot
		s.api(t, "/prescriptions/"+r.urn+"/history?asOf=1000000", &snap)
		row := rows[r.urn]
		got, _ := json.Marshal(row.PrescriptionView)
		want, _ := json.Marshal(snap.Prescription)
		if string(got) != string(want) || row.LastRevision != snap.Revision {
			if bad++; bad <= 5 {
				t.Errorf("%s: read model at revision %d is %s; its stream folded to revision %d is %s", r.urn, row.LastRevision, got, snap.Revision, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d read-model rows differ from their streams", bad, len(rxs))
	}
}

// checkShared runs every check on a settled shared system.
func (s *shared) checkShared(t *testing.T, rxs []rx) {
	t.Helper()
	s.serveFrom(t, nil)
	hist := s.histories(t, rxs)
	s.waitOutbound(t, hist)
	checkStreams(t, rxs, hist)
	s.checkReadModel(t, rxs, hist)
	s.checkReadModelIsStreams(t, rxs)
	s.checkNoRejections(t)
	s.checkPartners(t, rxs, hist)
	s.checkOutbound(t, rxs, hist)
	t.Logf("segment writes per instance: %v", s.checkFencing(t, s.audit(t)))
}

// Three projector instances on one PostgreSQL database handle 5,000
// prescriptions; the pharmacy refuses one order in ten. The instance
// holding the most segments is SIGKILLed in the middle, another later,
// each restarted once its segments were taken over. Afterwards every
// partner effect happened once, under one key; every dispensed and failed
// message is there; the read model is the streams; and no instance ever
// wrote for a segment whose lease it did not hold.
func TestSharedProjectorsSIGKILL(t *testing.T) {
	s := newShared(t, 3)
	s.simControl(t, fmt.Sprintf("/_sim/refuse?partner=pharmacy&field=pharmacyId&value=%s&status=%d", closedPharmacy, refusalStatus))
	rxs := planShared(5000)
	want := total(expectedAccepted(rxs))
	s.produce(t, rxs, 0, 1, 2, 3, 4)

	for _, at := range []float64{0.3, 0.65} {
		s.eventuallyf(t, sharedSettle, fmt.Sprintf("%.0f%% of the partner calls", at*100), func() (bool, string) {
			got := total(s.accepted(t))
			return float64(got) >= at*float64(want), fmt.Sprintf("%d of %d accepted", got, want)
		})
		victim, held := s.busiest(t)
		killedAt := time.Now()
		victim.c.kill(t)
		s.serveFrom(t, victim)
		took := s.takeover(t, victim, held, killedAt)
		t.Logf("SIGKILL %s holding segments %v at %d of %d partner calls: taken over in %v (lease %v)",
			victim.id, held, total(s.accepted(t)), want, took.Round(time.Millisecond), leaseTTL)
		victim.c.start(t)
		s.waitHTTP(t, victim.c, "http://"+victim.addr+"/healthz")
	}
	s.waitSettled(t, rxs)
	s.checkShared(t, rxs)
}

// An instance paused (SIGSTOP) past its lease, while its reactors wait on
// a slow pharmacy, loses its segments to another; resumed (SIGCONT), it
// writes nothing for them: the audit of every segment write shows none of
// its writes after the takeover unless it claimed the segment again, and
// the work is done once.
func TestStaleProjectorInstanceWritesNothing(t *testing.T) {
	s := newShared(t, 2)
	s.simControl(t, fmt.Sprintf("/_sim/refuse?partner=pharmacy&field=pharmacyId&value=%s&status=%d", closedPharmacy, refusalStatus))
	s.simControl(t, "/_sim/latency?partner=pharmacy&ms=300") // calls in flight at the pause
	rxs := planShared(200)
	s.produce(t, rxs, 0, 1, 2)

	victim, _ := s.busiest(t)
	s.eventuallyf(t, sharedSettle, victim.id+" writing in its segments", func() (bool, string) {
		n := s.writesBy(t, victim.id, s.heldBy(t, victim.id), time.Time{})
		return n >= 20, fmt.Sprintf("%d writes", n)
	})
	held := s.heldBy(t, victim.id)
	stoppedAt := time.Now()
	victim.c.pause(t)
	s.serveFrom(t, victim)
	took := s.takeover(t, victim, held, stoppedAt)
	s.produce(t, rxs, 3) // work for the lost segments while it sleeps
	s.eventuallyf(t, sharedSettle, "the new holders working in the lost segments", func() (bool, string) {
		n := 0
		for _, in := range s.insts {
			if in != victim {
				n += s.writesBy(t, in.id, held, stoppedAt.Add(took))
			}
		}
		return n >= 20, fmt.Sprintf("%d writes", n)
	})

	resumedAt := time.Now()
	victim.c.resume(t)
	t.Logf("%s paused %v holding segments %v; taken over in %v (lease %v)",
		victim.id, resumedAt.Sub(stoppedAt).Round(time.Millisecond), held, took.Round(time.Millisecond), leaseTTL)
	s.produce(t, rxs, 4)
	s.waitSettled(t, rxs)
	s.checkShared(t, rxs)

	// The check above in the stale instance's words: whatever it wrote
	// after the pause in a segment it lost, it wrote under a new claim.
	lost := map[int]bool{}
	for _, seg := range held {
		lost[seg] = true
	}
	// gone: the segment's lease was last written for another instance.
	stale, gone, reclaimed := 0, map[int]bool{}, map[int]bool{}
	for _, w := range s.audit(t) {
		switch {
		case !w.at.After(stoppedAt) || !lost[w.segment]:
		case w.table == "segment_leases":
			gone[w.segment] = w.owner != victim.id
			reclaimed[w.segment] = reclaimed[w.segment] || w.owner == victim.id
		case w.app == victim.id && gone[w.segment]:
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("%s wrote %d rows for segments it had lost, before claiming them again", victim.id, stale)
	}
	again := 0
	for _, ok := range reclaimed {
		if ok {
			again++
		}
	}
	t.Logf("%s claimed again %d of the %d segments it lost", victim.id, again, len(held))
}

// pause SIGSTOPs the current run; resume SIGCONTs it. Neither marks it as
// stopped on purpose: it must not exit meanwhile.
func (c *child) pause(t *testing.T)  { c.send(t, syscall.SIGSTOP) }
func (c *child) resume(t *testing.T) { c.send(t, syscall.SIGCONT) }

func (c *child) send(t *testing.T, sig syscall.Signal) {
	t.Helper()
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	fmt.Fprintf(&c.out, "==== test sends %v to %s, %s ====\n", sig, c.name, time.Now().Format(time.TimeOnly))
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", c.name, err)
	}
}

// newAuthRequest is a GET of url with the test's bearer token.
func newAuthRequest(url string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}

// The write audit itself, on a database without projectors: a write made
// after another instance claimed the segment is reported, one made under
// the writer's own claim is not, and a row named by urn falls in its
// urn's segment.
func TestWriteAuditSeesStaleWrites(t *testing.T) {
	dbURL := postgrestest.URL(t)
	ctx := t.Context()
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	installAudit(t, pool)
	as := func(app string) *pgx.Conn {
		c, err := pgx.Connect(ctx, withAppName(t, dbURL, app))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	a, b := as("projector-a"), as("projector-b")
	exec := func(c *pgx.Conn, q string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	claim := `INSERT INTO segment_leases (segment, owner, token, expires_at) VALUES ($1, current_setting('application_name'), 1, now() + interval '2 s')
		ON CONFLICT (segment) DO UPDATE SET owner = excluded.owner, token = segment_leases.token + 1, expires_at = excluded.expires_at`
	checkpoint := `INSERT INTO checkpoints (projector, segment, position) VALUES ('readmodel', $1, $2)
		ON CONFLICT (projector, segment) DO UPDATE SET position = excluded.position`
	exec(a, claim, 3)
	exec(a, checkpoint, 3, 10) // a holds 3: fine
	exec(b, claim, 3)
	exec(b, checkpoint, 3, 20) // b holds 3: fine
	exec(a, checkpoint, 3, 30) // a lost 3: stale
	exec(a, claim, 3)
	exec(a, checkpoint, 3, 40) // a claimed 3 again: fine

	ws := (&shared{db: pool}).audit(t)
	bad := fencingViolations(ws)
	if len(bad) != 1 || !strings.Contains(bad[0], `projector-a wrote to checkpoints for segment 3 while "projector-b" held its lease`) {
		t.Errorf("violations %q, want the one stale write of projector-a", bad)
	}

	urn := "urn:rx:audit-1"
	seg := projections.SegmentOf(urn, segmentCount)
	if _, err := pool.Exec(ctx, `CREATE TABLE rows_by_urn (urn text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TRIGGER rxtest_audit AFTER INSERT ON rows_by_urn FOR EACH ROW EXECUTE FUNCTION rxtest_audit()`); err != nil {
		t.Fatal(err)
	}
	exec(b, `INSERT INTO rows_by_urn (urn) VALUES ($1)`, urn)
	ws = (&shared{db: pool}).audit(t)
	if last := ws[len(ws)-1]; last.table != "rows_by_urn" || last.segment != seg || last.app != "projector-b" {
		t.Errorf("a row named by urn is audited as %+v, want segment %d by projector-b", last, seg)
	}
}
