package eventstore_test

import (
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
)

// BenchmarkDecode is the per-event decoding of a read or a replay:
// metadata and payload of a prescription.requested event, as stored.
func BenchmarkDecode(b *testing.B) {
	urn := "urn:rx:bench-1"
	at := time.Date(2026, 11, 30, 10, 0, 0, 123456789, time.UTC)
	e := domain.Requested{URN: urn, PatientID: "patient-1", PrescriberID: "dr-1", PharmacyID: "pharmacy-1", At: at,
		Medication: domain.Medication{Name: "Amoxicillin", Code: "723", CodeSystem: "http://www.nlm.nih.gov/research/umls/rxnorm", Strength: "500 mg", Quantity: 30, Refills: 1}}
	name, data, err := events.Encode(e)
	if err != nil {
		b.Fatal(err)
	}
	id := events.EventID(urn, "cmd-1", 0)
	meta := events.Metadata{EventID: id.String(), CommandID: "cmd-1", CommandHash: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		CorrelationID: "corr-1", Actor: "dr-1", OccurredAt: at, SchemaVersion: events.SchemaVersion(name)}.AppendJSON(nil)
	ev := &esdb.ResolvedEvent{Event: &esdb.RecordedEvent{EventID: uuid.UUID(id), EventType: name, ContentType: "application/json",
		StreamID: events.StreamName(urn), Data: data, UserMetadata: meta, CreatedDate: at}}
	for b.Loop() {
		if _, err := eventstore.Decode(ev); err != nil {
			b.Fatal(err)
		}
	}
}
