package esdbtest

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
)

// EventStoreDB compiles filter expressions with .NET's Regex (EventFilter.cs:
// new Regex(expr, RegexOptions.Compiled), matched with Match(..).Success),
// so a client may send any pattern .NET accepts. The table below holds
// constructs Go's RE2 refuses or reads differently, each with the events it
// must select.

// regexEvent is one event the regex tests write: a stream suffix and an
// event type (tok stands for a per-run token).
type regexEvent struct{ suffix, eventType string }

var regexEvents = []regexEvent{
	{"-Order-1", "Created{tok}"},
	{"-order-2", "${tok}Internal"},
	{"-Invoice-1", "PersistentConfig7"},
	{"-Order-x", "Result"},
}

// regexCase is a pattern over stream names (onType false) or event types,
// and the indexes in regexEvents it selects.
type regexCase struct {
	name    string
	onType  bool
	pattern func(base string) string
	want    []int
}

func anchored(base, rest string) string { return "^" + regexp.QuoteMeta(base) + rest }

var regexCases = []regexCase{
	// kurrentdbclient's (Python) default exclude filter for $all, and the
	// shorter one the issue reported.
	{"NegativeLookaheadSystemTypes", true, func(string) string { return `^(?!\$)` }, []int{0, 2, 3}},
	{"PythonDefaultExclude", true, func(string) string { return `^(?!(\$.+$|PersistentConfig\d+$|Result$))` }, []int{0}},
	{"PositiveLookahead", false, func(b string) string { return anchored(b, `-(?=Order)\w+-\d$`) }, []int{0}},
	{"Lookbehind", false, func(b string) string { return anchored(b, `.*(?<=-Order)-\d+$`) }, []int{0}},
	{"NegativeLookbehind", false, func(b string) string { return anchored(b, `-\w+(?<!Order)-\d$`) }, []int{1, 2}},
	{"NamedGroup", false, func(b string) string { return anchored(b, `-(?<kind>[A-Za-z]+)-\d+$`) }, []int{0, 1, 2}},
	{"NamedBackreference", false, func(b string) string { return anchored(b, `-(?<c>[A-Za-z])\w*-(?!\k<c>)`) }, []int{0, 1, 2, 3}},
	{"InlineIgnoreCase", false, func(b string) string { return "(?i)" + anchored(b, `-ORDER-`) }, []int{0, 1, 3}},
	{"ScopedIgnoreCase", false, func(b string) string { return anchored(b, `-(?i:ORDER)-\d`) }, []int{0, 1}},
	{"AtomicGroup", false, func(b string) string { return anchored(b, `-(?>Ord|Order)-`) }, []int{}},
	{"ClassSubtraction", false, func(b string) string { return anchored(b, `-[A-Z][a-z-[aeiou]]`) }, []int{0, 2, 3}},
	{"UnicodeCategory", false, func(b string) string { return anchored(b, `-\p{Lu}\p{Ll}+-`) }, []int{0, 2, 3}},
	{"PlainAlternation", false, func(b string) string { return anchored(b, `-(Order|Invoice)-1$`) }, []int{0, 2}},
}

func (s *suite) regexTests() []namedTest {
	var tests []namedTest
	for _, rc := range regexCases {
		tests = append(tests, namedTest{"Read/" + rc.name, func(t *testing.T) { s.testRegexRead(t, rc) }})
		tests = append(tests, namedTest{"Subscribe/" + rc.name, func(t *testing.T) { s.testRegexSubscribe(t, rc) }})
	}
	tests = append(tests, namedTest{"InvalidPatternFails", s.testInvalidRegex})
	return tests
}

// writeRegexEvents appends regexEvents after a marker and returns the
// marker's position, the stream prefix and the ids of the events written.
func (s *suite) writeRegexEvents(t *testing.T) (esdb.Position, string, []uuid.UUID) {
	t.Helper()
	base := streamName("rx")
	tok := "T" + strings.ReplaceAll(uuid.NewString(), "-", "")
	from := position(s.mustAppend(t, base+"-marker", esdb.NoStream{}, newEvent("RegexMarker"+tok)))
	var ids []uuid.UUID
	for _, e := range regexEvents {
		ev := newEvent(strings.ReplaceAll(e.eventType, "{tok}", tok))
		s.mustAppend(t, base+e.suffix, esdb.Any{}, ev)
		ids = append(ids, ev.EventID)
	}
	return from, base, ids
}

// ours reports whether stream is one of the test's regexEvents streams.
func ours(base, stream string) bool {
	return strings.HasPrefix(stream, base) && stream != base+"-marker"
}

// wantIDs is the ids the case selects, in $all order.
func (rc regexCase) wantIDs(ids []uuid.UUID) []uuid.UUID {
	out := []uuid.UUID{}
	for _, i := range rc.want {
		out = append(out, ids[i])
	}
	return out
}

// testRegexRead reads $all with the filter over the raw connection, as the
// Python client does: client v4.2.0 has no filtered read.
func (s *suite) testRegexRead(t *testing.T, rc regexCase) {
	from, base, ids := s.writeRegexEvents(t)
	expr := &api.ReadReq_Options_FilterOptions_Expression{Regex: rc.pattern(base)}
	fo := &api.ReadReq_Options_FilterOptions{
		Window:                       &api.ReadReq_Options_FilterOptions_Max{Max: 32},
		CheckpointIntervalMultiplier: 5,
	}
	if rc.onType {
		fo.Filter = &api.ReadReq_Options_FilterOptions_EventType{EventType: expr}
	} else {
		fo.Filter = &api.ReadReq_Options_FilterOptions_StreamIdentifier{StreamIdentifier: expr}
	}
	req := &api.ReadReq{Options: &api.ReadReq_Options{
		StreamOption: &api.ReadReq_Options_All{All: &api.ReadReq_Options_AllOptions{AllOption: &api.ReadReq_Options_AllOptions_Position{
			Position: &api.ReadReq_Options_Position{CommitPosition: from.Commit, PreparePosition: from.Prepare},
		}}},
		ReadDirection: api.ReadReq_Options_Forwards,
		CountOption:   &api.ReadReq_Options_Count{Count: 100_000},
		FilterOption:  &api.ReadReq_Options_Filter{Filter: fo},
		UuidOption:    &api.ReadReq_Options_UUIDOption{Content: &api.ReadReq_Options_UUIDOption_String_{String_: &shared.Empty{}}},
	}}
	msgs, _, err := s.rawRead(ctxFor(t), req)
	if err != nil {
		t.Fatalf("filtered read with %q: %v", expr.Regex, err)
	}
	got := []uuid.UUID{}
	for _, m := range msgs {
		ev := m.GetEvent().GetEvent()
		if ev == nil || !ours(base, string(ev.GetStreamIdentifier().GetStreamName())) {
			continue
		}
		id, err := uuid.Parse(ev.GetId().GetString_())
		if err != nil {
			t.Fatalf("event id %v: %v", ev.GetId(), err)
		}
		got = append(got, id)
	}
	if want := rc.wantIDs(ids); !slices.Equal(got, want) {
		t.Fatalf("filtered read with %q: got events %v, want %v", expr.Regex, got, want)
	}
}

// testRegexSubscribe subscribes to $all through the official client from
// before the events: what comes before CaughtUp is the stored set.
func (s *suite) testRegexSubscribe(t *testing.T, rc regexCase) {
	from, base, ids := s.writeRegexEvents(t)
	filter := &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: rc.pattern(base)}
	if rc.onType {
		filter.Type = esdb.EventFilterType
	}
	r := s.subscribeAll(t, esdb.SubscribeToAllOptions{From: from, Filter: filter})
	got := []uuid.UUID{}
	for {
		ev := r.next(t, eventTimeout)
		if ev.SubscriptionDropped != nil {
			t.Fatalf("subscription with %q dropped: %v", filter.Regex, ev.SubscriptionDropped.Error)
		}
		if ev.CaughtUp != nil {
			break
		}
		if ev.EventAppeared != nil && ours(base, ev.EventAppeared.OriginalEvent().StreamID) {
			got = append(got, ev.EventAppeared.OriginalEvent().EventID)
		}
	}
	if want := rc.wantIDs(ids); !slices.Equal(got, want) {
		t.Fatalf("filtered subscription with %q: got events %v, want %v", filter.Regex, got, want)
	}
}

// testInvalidRegex: a pattern .NET refuses fails the read and the
// subscription promptly. EventStoreDB answers Unknown (an exception in the
// handler), the embedded server InvalidArgument; both are errors.
func (s *suite) testInvalidRegex(t *testing.T) {
	for _, pattern := range []string{`(?<open`, `[z-a]`, `a{2,1}`} {
		sub, err := s.client.SubscribeToAll(promptCtx(t), esdb.SubscribeToAllOptions{
			From:   esdb.End{},
			Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: pattern},
		})
		if err == nil {
			ev := readSub(t, sub).next(t, eventTimeout)
			if ev.SubscriptionDropped == nil {
				t.Fatalf("subscription with invalid pattern %q: first message %+v, want a drop", pattern, ev)
			}
			err = ev.SubscriptionDropped.Error
		}
		requirePromptError(t, err, "subscription with invalid pattern "+pattern)
		if c := grpcCode(err); c != codes.InvalidArgument && c != codes.Unknown {
			t.Fatalf("subscription with invalid pattern %q: got %v (%v), want InvalidArgument or Unknown", pattern, err, c)
		}
	}
}
