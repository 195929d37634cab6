package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"rxflow/events"
)

// Metadata.AppendJSON reads back, with encoding/json, as what
// encoding/json's own encoding of the same metadata reads back as.
func FuzzMetadataJSON(f *testing.F) {
	f.Add("e1", "c1", "fp1:ab", "", "c1", "Dr <A> & B", "err: \"x\"\n\u2028", int64(1764556800123456789), 1, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
	f.Add("", "", "", "corr", "", "", "", int64(0), 0, "", "")
	f.Add("\xff", "é", "", "", "", "\x00", "", int64(-62135596800), 3, "\xfe", "")
	f.Fuzz(func(t *testing.T, eventID, commandID, hash, correlation, causation, actor, diagnostic string, nanos int64, version int, traceID, spanID string) {
		at := time.Unix(0, nanos).UTC()
		m := events.Metadata{EventID: eventID, CommandID: commandID, CommandHash: hash, CorrelationID: correlation, CausationID: causation,
			Actor: actor, Diagnostic: diagnostic, OccurredAt: at, SchemaVersion: version, TraceID: traceID, SpanID: spanID}
		want, err := json.Marshal(m)
		if err != nil {
			return // a time encoding/json cannot write
		}
		var fromStd, fromAppend events.Metadata
		if err := json.Unmarshal(want, &fromStd); err != nil {
			t.Fatal(err)
		}
		got := m.AppendJSON(nil)
		if err := json.Unmarshal(got, &fromAppend); err != nil {
			t.Fatalf("AppendJSON wrote %s: %v", got, err)
		}
		if fromAppend != fromStd {
			t.Fatalf("AppendJSON wrote %s, read back as %+v; encoding/json wrote %s, read back as %+v", got, fromAppend, want, fromStd)
		}
	})
}
