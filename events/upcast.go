package events

import (
	"errors"
	"fmt"
	"slices"

	json "github.com/go-json-experiment/json/v1" // encoding/json's behaviour on the faster v2 engine
)

// Upcaster is one step of an event's evolution: it turns the stored JSON
// payload of Event at version From into the payload of version To. It is a
// pure function of the bytes, and once shipped it never changes: stored
// events are read through it for as long as they are kept.
type Upcaster struct {
	Event    string
	From, To int
	Up       func(data []byte) ([]byte, error)
}

// UpcasterTable declares, for each stored event name, the schema version
// this code writes (Current) and the steps (Steps) that bring every older
// stored version up to it. Decode reads an event through the table, so
// that handlers only ever see current versions.
type UpcasterTable struct {
	Current map[string]int
	Steps   []Upcaster
}

// Upcasters is the table of rxflow's events. Raising an event's version
// means adding one step from the version before; see the README's "Event
// versioning".
var Upcasters = UpcasterTable{
	Current: map[string]int{
		NameRequested:         2, // v2: medication.codeSystem
		NameApproved:          1,
		NameRejected:          1,
		NameProcessingStarted: 1,
		NameDispensed:         1,
		NameCompleted:         1,
		NameFailed:            1,
		NameCommandRefused:    1,
		NameDeadlinePassed:    1,
	},
	Steps: []Upcaster{
		{Event: NameRequested, From: 1, To: 2, Up: typed(requestedV1ToV2)},
	},
}

// Errors of UpcasterTable.Validate, one per rule, matched with errors.Is.
var (
	ErrUpcasterGap           = errors.New("upcaster gap: a version below the current one has no step")
	ErrUpcasterCycle         = errors.New("upcaster cycle: a chain of steps comes back to a version")
	ErrUpcasterMissesCurrent = errors.New("upcaster chain does not end at the current version")
	ErrUpcasterInvalid       = errors.New("invalid upcaster step")
)

// SchemaVersion is the version this code writes for the event named name,
// and 0 for a name it does not know.
func SchemaVersion(name string) int { return Upcasters.Current[name] }

// Validate checks the table: every event is at version 1 or later, steps
// name known events and are unique per (event, from), and from every
// version below the current one the steps form a chain without gaps
// (a version with no step) or cycles that ends exactly at the current
// version. It gathers every problem.
func (t UpcasterTable) Validate() error {
	var errs []error
	for _, name := range sortedKeys(t.Current) {
		if t.Current[name] < 1 {
			errs = append(errs, fmt.Errorf("%w: %s: current version %d, want 1 or later", ErrUpcasterInvalid, name, t.Current[name]))
		}
	}
	type start struct {
		event string
		from  int
	}
	seen := map[start]bool{}
	for _, s := range t.Steps {
		key := start{s.Event, s.From}
		switch _, known := t.Current[s.Event]; {
		case !known:
			errs = append(errs, fmt.Errorf("%w: %s v%d→v%d: unknown event", ErrUpcasterInvalid, s.Event, s.From, s.To))
		case s.Up == nil:
			errs = append(errs, fmt.Errorf("%w: %s v%d→v%d: no function", ErrUpcasterInvalid, s.Event, s.From, s.To))
		case seen[key]:
			errs = append(errs, fmt.Errorf("%w: %s v%d: declared twice", ErrUpcasterInvalid, s.Event, s.From))
		case s.From < 1:
			errs = append(errs, fmt.Errorf("%w: %s v%d→v%d: versions start at 1", ErrUpcasterInvalid, s.Event, s.From, s.To))
		case s.From >= t.Current[s.Event]:
			errs = append(errs, fmt.Errorf("%w: %s: a step from v%d goes on past the current v%d", ErrUpcasterMissesCurrent, s.Event, s.From, t.Current[s.Event]))
		}
		seen[key] = true
	}
	for _, name := range sortedKeys(t.Current) {
		for v := 1; v < t.Current[name]; v++ {
			if err := t.chain(name, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// chain follows the steps of name from version v and reports whether they
// end at the current version.
func (t UpcasterTable) chain(name string, v int) error {
	current := t.Current[name]
	path := []int{v}
	for at := v; at != current; {
		s, ok := t.step(name, at)
		switch {
		case !ok:
			return fmt.Errorf("%w: %s: no step from v%d (chain %s), so v%d events cannot reach the current v%d", ErrUpcasterGap, name, at, chainText(path), v, current)
		case slices.Contains(path, s.To):
			return fmt.Errorf("%w: %s: the step from v%d goes back to v%d (chain %s)", ErrUpcasterCycle, name, at, s.To, chainText(append(path, s.To)))
		case s.To > current:
			return fmt.Errorf("%w: %s: the chain from v%d passes the current v%d (chain %s)", ErrUpcasterMissesCurrent, name, v, current, chainText(append(path, s.To)))
		}
		at = s.To
		path = append(path, at)
	}
	return nil
}

func (t UpcasterTable) step(name string, from int) (Upcaster, bool) {
	for _, s := range t.Steps {
		if s.Event == name && s.From == from && s.Up != nil {
			return s, true
		}
	}
	return Upcaster{}, false
}

// Upcast brings data, the payload of name at version, to the current
// version. A version newer than the current one is ErrNewerVersion, one
// older than 1 ErrUnsupportedVersion (which ErrNewerVersion wraps too); an
// unknown name is ErrUnknownEvent.
func (t UpcasterTable) Upcast(name string, version int, data []byte) ([]byte, error) {
	current, ok := t.Current[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, name)
	case version > current:
		return nil, fmt.Errorf("%w: %s v%d is newer than this code, which reads up to v%d: deploy newer code to read it", ErrNewerVersion, name, version, current)
	case version < 1:
		return nil, fmt.Errorf("%w: %s v%d", ErrUnsupportedVersion, name, version)
	}
	for v := version; v < current; {
		s, ok := t.step(name, v)
		if !ok || s.To <= v || s.To > current {
			return nil, fmt.Errorf("%w: %s v%d: no upcaster", ErrUnsupportedVersion, name, v)
		}
		var err error
		if data, err = s.Up(data); err != nil {
			return nil, fmt.Errorf("upcast %s v%d→v%d: %w", name, v, s.To, err)
		}
		v = s.To
	}
	return data, nil
}

// typed makes a JSON step of a typed one: the payload is decoded as From,
// converted, and encoded as To.
func typed[From, To any](up func(From) To) func([]byte) ([]byte, error) {
	return func(data []byte) ([]byte, error) {
		var p From
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedPayload, err)
		}
		return json.Marshal(up(p))
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func chainText(path []int) string {
	s := ""
	for i, v := range path {
		if i > 0 {
			s += "→"
		}
		s += fmt.Sprintf("v%d", v)
	}
	return s
}
