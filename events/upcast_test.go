package events_test

import (
	"errors"
	"reflect"
	"testing"

	"rxflow/domain"
	"rxflow/events"
)

func TestUpcasterTableIsValid(t *testing.T) {
	if err := events.Upcasters.Validate(); err != nil {
		t.Fatal(err)
	}
	if events.SchemaVersion(events.NameRequested) != 2 || events.SchemaVersion(events.NameApproved) != 1 || events.SchemaVersion("PrescriptionTeleported") != 0 {
		t.Fatal("versions per event: Requested at 2, the others at 1, unknown names at 0")
	}
}

func same(data []byte) ([]byte, error) { return data, nil }

// table is a one-event upcaster table at version current with steps.
func table(current int, steps ...[2]int) events.UpcasterTable {
	t := events.UpcasterTable{Current: map[string]int{"E": current}}
	for _, s := range steps {
		t.Steps = append(t.Steps, events.Upcaster{Event: "E", From: s[0], To: s[1], Up: same})
	}
	return t
}

func TestUpcasterTableRefusesGaps(t *testing.T) {
	for name, tab := range map[string]events.UpcasterTable{
		"no step at all":   table(2),
		"missing v2 to v3": table(3, [2]int{1, 2}),
		"missing v1 to v2": table(3, [2]int{2, 3}),
	} {
		if err := tab.Validate(); !errors.Is(err, events.ErrUpcasterGap) {
			t.Errorf("%s: Validate = %v, want %v", name, err, events.ErrUpcasterGap)
		}
	}
	if err := table(3, [2]int{1, 2}, [2]int{2, 3}).Validate(); err != nil {
		t.Errorf("a full chain: %v", err)
	}
}

func TestUpcasterTableRefusesCycles(t *testing.T) {
	for name, tab := range map[string]events.UpcasterTable{
		"back to itself":  table(3, [2]int{1, 1}, [2]int{2, 3}),
		"back and forth":  table(4, [2]int{1, 2}, [2]int{2, 1}, [2]int{3, 4}),
		"back two places": table(4, [2]int{1, 2}, [2]int{2, 3}, [2]int{3, 1}),
	} {
		if err := tab.Validate(); !errors.Is(err, events.ErrUpcasterCycle) {
			t.Errorf("%s: Validate = %v, want %v", name, err, events.ErrUpcasterCycle)
		}
	}
}

func TestUpcasterTableRefusesChainsThatMissTheCurrentVersion(t *testing.T) {
	for name, tab := range map[string]events.UpcasterTable{
		"past the current version": table(2, [2]int{1, 3}),
		"beyond the current one":   table(2, [2]int{1, 2}, [2]int{2, 3}),
	} {
		if err := tab.Validate(); !errors.Is(err, events.ErrUpcasterMissesCurrent) {
			t.Errorf("%s: Validate = %v, want %v", name, err, events.ErrUpcasterMissesCurrent)
		}
	}
}

func TestUpcasterTableRefusesMalformedSteps(t *testing.T) {
	unknown := table(2, [2]int{1, 2})
	unknown.Steps = append(unknown.Steps, events.Upcaster{Event: "F", From: 1, To: 2, Up: same})
	nilFunc := table(2)
	nilFunc.Steps = []events.Upcaster{{Event: "E", From: 1, To: 2}}
	for name, tab := range map[string]events.UpcasterTable{
		"a step of an unknown event": unknown,
		"a step without a function":  nilFunc,
		"two steps from one version": table(2, [2]int{1, 2}, [2]int{1, 2}),
		"a step from version 0":      table(2, [2]int{0, 1}, [2]int{1, 2}),
		"an event at version 0":      table(0),
	} {
		if err := tab.Validate(); !errors.Is(err, events.ErrUpcasterInvalid) {
			t.Errorf("%s: Validate = %v, want %v", name, err, events.ErrUpcasterInvalid)
		}
	}
}

// PrescriptionRequested v1 had no medication.codeSystem: it is read as v2
// with the code system that the code's shape shows.
func TestRequestedV1IsUpcast(t *testing.T) {
	cases := []struct{ medication, system string }{
		{`{"name":"Amoxicillin","code":"J01CA04","strength":"500mg","quantity":20,"refills":1}`, "ATC"},
		{`{"name":"Lisinopril","code":"314076","quantity":30,"refills":2}`, "RxNorm"},
		{`{"name":"Ibuprofen","quantity":10,"refills":0}`, "unknown"},
		{`{"name":"Metformin","code":"MET-500","quantity":60,"refills":0}`, "unknown"},
		{`{"name":"Lower case","code":"j01ca04","quantity":1,"refills":0}`, "unknown"},
	}
	for _, tc := range cases {
		v1 := `{"urn":"urn:rx:1","patientId":"p","prescriberId":"d","pharmacyId":"ph","medication":` + tc.medication + `,"requestedAt":"2026-11-29T10:00:00Z"}`
		e, err := events.Decode(events.NameRequested, 1, []byte(v1))
		if err != nil {
			t.Fatalf("%s: %v", tc.medication, err)
		}
		r := e.(domain.Requested)
		if r.Medication.CodeSystem != tc.system || r.URN != "urn:rx:1" || r.PatientID != "p" || r.PharmacyID != "ph" || !r.At.Equal(at) {
			t.Errorf("%s: decoded %+v, want code system %q", tc.medication, r, tc.system)
		}
	}
	// The rest of the medication is carried over as it was.
	e, _ := events.Decode(events.NameRequested, 1, []byte(`{"urn":"u","patientId":"p","prescriberId":"d","medication":{"name":"n","code":"J01CA04","strength":"s","quantity":3,"refills":2},"requestedAt":"2026-11-29T10:00:00Z"}`))
	want := domain.Requested{URN: "u", PatientID: "p", PrescriberID: "d", Medication: domain.Medication{Name: "n", Code: "J01CA04", CodeSystem: "ATC", Strength: "s", Quantity: 3, Refills: 2}, At: at}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("v1 decoded as\n%#v\nwant\n%#v", e, want)
	}
}

// The v2 stored form is a contract, like v1's: pinned.
func TestRequestedV2StoredForm(t *testing.T) {
	e := domain.Requested{URN: "urn:rx:1", PatientID: "p", PrescriberID: "d", Medication: domain.Medication{Name: "Amoxicillin", Code: "J01CA04", CodeSystem: "ATC", Quantity: 20, Refills: 1}, At: at}
	p, err := events.New(e, events.Metadata{EventID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"urn":"urn:rx:1","patientId":"p","prescriberId":"d","medication":{"name":"Amoxicillin","code":"J01CA04","codeSystem":"ATC","quantity":20,"refills":1},"requestedAt":"2026-11-29T10:00:00Z"}`
	if p.Name != events.NameRequested || string(p.Data) != want || p.Meta.SchemaVersion != 2 {
		t.Fatalf("got %s v%d %s\nwant %s v2 %s", p.Name, p.Meta.SchemaVersion, p.Data, events.NameRequested, want)
	}
	a, err := events.New(domain.Approved{ApprovedBy: "d", At: at}, events.Metadata{EventID: "y"})
	if err != nil || a.Meta.SchemaVersion != 1 {
		t.Fatalf("Approved written as v%d, %v; want v1", a.Meta.SchemaVersion, err)
	}
}

// A version newer than the code knows is refused, never guessed at.
func TestNewerVersionIsRefused(t *testing.T) {
	for name, v := range map[string]int{events.NameRequested: 3, events.NameApproved: 2, events.NameCommandRefused: 9} {
		e, err := events.Decode(name, v, []byte(`{}`))
		if !errors.Is(err, events.ErrNewerVersion) || !errors.Is(err, events.ErrUnsupportedVersion) || e != nil {
			t.Errorf("Decode(%s v%d) = %v, %v; want %v", name, v, e, err, events.ErrNewerVersion)
		}
	}
	// Version 0 is unsupported, but not newer: no code will ever read it.
	if _, err := events.Decode(events.NameApproved, 0, []byte(`{}`)); !errors.Is(err, events.ErrUnsupportedVersion) || errors.Is(err, events.ErrNewerVersion) {
		t.Errorf("Decode(v0) = %v; want ErrUnsupportedVersion only", err)
	}
}
