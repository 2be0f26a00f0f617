// Package eventsourcetest is the conformance suite for implementations of
// [eventsource.Store] and [eventsource.SnapshotStore], in the manner of
// testing/fstest: an adapter's tests call [Run] (and [RunSnapshotStore])
// with a constructor, and every rule of the contract is checked against
// the interface alone.
//
//	func TestConformance(t *testing.T) {
//		eventsourcetest.Run(t, func(t *testing.T) eventsource.Store {
//			return newEmptyStore(t) // a fresh, empty store per call
//		})
//	}
//
// The suite needs nothing beyond the standard library.
package eventsourcetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/eventsource"
)

// Run checks that the stores returned by newStore follow the
// [eventsource.Store] contract. newStore is called once per subtest and
// must return a new, empty store (head 0, no streams); it may register
// cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) eventsource.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, eventsource.Store)
	}{
		{"AppendAssignsVersionsAndPositions", testAppendAssigns},
		{"AppendAssignsMissingIDs", testAssignsIDs},
		{"ExpectedVersion", testExpectedVersion},
		{"InvalidAppend", testInvalidAppend},
		{"IdempotentResend", testIdempotentResend},
		{"DuplicateEventID", testDuplicateEventID},
		{"ConcurrentResends", testConcurrentResends},
		{"AppendStreamsAtomic", testAppendStreamsAtomic},
		{"AppendStreamsResend", testAppendStreamsResend},
		{"CopiesOnAppendAndRead", testCopies},
		{"ReadStreamRanges", testReadStreamRanges},
		{"ReadStreamAsOf", testReadStreamAsOf},
		{"ReadAllFromAndFilter", testReadAllFilter},
		{"IteratorsStopEarly", testStopEarly},
		{"ContextCancelled", testContextCancelled},
		{"Wait", testWait},
		{"SubscribeCatchUpThenLive", testSubscribe},
		{"SubscribeFilteredResume", testSubscribeFiltered},
		{"SlowSubscriberCatchesUp", testSlowSubscriber},
		{"ConcurrentWritersOneStream", testRaceOneStream},
		{"ConcurrentWritersRetry", testRaceRetry},
		{"FollowerSeesEveryEventOnce", testFollower},
		{"StreamReadsDuringAppends", testStreamReadsDuringAppends},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tc.fn(t, s)
		})
	}
}

func ev(typ, data string) eventsource.EventData {
	return eventsource.EventData{Type: typ, Data: []byte(data)}
}

func evID(id, typ, data string) eventsource.EventData {
	return eventsource.EventData{ID: id, Type: typ, Data: []byte(data)}
}

func mustAppend(t *testing.T, s eventsource.Store, stream string, exp eventsource.ExpectedVersion, evs ...eventsource.EventData) eventsource.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, exp, evs...)
	if err != nil {
		t.Fatalf("Append(%q, %v): %v", stream, exp, err)
	}
	return res
}

func readStream(t *testing.T, s eventsource.Store, stream string, q eventsource.StreamQuery) []eventsource.Event {
	t.Helper()
	var out []eventsource.Event
	for e, err := range s.ReadStream(context.Background(), stream, q) {
		if err != nil {
			t.Fatalf("ReadStream(%q, %+v): %v", stream, q, err)
		}
		out = append(out, e)
	}
	return out
}

func readAll(t *testing.T, s eventsource.Store, from uint64, f eventsource.Filter) []eventsource.Event {
	t.Helper()
	var out []eventsource.Event
	for e, err := range s.ReadAll(context.Background(), from, f) {
		if err != nil {
			t.Fatalf("ReadAll(%d, %+v): %v", from, f, err)
		}
		out = append(out, e)
	}
	return out
}

func head(t *testing.T, s eventsource.Store) uint64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

func streamVersion(t *testing.T, s eventsource.Store, stream string) uint64 {
	t.Helper()
	v, err := s.StreamVersion(context.Background(), stream)
	if err != nil {
		t.Fatalf("StreamVersion(%q): %v", stream, err)
	}
	return v
}

// sameEvent reports how a and b differ, or "" when they are the same
// event. Data compares by content (nil equals empty), headers likewise.
func sameEvent(a, b eventsource.Event) string {
	switch {
	case a.StreamID != b.StreamID:
		return fmt.Sprintf("stream %q != %q", a.StreamID, b.StreamID)
	case a.Version != b.Version:
		return fmt.Sprintf("version %d != %d", a.Version, b.Version)
	case a.Position != b.Position:
		return fmt.Sprintf("position %d != %d", a.Position, b.Position)
	case a.ID != b.ID:
		return fmt.Sprintf("ID %q != %q", a.ID, b.ID)
	case a.Type != b.Type:
		return fmt.Sprintf("type %q != %q", a.Type, b.Type)
	case a.SchemaVersion != b.SchemaVersion:
		return fmt.Sprintf("schema version %d != %d", a.SchemaVersion, b.SchemaVersion)
	case !a.Time.Equal(b.Time):
		return fmt.Sprintf("time %v != %v", a.Time, b.Time)
	case !bytes.Equal(a.Data, b.Data):
		return fmt.Sprintf("data %q != %q", a.Data, b.Data)
	case a.Metadata.CorrelationID != b.Metadata.CorrelationID || a.Metadata.CausationID != b.Metadata.CausationID:
		return fmt.Sprintf("metadata %+v != %+v", a.Metadata, b.Metadata)
	case !maps.Equal(a.Metadata.Headers, b.Metadata.Headers):
		return fmt.Sprintf("headers %v != %v", a.Metadata.Headers, b.Metadata.Headers)
	}
	return ""
}

// checkLog checks the global-log invariants over the whole store: positions
// 1..head with no gap, per-stream versions contiguous from 1, unique IDs,
// non-decreasing times, and ReadStream agreeing with ReadAll.
func checkLog(t *testing.T, s eventsource.Store) []eventsource.Event {
	t.Helper()
	all := readAll(t, s, 0, eventsource.Filter{})
	if h := head(t, s); uint64(len(all)) != h {
		t.Fatalf("ReadAll returned %d events, head is %d", len(all), h)
	}
	ids := make(map[string]uint64, len(all))
	streams := make(map[string][]eventsource.Event)
	for i, e := range all {
		if e.Position != uint64(i+1) {
			t.Fatalf("event %d of the log has position %d", i+1, e.Position)
		}
		if prev, dup := ids[e.ID]; dup {
			t.Fatalf("event ID %q at positions %d and %d", e.ID, prev, e.Position)
		}
		ids[e.ID] = e.Position
		if i > 0 && e.Time.Before(all[i-1].Time) {
			t.Fatalf("time goes backwards at position %d: %v after %v", e.Position, e.Time, all[i-1].Time)
		}
		streams[e.StreamID] = append(streams[e.StreamID], e)
	}
	for id, evs := range streams {
		got := readStream(t, s, id, eventsource.StreamQuery{})
		if len(got) != len(evs) {
			t.Fatalf("stream %q: ReadStream has %d events, ReadAll %d", id, len(got), len(evs))
		}
		for i := range evs {
			if evs[i].Version != uint64(i+1) {
				t.Fatalf("stream %q: event %d has version %d", id, i+1, evs[i].Version)
			}
			if d := sameEvent(got[i], evs[i]); d != "" {
				t.Fatalf("stream %q version %d: ReadStream and ReadAll differ: %s", id, i+1, d)
			}
		}
		if v := streamVersion(t, s, id); v != uint64(len(evs)) {
			t.Fatalf("StreamVersion(%q) = %d, want %d", id, v, len(evs))
		}
	}
	return all
}

func testAppendAssigns(t *testing.T, s eventsource.Store) {
	if h := head(t, s); h != 0 {
		t.Fatalf("new store has head %d, want 0", h)
	}
	md := eventsource.Metadata{CorrelationID: "corr-1", CausationID: "cmd-1", Headers: map[string]string{"tenant": "acme"}}
	r1 := mustAppend(t, s, "order-1", eventsource.NoStream,
		eventsource.EventData{ID: "e1", Type: "order.placed", Data: []byte(`{"n":1}`), Metadata: md},
		eventsource.EventData{ID: "e2", Type: "order.paid", SchemaVersion: 3, Data: []byte(`{"n":2}`)},
	)
	want := eventsource.AppendResult{StreamID: "order-1", FirstVersion: 1, Version: 2, FirstPosition: 1, Position: 2, Time: r1.Time}
	if r1 != want {
		t.Fatalf("first append: got %+v, want %+v", r1, want)
	}
	if r1.Time.IsZero() {
		t.Fatal("append result has a zero time")
	}
	r2 := mustAppend(t, s, "user-7", eventsource.NoStream, evID("e3", "user.created", "u"))
	if r2.FirstVersion != 1 || r2.Version != 1 || r2.FirstPosition != 3 || r2.Position != 3 {
		t.Fatalf("second stream: got %+v, want version 1 at position 3", r2)
	}
	r3 := mustAppend(t, s, "order-1", eventsource.Exact(2), evID("e4", "order.shipped", ""))
	if r3.FirstVersion != 3 || r3.Version != 3 || r3.Position != 4 {
		t.Fatalf("third append: got %+v, want version 3 at position 4", r3)
	}
	all := checkLog(t, s)
	if len(all) != 4 {
		t.Fatalf("log has %d events, want 4", len(all))
	}
	first := all[0]
	if first.StreamID != "order-1" || first.ID != "e1" || first.Type != "order.placed" || first.SchemaVersion != 1 ||
		string(first.Data) != `{"n":1}` || first.Metadata.CorrelationID != "corr-1" || first.Metadata.CausationID != "cmd-1" ||
		first.Metadata.Headers["tenant"] != "acme" {
		t.Fatalf("first event not stored as given: %+v", first)
	}
	if !first.Time.Equal(r1.Time) {
		t.Fatalf("event time %v differs from append result time %v", first.Time, r1.Time)
	}
	if all[1].SchemaVersion != 3 {
		t.Fatalf("schema version: got %d, want 3", all[1].SchemaVersion)
	}
	if got := []string{all[0].ID, all[1].ID, all[2].ID, all[3].ID}; !slices.Equal(got, []string{"e1", "e2", "e3", "e4"}) {
		t.Fatalf("commit order: got IDs %v", got)
	}
	if v := streamVersion(t, s, "missing"); v != 0 {
		t.Fatalf("StreamVersion of a missing stream = %d, want 0", v)
	}
}

func testAssignsIDs(t *testing.T, s eventsource.Store) {
	mustAppend(t, s, "a-1", eventsource.Any, ev("t", "1"), ev("t", "2"))
	mustAppend(t, s, "a-1", eventsource.Any, ev("t", "3"))
	all := checkLog(t, s) // checks uniqueness
	for _, e := range all {
		if e.ID == "" {
			t.Fatalf("event at position %d has no ID", e.Position)
		}
	}
}

func testExpectedVersion(t *testing.T, s eventsource.Store) {
	mustAppend(t, s, "two-1", eventsource.NoStream, ev("t", "1"), ev("t", "2"))
	cases := []struct {
		stream   string
		expected eventsource.ExpectedVersion
		actual   uint64
		ok       bool
	}{
		{"new-1", eventsource.NoStream, 0, true},
		{"new-2", eventsource.Exact(0), 0, true},
		{"new-3", eventsource.Any, 0, true},
		{"new-4", eventsource.StreamExists, 0, false},
		{"new-5", eventsource.Exact(1), 0, false},
		{"two-1", eventsource.NoStream, 2, false},
		{"two-1", eventsource.Exact(1), 2, false},
		{"two-1", eventsource.Exact(3), 2, false},
		{"two-1", eventsource.Exact(2), 2, true},
		{"two-1", eventsource.StreamExists, 3, true},
		{"two-1", eventsource.Any, 4, true},
	}
	for _, c := range cases {
		h := head(t, s)
		res, err := s.Append(context.Background(), c.stream, c.expected, ev("t", "x"))
		if c.ok {
			if err != nil {
				t.Fatalf("Append(%q, %v) at version %d: %v", c.stream, c.expected, c.actual, err)
			}
			if res.Version != c.actual+1 || res.Position != h+1 {
				t.Fatalf("Append(%q, %v): got %+v, want version %d at position %d", c.stream, c.expected, res, c.actual+1, h+1)
			}
			continue
		}
		if !errors.Is(err, eventsource.ErrConcurrencyConflict) {
			t.Fatalf("Append(%q, %v) at version %d: got %v, want ErrConcurrencyConflict", c.stream, c.expected, c.actual, err)
		}
		var ce *eventsource.ConcurrencyError
		if !errors.As(err, &ce) {
			t.Fatalf("Append(%q, %v): error %v is not a *ConcurrencyError", c.stream, c.expected, err)
		}
		if ce.StreamID != c.stream || ce.Expected != c.expected || ce.Actual != c.actual {
			t.Fatalf("ConcurrencyError: got %+v, want stream %q expected %v actual %d", *ce, c.stream, c.expected, c.actual)
		}
		if h2 := head(t, s); h2 != h {
			t.Fatalf("a refused append moved the head from %d to %d", h, h2)
		}
		if v := streamVersion(t, s, c.stream); v != c.actual {
			t.Fatalf("a refused append changed %q to version %d", c.stream, v)
		}
	}
	checkLog(t, s)
}

func testInvalidAppend(t *testing.T, s eventsource.Store) {
	ctx := context.Background()
	mustAppend(t, s, "ok-1", eventsource.NoStream, evID("taken", "t", ""))
	single := []struct {
		name     string
		stream   string
		expected eventsource.ExpectedVersion
		events   []eventsource.EventData
	}{
		{"EmptyStreamID", "", eventsource.Any, []eventsource.EventData{ev("t", "")}},
		{"NoEvents", "x-1", eventsource.Any, nil},
		{"EmptyType", "x-1", eventsource.Any, []eventsource.EventData{ev("t", ""), ev("", "")}},
		{"NegativeSchemaVersion", "x-1", eventsource.Any, []eventsource.EventData{{Type: "t", SchemaVersion: -1}}},
		{"InvalidExpected", "x-1", eventsource.ExpectedVersion(-7), []eventsource.EventData{ev("t", "")}},
		{"IDRepeatedInAppend", "x-1", eventsource.Any, []eventsource.EventData{evID("d", "t", ""), evID("d", "t", "")}},
	}
	for _, c := range single {
		_, err := s.Append(ctx, c.stream, c.expected, c.events...)
		if !errors.Is(err, eventsource.ErrInvalidAppend) {
			t.Fatalf("%s: got %v, want ErrInvalidAppend", c.name, err)
		}
	}
	multi := []struct {
		name    string
		appends []eventsource.StreamAppend
	}{
		{"NoStreams", nil},
		{"StreamTwice", []eventsource.StreamAppend{
			{StreamID: "y-1", Events: []eventsource.EventData{ev("t", "")}},
			{StreamID: "y-1", Expected: eventsource.Any, Events: []eventsource.EventData{ev("t", "")}},
		}},
		{"EmptyStreamInBatch", []eventsource.StreamAppend{
			{StreamID: "y-2", Events: []eventsource.EventData{ev("t", "")}},
			{StreamID: "y-3"},
		}},
		{"IDRepeatedAcrossStreams", []eventsource.StreamAppend{
			{StreamID: "y-4", Events: []eventsource.EventData{evID("z", "t", "")}},
			{StreamID: "y-5", Events: []eventsource.EventData{evID("z", "t", "")}},
		}},
	}
	for _, c := range multi {
		_, err := s.AppendStreams(ctx, c.appends...)
		if !errors.Is(err, eventsource.ErrInvalidAppend) {
			t.Fatalf("%s: got %v, want ErrInvalidAppend", c.name, err)
		}
	}
	if h := head(t, s); h != 1 {
		t.Fatalf("invalid appends stored events: head %d, want 1", h)
	}
	checkLog(t, s)
}

func testIdempotentResend(t *testing.T, s eventsource.Store) {
	batch := []eventsource.EventData{evID("r1", "t", "a"), evID("r2", "t", "b")}
	orig := mustAppend(t, s, "acct-1", eventsource.NoStream, batch...)
	again, err := s.Append(context.Background(), "acct-1", eventsource.NoStream, batch...)
	if err != nil {
		t.Fatalf("re-sent append: %v", err)
	}
	if again != orig {
		t.Fatalf("re-sent append: got %+v, want the original %+v", again, orig)
	}
	// The stream moves on; a late re-send still gets the original result
	// (its expectation no longer holds, but it is not a new write).
	mustAppend(t, s, "acct-1", eventsource.Exact(2), evID("r3", "t", "c"))
	mustAppend(t, s, "other-1", eventsource.NoStream, evID("r4", "t", "d"))
	late, err := s.Append(context.Background(), "acct-1", eventsource.NoStream, batch...)
	if err != nil {
		t.Fatalf("late re-send: %v", err)
	}
	if late != orig {
		t.Fatalf("late re-send: got %+v, want the original %+v", late, orig)
	}
	// Expected version Any and Exact re-sends too.
	single := mustAppend(t, s, "acct-1", eventsource.Exact(3), evID("r5", "t", "e"))
	for _, exp := range []eventsource.ExpectedVersion{eventsource.Any, eventsource.Exact(3), eventsource.StreamExists} {
		got, err := s.Append(context.Background(), "acct-1", exp, evID("r5", "t", "e"))
		if err != nil || got != single {
			t.Fatalf("re-send with %v: got %+v, %v; want %+v", exp, got, err, single)
		}
	}
	all := checkLog(t, s)
	if len(all) != 5 {
		t.Fatalf("re-sends stored duplicates: %d events, want 5", len(all))
	}
}

func testDuplicateEventID(t *testing.T, s eventsource.Store) {
	ctx := context.Background()
	mustAppend(t, s, "d-1", eventsource.NoStream, evID("x1", "t", ""), evID("x2", "t", ""), evID("x3", "t", ""))
	mustAppend(t, s, "d-1", eventsource.Exact(3), evID("x4", "t", ""))
	cases := []struct {
		name   string
		stream string
		events []eventsource.EventData
	}{
		{"SubsetOfStoredAppend", "d-1", []eventsource.EventData{evID("x1", "t", ""), evID("x2", "t", "")}},
		{"TailOfStoredAppend", "d-1", []eventsource.EventData{evID("x2", "t", ""), evID("x3", "t", "")}},
		{"StoredPlusNew", "d-1", []eventsource.EventData{evID("x1", "t", ""), evID("x2", "t", ""), evID("x3", "t", ""), evID("x4", "t", "")}},
		{"NewThenStored", "d-1", []eventsource.EventData{evID("n1", "t", ""), evID("x2", "t", "")}},
		{"OtherStream", "d-2", []eventsource.EventData{evID("x1", "t", ""), evID("x2", "t", ""), evID("x3", "t", "")}},
		{"SpansTwoAppends", "d-1", []eventsource.EventData{evID("x2", "t", ""), evID("x3", "t", ""), evID("x4", "t", "")}},
		{"OtherOrder", "d-1", []eventsource.EventData{evID("x2", "t", ""), evID("x1", "t", ""), evID("x3", "t", "")}},
	}
	for _, c := range cases {
		_, err := s.Append(ctx, c.stream, eventsource.Any, c.events...)
		if !errors.Is(err, eventsource.ErrDuplicateEventID) {
			t.Fatalf("%s: got %v, want ErrDuplicateEventID", c.name, err)
		}
	}
	if h := head(t, s); h != 4 {
		t.Fatalf("refused appends stored events: head %d, want 4", h)
	}
	checkLog(t, s)
}

func testConcurrentResends(t *testing.T, s eventsource.Store) {
	const senders = 8
	batch := []eventsource.EventData{evID("c1", "t", "a"), evID("c2", "t", "b")}
	results := make([]eventsource.AppendResult, senders)
	errs := make([]error, senders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.Append(context.Background(), "once-1", eventsource.NoStream, batch...)
		})
	}
	close(start)
	wg.Wait()
	for i := range senders {
		if errs[i] != nil {
			t.Fatalf("sender %d: %v", i, errs[i])
		}
		if results[i] != results[0] {
			t.Fatalf("sender %d got %+v, sender 0 got %+v", i, results[i], results[0])
		}
	}
	if all := checkLog(t, s); len(all) != 2 {
		t.Fatalf("%d concurrent re-sends stored %d events, want 2", senders, len(all))
	}
}

func testAppendStreamsAtomic(t *testing.T, s eventsource.Store) {
	ctx := context.Background()
	mustAppend(t, s, "from-1", eventsource.NoStream, ev("opened", ""))
	res, err := s.AppendStreams(ctx,
		eventsource.StreamAppend{StreamID: "from-1", Expected: eventsource.Exact(1), Events: []eventsource.EventData{ev("debited", "1"), ev("debited", "2")}},
		eventsource.StreamAppend{StreamID: "to-1", Expected: eventsource.NoStream, Events: []eventsource.EventData{ev("credited", "3")}},
	)
	if err != nil {
		t.Fatalf("AppendStreams: %v", err)
	}
	if len(res) != 2 {
		t.Fatalf("AppendStreams returned %d results, want 2", len(res))
	}
	if r := res[0]; r.StreamID != "from-1" || r.FirstVersion != 2 || r.Version != 3 || r.FirstPosition != 2 || r.Position != 3 {
		t.Fatalf("first result %+v", r)
	}
	if r := res[1]; r.StreamID != "to-1" || r.FirstVersion != 1 || r.Version != 1 || r.FirstPosition != 4 || r.Position != 4 {
		t.Fatalf("second result %+v", r)
	}
	// One expectation fails: nothing is stored in any stream.
	_, err = s.AppendStreams(ctx,
		eventsource.StreamAppend{StreamID: "from-1", Expected: eventsource.Exact(3), Events: []eventsource.EventData{ev("debited", "4")}},
		eventsource.StreamAppend{StreamID: "new-9", Expected: eventsource.NoStream, Events: []eventsource.EventData{ev("x", "5")}},
		eventsource.StreamAppend{StreamID: "to-1", Expected: eventsource.Exact(5), Events: []eventsource.EventData{ev("credited", "6")}},
	)
	var ce *eventsource.ConcurrencyError
	if !errors.As(err, &ce) || ce.StreamID != "to-1" || ce.Actual != 1 || ce.Expected != eventsource.Exact(5) {
		t.Fatalf("AppendStreams with a stale expectation: got %v, want a ConcurrencyError on to-1 (actual 1)", err)
	}
	if h := head(t, s); h != 4 {
		t.Fatalf("failed AppendStreams moved head to %d, want 4", h)
	}
	if v := streamVersion(t, s, "from-1"); v != 3 {
		t.Fatalf("failed AppendStreams changed from-1 to version %d", v)
	}
	if v := streamVersion(t, s, "new-9"); v != 0 {
		t.Fatalf("failed AppendStreams created new-9 (version %d)", v)
	}
	checkLog(t, s)
}

func testAppendStreamsResend(t *testing.T, s eventsource.Store) {
	ctx := context.Background()
	batch := []eventsource.StreamAppend{
		{StreamID: "m-1", Events: []eventsource.EventData{evID("m1", "t", ""), evID("m2", "t", "")}},
		{StreamID: "m-2", Events: []eventsource.EventData{evID("m3", "t", "")}},
	}
	orig, err := s.AppendStreams(ctx, batch...)
	if err != nil {
		t.Fatalf("AppendStreams: %v", err)
	}
	again, err := s.AppendStreams(ctx, batch...)
	if err != nil {
		t.Fatalf("re-sent AppendStreams: %v", err)
	}
	if !slices.Equal(orig, again) {
		t.Fatalf("re-sent AppendStreams: got %+v, want %+v", again, orig)
	}
	// Re-sending only one stream's part is not the same append.
	if _, err := s.Append(ctx, "m-1", eventsource.Any, batch[0].Events...); !errors.Is(err, eventsource.ErrDuplicateEventID) {
		t.Fatalf("partial re-send: got %v, want ErrDuplicateEventID", err)
	}
	if all := checkLog(t, s); len(all) != 3 {
		t.Fatalf("re-send stored duplicates: %d events, want 3", len(all))
	}
}

func testCopies(t *testing.T, s eventsource.Store) {
	data := []byte("original")
	hdr := map[string]string{"k": "v"}
	mustAppend(t, s, "c-1", eventsource.NoStream, eventsource.EventData{Type: "t", Data: data, Metadata: eventsource.Metadata{Headers: hdr}})
	data[0] = 'X'
	hdr["k"] = "changed"
	hdr["new"] = "added"

	check := func(when string) {
		t.Helper()
		got := readStream(t, s, "c-1", eventsource.StreamQuery{})
		if len(got) != 1 || string(got[0].Data) != "original" || got[0].Metadata.Headers["k"] != "v" || len(got[0].Metadata.Headers) != 1 {
			t.Fatalf("%s: stored event changed: %+v", when, got)
		}
	}
	check("after changing the appended data")

	for _, e := range readStream(t, s, "c-1", eventsource.StreamQuery{}) {
		e.Data[0] = 'Y'
		e.Metadata.Headers["k"] = "read-changed"
	}
	check("after changing data read from ReadStream")
	for _, e := range readAll(t, s, 0, eventsource.Filter{}) {
		e.Data[0] = 'Z'
		e.Data = append(e.Data, "-appended"...)
		e.Metadata.Headers["k"] = "all-changed"
	}
	check("after changing data read from ReadAll")
	mustAppend(t, s, "c-2", eventsource.NoStream, ev("t", "neighbour"))
	check("after another append")
}

func seedStreams(t *testing.T, s eventsource.Store) {
	t.Helper()
	for i := 1; i <= 5; i++ {
		mustAppend(t, s, "order-1", eventsource.Any, ev("order.item", strconv.Itoa(i)))
		mustAppend(t, s, "user-1", eventsource.Any, ev("user.seen", strconv.Itoa(i)))
		if i%2 == 0 {
			mustAppend(t, s, "order-2", eventsource.Any, ev("order.item", strconv.Itoa(i)))
		}
	}
}

func versions(evs []eventsource.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Version
	}
	return out
}

func positions(evs []eventsource.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Position
	}
	return out
}

func testReadStreamRanges(t *testing.T, s eventsource.Store) {
	seedStreams(t, s)
	cases := []struct {
		name string
		q    eventsource.StreamQuery
		want []uint64
	}{
		{"All", eventsource.StreamQuery{}, []uint64{1, 2, 3, 4, 5}},
		{"FromOne", eventsource.StreamQuery{From: 1}, []uint64{1, 2, 3, 4, 5}},
		{"From", eventsource.StreamQuery{From: 3}, []uint64{3, 4, 5}},
		{"FromLast", eventsource.StreamQuery{From: 5}, []uint64{5}},
		{"FromPastEnd", eventsource.StreamQuery{From: 6}, nil},
		{"To", eventsource.StreamQuery{To: 2}, []uint64{1, 2}},
		{"FromTo", eventsource.StreamQuery{From: 2, To: 4}, []uint64{2, 3, 4}},
		{"ToPastEnd", eventsource.StreamQuery{To: 99}, []uint64{1, 2, 3, 4, 5}},
		{"FromAfterTo", eventsource.StreamQuery{From: 4, To: 3}, nil},
	}
	for _, c := range cases {
		got := readStream(t, s, "order-1", c.q)
		if !slices.Equal(versions(got), c.want) {
			t.Fatalf("%s: versions %v, want %v", c.name, versions(got), c.want)
		}
		for _, e := range got {
			if e.StreamID != "order-1" || string(e.Data) != strconv.FormatUint(e.Version, 10) {
				t.Fatalf("%s: wrong event %+v", c.name, e)
			}
		}
	}
	if got := readStream(t, s, "missing-1", eventsource.StreamQuery{}); len(got) != 0 {
		t.Fatalf("missing stream yielded %d events", len(got))
	}
}

func testReadStreamAsOf(t *testing.T, s eventsource.Store) {
	// Appends in separate calls. Their instants usually differ; ties are
	// allowed and the expectations below account for them.
	for i := 1; i <= 6; i++ {
		mustAppend(t, s, "tt-1", eventsource.Any, ev("t", strconv.Itoa(i)))
		if i%2 == 0 {
			mustAppend(t, s, "tt-2", eventsource.Any, ev("t", strconv.Itoa(i)))
		}
	}
	evs := readStream(t, s, "tt-1", eventsource.StreamQuery{})
	for k, at := range evs {
		var want []uint64
		for _, e := range evs {
			if !e.Time.After(at.Time) {
				want = append(want, e.Version)
			}
		}
		if len(want) < k+1 {
			t.Fatalf("event times go backwards within the stream")
		}
		got := readStream(t, s, "tt-1", eventsource.StreamQuery{AsOf: at.Time})
		if !slices.Equal(versions(got), want) {
			t.Fatalf("AsOf the time of version %d: versions %v, want %v", at.Version, versions(got), want)
		}
		got = readStream(t, s, "tt-1", eventsource.StreamQuery{AsOf: at.Time, From: 2, To: 4})
		var wantRange []uint64
		for _, v := range want {
			if v >= 2 && v <= 4 {
				wantRange = append(wantRange, v)
			}
		}
		if !slices.Equal(versions(got), wantRange) {
			t.Fatalf("AsOf version %d's time, versions 2..4: got %v, want %v", at.Version, versions(got), wantRange)
		}
	}
	if got := readStream(t, s, "tt-1", eventsource.StreamQuery{AsOf: evs[0].Time.Add(-time.Nanosecond)}); len(got) != 0 {
		t.Fatalf("AsOf before the first event: got versions %v, want none", versions(got))
	}
	if got := readStream(t, s, "tt-1", eventsource.StreamQuery{AsOf: evs[len(evs)-1].Time.Add(time.Hour)}); len(got) != len(evs) {
		t.Fatalf("AsOf after the last event: got %d events, want %d", len(got), len(evs))
	}
	checkLog(t, s)
}

func testReadAllFilter(t *testing.T, s eventsource.Store) {
	seedStreams(t, s)
	all := checkLog(t, s)
	cases := []struct {
		name   string
		from   uint64
		filter eventsource.Filter
		match  func(eventsource.Event) bool
	}{
		{"All", 0, eventsource.Filter{}, func(eventsource.Event) bool { return true }},
		{"From", 7, eventsource.Filter{}, func(e eventsource.Event) bool { return e.Position >= 7 }},
		{"FromHead", uint64(len(all)), eventsource.Filter{}, func(e eventsource.Event) bool { return e.Position == uint64(len(all)) }},
		{"FromPastHead", uint64(len(all)) + 1, eventsource.Filter{}, func(eventsource.Event) bool { return false }},
		{"Category", 0, eventsource.Filter{Categories: []string{"order"}}, func(e eventsource.Event) bool {
			return e.StreamID == "order-1" || e.StreamID == "order-2"
		}},
		{"Type", 0, eventsource.Filter{Types: []string{"user.seen"}}, func(e eventsource.Event) bool { return e.Type == "user.seen" }},
		{"CategoryAndType", 3, eventsource.Filter{Categories: []string{"order", "user"}, Types: []string{"order.item"}}, func(e eventsource.Event) bool {
			return e.Position >= 3 && e.Type == "order.item"
		}},
		{"NoMatch", 0, eventsource.Filter{Categories: []string{"none"}}, func(eventsource.Event) bool { return false }},
	}
	for _, c := range cases {
		var want []uint64
		for _, e := range all {
			if c.match(e) {
				want = append(want, e.Position)
			}
		}
		got := readAll(t, s, c.from, c.filter)
		if !slices.Equal(positions(got), want) {
			t.Fatalf("%s: positions %v, want %v", c.name, positions(got), want)
		}
		for _, e := range got {
			if d := sameEvent(e, all[e.Position-1]); d != "" {
				t.Fatalf("%s: event at %d differs from the unfiltered read: %s", c.name, e.Position, d)
			}
		}
	}
}

func testStopEarly(t *testing.T, s eventsource.Store) {
	seedStreams(t, s)
	ctx := context.Background()
	n := 0
	for _, err := range s.ReadAll(ctx, 0, eventsource.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 3 {
			break
		}
	}
	m := 0
	for _, err := range s.ReadStream(ctx, "order-1", eventsource.StreamQuery{}) {
		if err != nil {
			t.Fatal(err)
		}
		m++
		break
	}
	if n != 3 || m != 1 {
		t.Fatalf("early break: read %d and %d events", n, m)
	}
	// The store still works after abandoned iterators.
	mustAppend(t, s, "order-1", eventsource.Exact(5), ev("order.item", "6"))
	checkLog(t, s)
}

func testContextCancelled(t *testing.T, s eventsource.Store) {
	mustAppend(t, s, "k-1", eventsource.NoStream, ev("t", "1"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "k-1", eventsource.Any, ev("t", "2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := s.AppendStreams(ctx, eventsource.StreamAppend{StreamID: "k-2", Events: []eventsource.EventData{ev("t", "")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendStreams with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := s.StreamVersion(ctx, "k-1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("StreamVersion with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := s.Head(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Head with a cancelled context: got %v, want context.Canceled", err)
	}
	if _, err := s.Wait(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: got %v, want context.Canceled", err)
	}
	iterErr := func(seq func(func(eventsource.Event, error) bool)) error {
		var last error
		n := 0
		for _, err := range seq {
			if err != nil {
				last = err
				break
			}
			n++
		}
		if n > 0 {
			return fmt.Errorf("yielded %d events before the error", n)
		}
		return last
	}
	if err := iterErr(s.ReadStream(ctx, "k-1", eventsource.StreamQuery{})); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadStream with a cancelled context: got %v, want context.Canceled", err)
	}
	if err := iterErr(s.ReadAll(ctx, 0, eventsource.Filter{})); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAll with a cancelled context: got %v, want context.Canceled", err)
	}
	if h := head(t, s); h != 1 {
		t.Fatalf("cancelled calls changed the head to %d", h)
	}
	checkLog(t, s)
}

func testWait(t *testing.T, s eventsource.Store) {
	ctx := context.Background()
	mustAppend(t, s, "w-1", eventsource.NoStream, ev("t", "1"))
	if h, err := s.Wait(ctx, 0); err != nil || h != 1 {
		t.Fatalf("Wait(0) with head 1: got %d, %v; want 1 at once", h, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.Wait(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past the head with a deadline: got %v, want context.DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	var got uint64
	go func() {
		var err error
		got, err = s.Wait(ctx, 1)
		done <- err
	}()
	mustAppend(t, s, "w-1", eventsource.Exact(1), ev("t", "2"))
	select {
	case err := <-done:
		if err != nil || got < 2 {
			t.Fatalf("Wait(1) woken by an append: got %d, %v; want head >= 2", got, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait(1) did not return after an append")
	}
}

func testSubscribe(t *testing.T, s eventsource.Store) {
	for i := range 5 {
		mustAppend(t, s, "sub-1", eventsource.Any, ev("t", strconv.Itoa(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const total = 40
	writerDone := make(chan struct{})
	var got []uint64
	var endErr error
	for e, err := range eventsource.Subscribe(ctx, s, 0, eventsource.Filter{}) {
		if err != nil {
			endErr = err
			break
		}
		got = append(got, e.Position)
		if len(got) == 5 {
			go func() { // live appends after catching up
				defer close(writerDone)
				for i := 5; i < total; i++ {
					if _, err := s.Append(ctx, "sub-"+strconv.Itoa(i%3), eventsource.Any, ev("t", strconv.Itoa(i))); err != nil {
						t.Errorf("live append: %v", err)
						return
					}
				}
			}()
		}
		if len(got) == total {
			cancel()
		}
	}
	<-writerDone
	if !errors.Is(endErr, context.Canceled) {
		t.Fatalf("subscription ended with %v, want context.Canceled", endErr)
	}
	for i, p := range got {
		if p != uint64(i+1) {
			t.Fatalf("subscription yielded positions %v, want 1..%d in order", got, total)
		}
	}
	if len(got) != total {
		t.Fatalf("subscription yielded %d events, want %d", len(got), total)
	}
}

func testSubscribeFiltered(t *testing.T, s eventsource.Store) {
	seedStreams(t, s)
	all := checkLog(t, s)
	f := eventsource.Filter{Categories: []string{"order"}}
	var want []uint64
	for _, e := range all {
		if f.Match(&e) && e.Position > 4 {
			want = append(want, e.Position)
		}
	}
	// Resume after checkpoint 4, then see one live matching event after a
	// run of non-matching ones.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []uint64
	var live uint64
	for e, err := range eventsource.Subscribe(ctx, s, 4, f) {
		if err != nil {
			break
		}
		got = append(got, e.Position)
		if live == 0 && len(got) == len(want) {
			for i := range 10 {
				mustAppend(t, s, "user-2", eventsource.Any, ev("user.seen", strconv.Itoa(i)))
			}
			live = mustAppend(t, s, "order-3", eventsource.Any, ev("order.item", "live")).Position
			want = append(want, live)
		}
		if e.Position == live {
			cancel()
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("filtered subscription after 4: positions %v, want %v", got, want)
	}
}

// testRaceOneStream has many writers race, round after round, to append
// version v of one stream with Exact(v-1): exactly one wins each round, the
// others get a ConcurrencyError reporting the winner's version.
func testRaceOneStream(t *testing.T, s eventsource.Store) {
	const writers, rounds = 8, 25
	ctx := context.Background()
	for round := range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, writers)
		for w := range writers {
			wg.Go(func() {
				<-start
				_, errs[w] = s.Append(ctx, "race-1", eventsource.Exact(uint64(round)),
					evID(fmt.Sprintf("r%d-w%d", round, w), "t", strconv.Itoa(w)))
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for w, err := range errs {
			var ce *eventsource.ConcurrencyError
			switch {
			case err == nil:
				wins++
			case errors.As(err, &ce):
				if ce.Actual != uint64(round+1) || ce.Expected != eventsource.Exact(uint64(round)) {
					t.Fatalf("round %d writer %d: %+v, want actual %d", round, w, *ce, round+1)
				}
			default:
				t.Fatalf("round %d writer %d: %v", round, w, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d writers won version %d, want exactly 1", round, wins, round+1)
		}
	}
	all := checkLog(t, s)
	if len(all) != rounds {
		t.Fatalf("%d events stored, want %d", len(all), rounds)
	}
	for _, e := range all {
		if e.ID != fmt.Sprintf("r%d-w%s", e.Version-1, e.Data) {
			t.Fatalf("version %d holds %q from another round", e.Version, e.ID)
		}
	}
}

// testRaceRetry has writers each append their events to one stream with
// read-expect-retry loops: nothing is lost, nothing duplicated.
func testRaceRetry(t *testing.T, s eventsource.Store) {
	const writers, each = 6, 30
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < each; {
				v, err := s.StreamVersion(ctx, "shared-1")
				if err != nil {
					t.Error(err)
					return
				}
				_, err = s.Append(ctx, "shared-1", eventsource.Exact(v), evID(fmt.Sprintf("w%d-%d", w, i), "t", ""))
				switch {
				case err == nil:
					i++
				case errors.Is(err, eventsource.ErrConcurrencyConflict):
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	all := checkLog(t, s)
	if len(all) != writers*each {
		t.Fatalf("%d events stored, want %d", len(all), writers*each)
	}
	next := make(map[string]int)
	for _, e := range all {
		var w, i int
		if _, err := fmt.Sscanf(e.ID, "w%d-%d", &w, &i); err != nil {
			t.Fatalf("unexpected ID %q", e.ID)
		}
		key := strconv.Itoa(w)
		if i != next[key] {
			t.Fatalf("writer %d's event %d stored out of order (expected %d)", w, i, next[key])
		}
		next[key]++
	}
}

// testFollower has a subscriber follow the global log while writers append
// single events, batches and multi-stream batches: it sees every event
// exactly once, in position order, with nothing skipped.
// testSlowSubscriber stops consuming a live subscription while a writer
// appends far more events than any reasonable buffer holds: when the
// subscriber resumes it must get every one of them, in order, as it would
// from catch-up reading, and then follow live appends again; it must not be
// disconnected or skip ahead.
func testSlowSubscriber(t *testing.T, s eventsource.Store) {
	const behind = 2000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustAppend(t, s, "slow-0", eventsource.Any, ev("t", "first"))
	var got []uint64
	live := make(chan struct{})
	liveStarted := false
	for e, err := range eventsource.Subscribe(ctx, s, 0, eventsource.Filter{}) {
		if err != nil {
			t.Fatalf("subscription after %d events: %v", len(got), err)
		}
		got = append(got, e.Position)
		if len(got) == 1 {
			// The subscriber is busy: the writer races ahead of it.
			for i := range behind {
				d := ev("t", strconv.Itoa(i))
				if _, err := s.Append(ctx, "slow-"+strconv.Itoa(i%7), eventsource.Any, d); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
			}
		}
		if e.Position >= 1+behind && !liveStarted {
			// Caught up: the next event arrives live.
			liveStarted = true
			go func() {
				defer close(live)
				if _, err := s.Append(ctx, "slow-live", eventsource.Any, ev("t", "live")); err != nil {
					t.Errorf("live append: %v", err)
				}
			}()
		}
		if e.Position >= behind+2 {
			break
		}
	}
	<-live
	for i, p := range got {
		if p != uint64(i+1) {
			t.Fatalf("slow subscriber got position %d as its event %d; want 1..%d in order", p, i+1, behind+2)
		}
	}
}

func testFollower(t *testing.T, s eventsource.Store) {
	const writers, each = 6, 60
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	total := 0
	for w := range writers {
		total += each
		wg.Go(func() {
			for i := 0; i < each; {
				var err error
				switch i % 3 {
				case 0:
					_, err = s.Append(ctx, fmt.Sprintf("f%d-a", w), eventsource.Any, ev("t", ""))
					i++
				case 1:
					_, err = s.Append(ctx, fmt.Sprintf("f%d-b", w), eventsource.Any, ev("t", ""), ev("t", ""))
					i += 2
				default:
					_, err = s.AppendStreams(ctx,
						eventsource.StreamAppend{StreamID: fmt.Sprintf("f%d-a", w), Expected: eventsource.Any, Events: []eventsource.EventData{ev("t", "")}},
						eventsource.StreamAppend{StreamID: fmt.Sprintf("f%d-c", w), Expected: eventsource.Any, Events: []eventsource.EventData{ev("t", "")}},
					)
					i += 2
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// A second reader polls ReadAll concurrently: every read is a gap-free
	// prefix of the log.
	wg.Go(func() {
		for range 20 {
			var p uint64
			for e, err := range s.ReadAll(ctx, 0, eventsource.Filter{}) {
				if err != nil {
					t.Error(err)
					return
				}
				if e.Position != p+1 {
					t.Errorf("ReadAll during appends: position %d after %d", e.Position, p)
					return
				}
				p = e.Position
			}
		}
	})
	seen := make(map[string]bool)
	streamVersions := make(map[string]uint64)
	var last uint64
	for e, err := range eventsource.Subscribe(ctx, s, 0, eventsource.Filter{}) {
		if err != nil {
			t.Fatalf("subscription: %v", err)
		}
		if e.Position != last+1 {
			t.Fatalf("subscription: position %d after %d", e.Position, last)
		}
		last = e.Position
		if seen[e.ID] {
			t.Fatalf("subscription: event %q twice", e.ID)
		}
		seen[e.ID] = true
		if e.Version != streamVersions[e.StreamID]+1 {
			t.Fatalf("subscription: %q version %d after %d", e.StreamID, e.Version, streamVersions[e.StreamID])
		}
		streamVersions[e.StreamID] = e.Version
		if len(seen) == total {
			break
		}
	}
	wg.Wait()
	if h := head(t, s); h != uint64(total) {
		t.Fatalf("head %d, want %d", h, total)
	}
	checkLog(t, s)
}

func testStreamReadsDuringAppends(t *testing.T, s eventsource.Store) {
	const n = 200
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if _, err := s.Append(ctx, "grow-1", eventsource.Exact(uint64(i)), ev("t", strconv.Itoa(i+1))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 30 {
		var v uint64
		for e, err := range s.ReadStream(ctx, "grow-1", eventsource.StreamQuery{}) {
			if err != nil {
				t.Fatal(err)
			}
			if e.Version != v+1 || string(e.Data) != strconv.FormatUint(e.Version, 10) {
				t.Fatalf("ReadStream during appends: version %d (data %q) after %d", e.Version, e.Data, v)
			}
			v = e.Version
		}
	}
	wg.Wait()
	checkLog(t, s)
}
