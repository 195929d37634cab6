// Package upcast_test reads a store written before PrescriptionRequested v2
// (testdata/v1-store.jsonl) with today's code: the processor's handler, the
// read-model projector, the history API and a rebuild, all through the
// official client and the embedded server.
package upcast_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/infra/httpapi"
	"rxflow/infra/readmodel"
	"rxflow/projections"
	"rxflow/standin/esdbserver"
)

var testdata = filepath.Join("..", "..", "testdata")

// stored is one line of the fixture.
type stored struct {
	Stream   string          `json:"stream"`
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data"`
	Metadata json.RawMessage `json:"metadata"`
}

func lines[T any](t *testing.T, name string) []T {
	t.Helper()
	f, err := os.Open(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// load appends the fixture to a fresh embedded server through the official
// client, keeping each event's id, and returns the server.
func load(t *testing.T) *esdbserver.Server {
	t.Helper()
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	settings, err := esdb.ParseConnectionString(srv.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	settings.Logger = func(esdb.LogLevel, string, ...any) {}
	client, err := esdb.NewClient(settings)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, s := range lines[stored](t, "v1-store.jsonl") {
		var meta events.Metadata
		if err := json.Unmarshal(s.Metadata, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.SchemaVersion != 1 {
			t.Fatalf("the fixture holds %s v%d; it must stay v1", s.Type, meta.SchemaVersion)
		}
		ev := esdb.EventData{EventID: uuid.MustParse(meta.EventID), EventType: s.Type, ContentType: esdb.ContentTypeJson, Data: s.Data, Metadata: s.Metadata}
		if _, err := client.AppendToStream(context.Background(), s.Stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

// project runs the read-model projector until it has handled everything
// up to position.
func project(t *testing.T, store *eventstore.Store, rm *readmodel.Store, position uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	runner := projections.NewRunner(store, projections.NewReadModelProjector(rm), projections.RunnerConfig{Logger: slog.New(slog.DiscardHandler)})
	go func() { done <- runner.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp, err := rm.Checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cp >= position {
			return
		}
		if _, lastErr := runner.CaughtUp(); lastErr != nil {
			t.Fatalf("projector stopped: %v", lastErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model at %d, want %d", cp, position)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lastPosition(t *testing.T, store *eventstore.Store, urns ...string) uint64 {
	t.Helper()
	var last uint64
	for _, urn := range urns {
		recs, err := store.Load(context.Background(), urn)
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, recs[len(recs)-1].Position)
	}
	return last
}

const token = "fixture-token"

// noParked is a ledger with no parked effects: no reactor runs here.
type noParked struct{}

func (noParked) Parked(context.Context) ([]projections.Effect, error) { return nil, nil }

func get(t *testing.T, base, path string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

var urns = []string{"urn:rx:v1-atc", "urn:rx:v1-rxnorm", "urn:rx:v1-nocode", "urn:rx:v1-done", "urn:rx:v1-failed"}

func TestV1StoreIsReadAsCurrent(t *testing.T) {
	ctx := context.Background()
	srv := load(t)
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rm, err := readmodel.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{StaticToken: token})
	if err != nil {
		t.Fatal(err)
	}
	accessLog, err := readmodel.OpenAccessLog("")
	if err != nil {
		t.Fatal(err)
	}
	defer accessLog.Close()
	api, err := httpapi.NewHandler(httpapi.Config{Auth: auth, AccessLog: accessLog, Logger: slog.New(slog.DiscardHandler)}, rm, store, noParked{})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(api)
	defer web.Close()

	// State, as the processor loads it.
	want := map[string]struct {
		status domain.Status
		system string
	}{
		"urn:rx:v1-atc":    {domain.StatusRequested, "ATC"},
		"urn:rx:v1-rxnorm": {domain.StatusApproved, "RxNorm"},
		"urn:rx:v1-nocode": {domain.StatusRejected, "unknown"},
		"urn:rx:v1-done":   {domain.StatusCompleted, "unknown"}, // MET-500: no recognisable shape
		"urn:rx:v1-failed": {domain.StatusFailed, "ATC"},
	}
	for urn, w := range want {
		recs, err := store.Load(ctx, urn)
		if err != nil {
			t.Fatal(err)
		}
		var evs []domain.Event
		for _, r := range recs {
			evs = append(evs, r.Event)
		}
		if p := domain.Fold(evs); p.Status != w.status || p.Medication.CodeSystem != w.system {
			t.Errorf("%s: state %s with code system %q, want %s with %q", urn, p.Status, p.Medication.CodeSystem, w.status, w.system)
		}
	}

	// The read model, projected from the v1 events.
	project(t, store, rm, lastPosition(t, store, urns...))
	for urn, w := range want {
		var row projections.RowView
		get(t, web.URL, "/prescriptions/"+urn, &row)
		if row.Status != w.status || row.Medication.CodeSystem != w.system {
			t.Errorf("read model %s: %s with %q, want %s with %q", urn, row.Status, row.Medication.CodeSystem, w.status, w.system)
		}
	}
	var done projections.RowView
	get(t, web.URL, "/prescriptions/urn:rx:v1-done", &done)
	if m := done.Medication; m.Name != "Metformin" || m.Code != "MET-500" || m.Strength != "500mg" || m.Quantity != 60 ||
		done.Dispensing.LotNumber != "L42" || done.PharmacyID != "ph-2" || !done.CompletedAt.Equal(time.Date(2026, 3, 2, 9, 11, 0, 0, time.UTC)) {
		t.Errorf("read model of urn:rx:v1-done: %+v", done)
	}

	// History: every stored event, the request at the current version with
	// the version it was stored at; and the state as of a revision.
	var hist struct {
		Events []projections.HistoryEntry `json:"events"`
	}
	get(t, web.URL, "/prescriptions/urn:rx:v1-atc/history", &hist)
	if len(hist.Events) != 2 || hist.Events[0].EventType != events.NameRequested || hist.Events[1].EventType != events.NameCommandRefused {
		t.Fatalf("history: %+v", hist.Events)
	}
	var payload struct {
		Medication struct{ Code, CodeSystem string } `json:"medication"`
	}
	if err := json.Unmarshal(hist.Events[0].Payload, &payload); err != nil || hist.Events[0].SchemaVersion != 1 ||
		payload.Medication.Code != "J01CA04" || payload.Medication.CodeSystem != "ATC" {
		t.Fatalf("history of the v1 request: v%d %s (%v)", hist.Events[0].SchemaVersion, hist.Events[0].Payload, err)
	}
	if hist.Events[1].SchemaVersion != 1 || hist.Events[0].CommandID != "v1-atc-request" || hist.Events[1].CommandID != "v1-atc-complete-early" {
		t.Fatalf("history metadata: %+v", hist.Events)
	}
	var asOf projections.Snapshot
	get(t, web.URL, "/prescriptions/urn:rx:v1-rxnorm/history?asOf=0", &asOf)
	if asOf.Status != domain.StatusRequested || asOf.Revision != 0 || asOf.Prescription.Medication.CodeSystem != "RxNorm" || asOf.Prescription.Medication.Code != "314076" {
		t.Fatalf("asOf=0: %+v", asOf)
	}

	// Commands continue on the v1 prescriptions.
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	h := commands.NewHandler(store, commands.HandlerConfig{Clock: func() time.Time { return at }})
	handle := func(value string) commands.Outcome {
		t.Helper()
		env, err := commands.Decode(commands.Raw{Value: []byte(value)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := h.Handle(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	sent := lines[json.RawMessage](t, "v1-commands.jsonl")
	// Redelivered as they were first sent: the v1 request is a duplicate
	// (its fingerprint, stored by the old code, still matches), the refused
	// command gets the same refusal, and nothing is appended.
	if out := handle(string(sent[0])); out.Kind != commands.Duplicate || out.Revision != 1 {
		t.Fatalf("redelivered v1 request: %+v", out)
	}
	if out := handle(string(sent[1])); out.Kind != commands.Refused || out.Refusal == nil || out.Refusal.Code != domain.ReasonInvalidTransition || out.Revision != 1 {
		t.Fatalf("redelivered refused command: %+v", out)
	}
	if out := handle(`{"urn":"urn:rx:v1-atc","event":"prescription.approve","commandId":"now-approve","payload":{"approvedBy":"dr-1"}}`); out.Kind != commands.Appended || out.Status != domain.StatusApproved {
		t.Fatalf("approve: %+v", out)
	}
	if out := handle(`{"urn":"urn:rx:v1-atc","event":"prescription.process","commandId":"now-process","payload":{"pharmacyId":"ph-1"}}`); out.Kind != commands.Appended || out.Status != domain.StatusProcessing {
		t.Fatalf("process: %+v", out)
	}
	// A guard that reads the v1 request: no more than prescribed (20).
	if out := handle(`{"urn":"urn:rx:v1-atc","event":"prescription.dispense","commandId":"now-dispense-too-many","payload":{"quantity":21}}`); out.Kind != commands.Refused || out.Refusal.Guard != "quantity_within_prescribed" {
		t.Fatalf("dispense 21 of 20: %+v", out)
	}
	if out := handle(`{"urn":"urn:rx:v1-rxnorm","event":"prescription.process","commandId":"now-process-2","payload":{"pharmacyId":"ph-3"}}`); out.Kind != commands.Appended || out.Status != domain.StatusProcessing {
		t.Fatalf("process urn:rx:v1-rxnorm: %+v", out)
	}
	if out := handle(`{"urn":"urn:rx:v1-done","event":"prescription.fail","commandId":"now-fail","payload":{"reason":"late"}}`); out.Kind != commands.Refused || out.Refusal.Code != domain.ReasonFinalState {
		t.Fatalf("fail a completed prescription: %+v", out)
	}
	// A new request is written as v2, beside the v1 ones.
	if out := handle(`{"urn":"urn:rx:v2-new","event":"prescription.request","commandId":"now-request","payload":{"patientId":"pat-9","prescriberId":"dr-1","medication":{"name":"Lisinopril","code":"314076","codeSystem":"RxNorm","quantity":30}}}`); out.Kind != commands.Appended {
		t.Fatalf("new request: %+v", out)
	}
	recs, err := store.Load(ctx, "urn:rx:v2-new")
	if err != nil || len(recs) != 1 || recs[0].Meta.SchemaVersion != 2 || recs[0].Event.(domain.Requested).Medication.CodeSystem != "RxNorm" {
		t.Fatalf("new request stored as %+v, %v; want v2", recs, err)
	}

	// The read model follows, and a rebuild from $all gives the same rows.
	project(t, store, rm, lastPosition(t, store, append(urns, "urn:rx:v2-new")...))
	for urn, status := range map[string]domain.Status{"urn:rx:v1-atc": domain.StatusProcessing, "urn:rx:v1-rxnorm": domain.StatusProcessing, "urn:rx:v2-new": domain.StatusRequested} {
		var row projections.RowView
		get(t, web.URL, "/prescriptions/"+urn, &row)
		if row.Status != status {
			t.Errorf("read model %s: %s, want %s", urn, row.Status, status)
		}
	}
	replayed, err := projections.Replay(ctx, store, nil)
	rows := replayed.Rows
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(urns)+1 {
		t.Fatalf("rebuild: %d rows, want %d", len(rows), len(urns)+1)
	}
	for _, r := range rows {
		live, err := rm.Get(ctx, r.URN)
		if err != nil {
			t.Fatal(err)
		}
		if r.Prescription != live.Prescription {
			t.Errorf("rebuild of %s\n got %+v\nwant %+v", r.URN, r.Prescription, live.Prescription)
		}
	}
}
