package commands_test

import (
	"testing"

	"rxflow/commands"
)

// BenchmarkDecode measures the command boundary's cost per message: the
// input rules on a typical request.
//
//	go test -run '^$' -bench Decode -benchmem ./commands/
func BenchmarkDecode(b *testing.B) {
	raw := commands.Raw{Topic: "prescription.events", Key: []byte("urn:rx:bench-1"), Headers: map[string]string{"command-id": "cmd-1"},
		Value: []byte(`{"urn":"urn:rx:bench-1","event":"prescription.request","payload":{"patientId":"p1","prescriberId":"d1","pharmacyId":"ph1",` +
			`"medication":{"name":"Amoxicillin","code":"J01CA04","strength":"500mg","quantity":20,"refills":1}}}`)}
	for b.Loop() {
		if _, err := commands.Decode(raw, 0); err != nil {
			b.Fatal(err)
		}
	}
}
