// Package pubsubtest is the conformance suite for implementations of
// [pubsub.Publisher] and [pubsub.Subscriber], in the spirit of
// testing/fstest.TestFS: every backend (the in-memory broker, and each
// adapter to a real broker) runs [Run] from its tests, so code tested
// against one behaves the same against another.
//
//	func TestConformance(t *testing.T) {
//		pubsubtest.Run(t, pubsubtest.Features{ConsumerGroups: true /* ... */},
//			func(t *testing.T) pubsubtest.Backend {
//				b := newBackend(t)
//				t.Cleanup(func() { b.Close() })
//				return b
//			})
//	}
//
// [Features] switch groups of tests on for what a backend supports; the
// core contract (delivery, fan-out, per-topic order, wildcards, errors,
// correlation, closing) is always tested. With [Features.Synctest] the
// tests run inside testing/synctest bubbles, so delays and deadlines take
// no wall time and leaked goroutines fail the test; backends doing real
// I/O leave it off and the tests use short real delays.
package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/pubsub"
)

// Backend is what the suite tests: a publisher and subscriber on one
// broker. If it also has a Shutdown(ctx) error method with the semantics
// of [pubsub.MemoryBroker.Shutdown], [Features.Shutdown] can be set.
type Backend interface {
	pubsub.Publisher
	pubsub.Subscriber
}

// Features says which optional behaviours a backend supports; each one
// set enables its tests.
type Features struct {
	// ConsumerGroups: SubscribeConfig.Group shares messages among members.
	ConsumerGroups bool
	// Redelivery: failed deliveries are redelivered on the Backoff
	// schedule, RetryAfter overrides it, MaxDeliver bounds attempts and
	// redeliveries keep ordering (the whole subscription, or the key).
	Redelivery bool
	// DeadLetter: SubscribeConfig.DeadLetterTopic receives exhausted and
	// permanently failed messages with the dead-letter headers.
	DeadLetter bool
	// Dedup: republishing a message ID within the dedup window delivers
	// it once.
	Dedup bool
	// Replay: the backend retains at least 100 messages per topic and
	// honours SubscribeConfig.Deliver.
	Replay bool
	// AckDeadline: the ack deadline is extended while the handler runs,
	// and a handler running past MaxExtension+AckWait has its context
	// cancelled with pubsub.ErrAckDeadline and the message redelivered.
	AckDeadline bool
	// Overflow: SubscribeConfig.QueueSize and Overflow are enforced
	// exactly, and Stats counts Dropped and Rejected.
	Overflow bool
	// Shutdown: the backend has Shutdown(ctx) error, which accounts for
	// every accepted message as delivered or reported undelivered.
	Shutdown bool
	// Synctest: the backend does no real I/O and can run inside a
	// testing/synctest bubble.
	Synctest bool
}

// Run runs the conformance suite against backends made by newBackend,
// which is called once per test (inside the test's synctest bubble when
// f.Synctest is set) and must register its own cleanup.
func Run(t *testing.T, f Features, newBackend func(t *testing.T) Backend) {
	s := &suite{f: f, newBackend: newBackend}
	tests := []struct {
		name string
		on   bool
		fn   func(*testing.T, Backend)
	}{
		{"RoundTrip", true, s.testRoundTrip},
		{"InvalidInput", true, s.testInvalidInput},
		{"FanOut", true, s.testFanOut},
		{"Order", true, s.testOrder},
		{"Wildcards", true, s.testWildcards},
		{"PerKeyOrder", true, s.testPerKeyOrder},
		{"Correlation", true, s.testCorrelation},
		{"SubscriptionClose", true, s.testSubscriptionClose},
		{"SubscriptionContext", true, s.testSubscriptionContext},
		{"ConsumerGroup", f.ConsumerGroups, s.testConsumerGroup},
		{"Redelivery", f.Redelivery, s.testRedelivery},
		{"RedeliveryHoldsBackOrder", f.Redelivery, s.testRedeliveryHoldsBackOrder},
		{"RedeliveryBlocksOnlyItsKey", f.Redelivery, s.testRedeliveryBlocksOnlyItsKey},
		{"DeadLetter", f.DeadLetter, s.testDeadLetter},
		{"PermanentError", f.DeadLetter, s.testPermanent},
		{"Dedup", f.Dedup, s.testDedup},
		{"Replay", f.Replay, s.testReplay},
		{"AckDeadline", f.AckDeadline, s.testAckDeadline},
		{"Overflow", f.Overflow, s.testOverflow},
		{"StalledSubscriptionDoesNotSlowOthers", f.Overflow, s.testStalledSubscriptionDoesNotSlowOthers},
		{"Shutdown", f.Shutdown, s.testShutdown},
	}
	for _, tc := range tests {
		if !tc.on {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			if f.Synctest {
				synctest.Test(t, func(t *testing.T) { tc.fn(t, newBackend(t)) })
				return
			}
			tc.fn(t, newBackend(t))
		})
	}
}

type suite struct {
	f          Features
	newBackend func(*testing.T) Backend
}

// timeout bounds every wait; inside a bubble it is fake time.
const timeout = 10 * time.Second

// quiet is how long the suite waits to be sure nothing more arrives.
const quiet = 500 * time.Millisecond

// recorder collects deliveries.
type recorder struct {
	mu      sync.Mutex
	msgs    []*pubsub.Message
	times   []time.Time
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) add(m *pubsub.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.times = append(r.times, time.Now())
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) handler(err error) pubsub.Handler {
	return func(_ context.Context, m *pubsub.Message) error {
		r.add(m)
		return err
	}
}

func (r *recorder) snapshot() []*pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// wait waits until at least n deliveries were recorded and returns them.
func (r *recorder) wait(t *testing.T, n int) []*pubsub.Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if len(r.msgs) >= n {
			defer r.mu.Unlock()
			return slices.Clone(r.msgs)
		}
		ch, got := r.changed, len(r.msgs)
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d deliveries; got %d", n, got)
		}
	}
}

// exactly waits for n deliveries, then checks that no more arrive.
func (r *recorder) exactly(t *testing.T, n int) []*pubsub.Message {
	t.Helper()
	r.wait(t, n)
	time.Sleep(quiet)
	got := r.snapshot()
	if len(got) != n {
		t.Fatalf("got %d deliveries, want exactly %d", len(got), n)
	}
	return got
}

func subscribe(t *testing.T, b Backend, pattern string, h pubsub.Handler, cfg pubsub.SubscribeConfig) pubsub.Subscription {
	t.Helper()
	s, err := b.Subscribe(context.Background(), pattern, h, cfg)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", pattern, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t *testing.T, b Backend, topic string, msgs ...*pubsub.Message) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, msgs...); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

func numbered(i int) *pubsub.Message { return pubsub.NewMessage([]byte(strconv.Itoa(i))) }

func number(t *testing.T, m *pubsub.Message) int {
	t.Helper()
	n, err := strconv.Atoi(string(m.Payload))
	if err != nil {
		t.Fatalf("payload %q is not a number", m.Payload)
	}
	return n
}

// inOrder checks that msgs carry 0..n-1 in order.
func inOrder(t *testing.T, what string, msgs []*pubsub.Message) {
	t.Helper()
	for i, m := range msgs {
		if got := number(t, m); got != i {
			t.Fatalf("%s: delivery %d carries message %d, want %d (out of order or lost)", what, i, got, i)
		}
	}
}

func (s *suite) testRoundTrip(t *testing.T, b Backend) {
	r := newRecorder()
	subscribe(t, b, "rt.topic", r.handler(nil), pubsub.SubscribeConfig{})
	in := &pubsub.Message{ID: "id-1", Key: "k", Payload: []byte("hello"), Headers: map[string]string{"x": "y"}}
	before := time.Now()
	publish(t, b, "rt.topic", in)
	m := r.exactly(t, 1)[0]
	switch {
	case m.ID != "id-1" || m.Key != "k" || string(m.Payload) != "hello" || m.Header("x") != "y":
		t.Errorf("got ID %q Key %q Payload %q x=%q; want id-1, k, hello, y", m.ID, m.Key, m.Payload, m.Header("x"))
	case m.Topic != "rt.topic":
		t.Errorf("Topic = %q, want rt.topic", m.Topic)
	case m.Attempt != 1:
		t.Errorf("Attempt = %d, want 1", m.Attempt)
	case m.PublishedAt.Before(before.Add(-time.Second)) || m.PublishedAt.After(time.Now().Add(time.Second)):
		t.Errorf("PublishedAt = %v, want about %v", m.PublishedAt, before)
	}
	if in.Topic != "" || in.Attempt != 0 || !in.PublishedAt.IsZero() {
		t.Errorf("Publish modified the caller's message: %+v", in)
	}
	// An empty ID gets a unique one.
	publish(t, b, "rt.topic", &pubsub.Message{Payload: []byte("a")}, &pubsub.Message{Payload: []byte("b")})
	got := r.exactly(t, 3)
	if got[1].ID == "" || got[1].ID == got[2].ID {
		t.Errorf("assigned IDs %q and %q; want unique and non-empty", got[1].ID, got[2].ID)
	}
}

func (s *suite) testInvalidInput(t *testing.T, b Backend) {
	ctx := context.Background()
	nop := func(context.Context, *pubsub.Message) error { return nil }
	for _, topic := range []string{"", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\tb"} {
		if err := b.Publish(ctx, topic, pubsub.NewMessage(nil)); !errors.Is(err, pubsub.ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidTopic", topic, err)
		}
	}
	for _, pattern := range []string{"", "a..b", "a.>.b", "a*", "a.b>", " "} {
		if _, err := b.Subscribe(ctx, pattern, nop, pubsub.SubscribeConfig{}); !errors.Is(err, pubsub.ErrInvalidTopic) {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidTopic", pattern, err)
		}
	}
	if _, err := b.Subscribe(ctx, "a", nil, pubsub.SubscribeConfig{}); !errors.Is(err, pubsub.ErrNilHandler) {
		t.Errorf("Subscribe(nil handler) = %v, want ErrNilHandler", err)
	}
	if err := b.Publish(ctx, "a", nil); !errors.Is(err, pubsub.ErrNilMessage) {
		t.Errorf("Publish(nil message) = %v, want ErrNilMessage", err)
	}
	for name, cfg := range map[string]pubsub.SubscribeConfig{
		"negative concurrency":    {Concurrency: -1},
		"negative queue":          {QueueSize: -1},
		"negative backoff":        {Backoff: []time.Duration{-time.Second}},
		"unknown overflow":        {Overflow: 99},
		"invalid dead letter":     {DeadLetterTopic: "dead.*"},
		"dead letter matches own": {DeadLetterTopic: "a.dead"},
		"redelivery loop":         {MaxDeliver: -1, Backoff: []time.Duration{time.Second, 0}},
	} {
		if _, err := b.Subscribe(ctx, "a.>", nop, cfg); !errors.Is(err, pubsub.ErrInvalidConfig) {
			t.Errorf("Subscribe with %s = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func (s *suite) testFanOut(t *testing.T, b Backend) {
	const n = 50
	rs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	for _, r := range rs {
		subscribe(t, b, "fan.out", r.handler(nil), pubsub.SubscribeConfig{})
	}
	for i := range n {
		publish(t, b, "fan.out", numbered(i))
	}
	for i, r := range rs {
		inOrder(t, fmt.Sprintf("subscription %d", i), r.exactly(t, n))
	}
}

func (s *suite) testOrder(t *testing.T, b Backend) {
	const n, topics = 300, 3
	all := newRecorder()
	subscribe(t, b, "order.*", all.handler(nil), pubsub.SubscribeConfig{})
	var wg sync.WaitGroup
	for p := range topics {
		wg.Go(func() {
			for i := range n {
				if err := b.Publish(context.Background(), fmt.Sprintf("order.t%d", p), numbered(i)); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := all.exactly(t, n*topics)
	per := map[string][]*pubsub.Message{}
	for _, m := range got {
		per[m.Topic] = append(per[m.Topic], m)
	}
	for topic, msgs := range per {
		inOrder(t, topic, msgs)
	}
	// Batches keep their order too.
	batch := newRecorder()
	subscribe(t, b, "order.batch", batch.handler(nil), pubsub.SubscribeConfig{})
	var msgs []*pubsub.Message
	for i := range 20 {
		msgs = append(msgs, numbered(i))
	}
	publish(t, b, "order.batch", msgs...)
	inOrder(t, "batch", batch.exactly(t, 20))
}

func (s *suite) testWildcards(t *testing.T, b Backend) {
	patterns := []string{"w.*", "w.>", "w.a.*", "w.*.c", "w.a.b", ">"}
	topics := []string{"w", "w.a", "w.a.b", "w.x.c", "w.a.b.c", "other"}
	rs := map[string]*recorder{}
	for _, p := range patterns {
		rs[p] = newRecorder()
		subscribe(t, b, p, rs[p].handler(nil), pubsub.SubscribeConfig{})
	}
	for _, topic := range topics {
		publish(t, b, topic, pubsub.NewMessage([]byte(topic)))
	}
	time.Sleep(quiet)
	want := map[string][]string{
		"w.*":   {"w.a"},
		"w.>":   {"w.a", "w.a.b", "w.x.c", "w.a.b.c"},
		"w.a.*": {"w.a.b"},
		"w.*.c": {"w.x.c"},
		"w.a.b": {"w.a.b"},
		">":     topics,
	}
	for _, p := range patterns {
		var got []string
		for _, m := range rs[p].wait(t, len(want[p])) {
			got = append(got, m.Topic)
		}
		slices.Sort(got)
		w := slices.Sorted(slices.Values(want[p]))
		if !slices.Equal(got, w) {
			t.Errorf("pattern %q received %v, want %v", p, got, w)
		}
	}
}

func (s *suite) testPerKeyOrder(t *testing.T, b Backend) {
	const keys, per = 4, 40
	var mu sync.Mutex
	seen := map[string][]int{}
	busy := map[string]bool{}
	var overlap atomic.Bool
	done := newRecorder()
	subscribe(t, b, "keyed", func(ctx context.Context, m *pubsub.Message) error {
		mu.Lock()
		if busy[m.Key] {
			overlap.Store(true)
		}
		busy[m.Key] = true
		mu.Unlock()
		time.Sleep(time.Millisecond) // give other keys a chance to interleave
		mu.Lock()
		busy[m.Key] = false
		seen[m.Key] = append(seen[m.Key], number(t, m))
		mu.Unlock()
		done.add(m)
		return nil
	}, pubsub.SubscribeConfig{Concurrency: 4})
	for i := range per {
		for k := range keys {
			m := numbered(i)
			m.Key = "key" + strconv.Itoa(k)
			publish(t, b, "keyed", m)
		}
	}
	done.exactly(t, keys*per)
	if overlap.Load() {
		t.Error("two messages with the same key were handled concurrently")
	}
	for k, got := range seen {
		for i, n := range got {
			if n != i {
				t.Fatalf("key %s: delivery %d carries message %d (out of order)", k, i, n)
			}
		}
	}
}

func (s *suite) testCorrelation(t *testing.T, b Backend) {
	type seen struct {
		corr, cause, tp, ts, id string
		fromCtx                 *pubsub.Message
	}
	got := make(chan seen, 2)
	subscribe(t, b, "corr.first", func(ctx context.Context, m *pubsub.Message) error {
		tp, ts := pubsub.TraceParent(ctx)
		got <- seen{pubsub.CorrelationID(ctx), m.Header(pubsub.HeaderCausationID), tp, ts, m.ID, pubsub.MessageFromContext(ctx)}
		return b.Publish(ctx, "corr.second", pubsub.NewMessage([]byte("next")))
	}, pubsub.SubscribeConfig{})
	subscribe(t, b, "corr.second", func(ctx context.Context, m *pubsub.Message) error {
		tp, ts := pubsub.TraceParent(ctx)
		got <- seen{m.Header(pubsub.HeaderCorrelationID), m.Header(pubsub.HeaderCausationID), tp, ts, m.ID, pubsub.MessageFromContext(ctx)}
		return nil
	}, pubsub.SubscribeConfig{})
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ctx := pubsub.ContextWithCorrelationID(context.Background(), "order-42")
	ctx = pubsub.ContextWithTraceParent(ctx, tp, "vendor=1")
	first := pubsub.NewMessage([]byte("start"))
	if err := b.Publish(ctx, "corr.first", first); err != nil {
		t.Fatal(err)
	}
	var a, c seen
	for i, dst := range []*seen{&a, &c} {
		select {
		case *dst = <-got:
		case <-time.After(timeout):
			t.Fatalf("handler %d not called", i+1)
		}
	}
	if a.corr != "order-42" || a.tp != tp || a.ts != "vendor=1" {
		t.Errorf("first handler: correlation %q, traceparent %q %q; want order-42, %s, vendor=1", a.corr, a.tp, a.ts, tp)
	}
	if a.fromCtx == nil || a.fromCtx.ID != first.ID {
		t.Errorf("MessageFromContext in the handler = %v, want the delivered message", a.fromCtx)
	}
	if c.corr != "order-42" || c.cause != first.ID || c.tp != tp {
		t.Errorf("message published by a handler: correlation %q, causation %q, traceparent %q; want order-42, %s, %s", c.corr, c.cause, c.tp, first.ID, tp)
	}
}

func (s *suite) testSubscriptionClose(t *testing.T, b Backend) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var cancelled atomic.Bool
	r := newRecorder()
	sub := subscribe(t, b, "close.me", func(ctx context.Context, m *pubsub.Message) error {
		started <- struct{}{}
		<-release
		cancelled.Store(ctx.Err() != nil)
		r.add(m)
		return nil
	}, pubsub.SubscribeConfig{})
	publish(t, b, "close.me", numbered(0))
	select {
	case <-started:
	case <-time.After(timeout):
		t.Fatal("handler not called")
	}
	shut := make(chan error, 1)
	go func() { shut <- sub.Shutdown(context.Background()) }()
	time.Sleep(quiet)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a handler was in flight", err)
	default:
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("graceful Shutdown: %v", err)
	}
	if cancelled.Load() {
		t.Error("graceful Shutdown cancelled the in-flight handler's context")
	}
	if got := len(r.snapshot()); got != 1 {
		t.Fatalf("in-flight handler did not complete: %d deliveries", got)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	publish(t, b, "close.me", numbered(1))
	time.Sleep(quiet)
	if got := len(r.snapshot()); got != 1 {
		t.Errorf("closed subscription received a message")
	}
}

func (s *suite) testSubscriptionContext(t *testing.T, b Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	sub, err := b.Subscribe(ctx, "ctx.topic", r.handler(nil), pubsub.SubscribeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "ctx.topic", numbered(0))
	r.wait(t, 1)
	cancel()
	time.Sleep(quiet)
	publish(t, b, "ctx.topic", numbered(1))
	time.Sleep(quiet)
	if got := len(r.snapshot()); got != 1 {
		t.Errorf("subscription whose context ended received %d messages, want 1", got)
	}
	_ = sub.Close()
}

func (s *suite) testConsumerGroup(t *testing.T, b Backend) {
	const n, members = 120, 3
	var mu sync.Mutex
	count := map[string]int{}
	by := make([]int, members)
	all := newRecorder()
	for i := range members {
		subscribe(t, b, "group.work", func(ctx context.Context, m *pubsub.Message) error {
			time.Sleep(time.Millisecond)
			mu.Lock()
			count[m.ID]++
			by[i]++
			mu.Unlock()
			all.add(m)
			return nil
		}, pubsub.SubscribeConfig{Group: "workers"})
	}
	other := newRecorder()
	subscribe(t, b, "group.work", other.handler(nil), pubsub.SubscribeConfig{})
	for i := range n {
		publish(t, b, "group.work", numbered(i))
	}
	all.exactly(t, n)
	inOrder(t, "subscription outside the group", other.exactly(t, n))
	for id, c := range count {
		if c != 1 {
			t.Errorf("message %s handled %d times by the group", id, c)
		}
	}
	busy := 0
	for _, c := range by {
		if c > 0 {
			busy++
		}
	}
	if busy < 2 {
		t.Errorf("group members handled %v messages; want the work shared", by)
	}
	nop := func(context.Context, *pubsub.Message) error { return nil }
	if _, err := b.Subscribe(context.Background(), "group.other", nop, pubsub.SubscribeConfig{Group: "workers"}); !errors.Is(err, pubsub.ErrGroupMismatch) {
		t.Errorf("joining a group with another pattern = %v, want ErrGroupMismatch", err)
	}
}

func (s *suite) testRedelivery(t *testing.T, b Backend) {
	cfg := pubsub.SubscribeConfig{Backoff: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, MaxDeliver: 5}
	r := newRecorder()
	subscribe(t, b, "redeliver", func(ctx context.Context, m *pubsub.Message) error {
		r.add(m)
		if m.Attempt < 3 {
			return errors.New("transient")
		}
		return nil
	}, cfg)
	publish(t, b, "redeliver", numbered(0))
	got := r.exactly(t, 3)
	r.mu.Lock()
	times := slices.Clone(r.times)
	r.mu.Unlock()
	for i, m := range got {
		if m.Attempt != i+1 {
			t.Errorf("delivery %d has Attempt %d, want %d", i, m.Attempt, i+1)
		}
	}
	if d := times[1].Sub(times[0]); d < 100*time.Millisecond {
		t.Errorf("first redelivery after %v, want >= 100ms (no immediate redelivery)", d)
	}
	if d := times[2].Sub(times[1]); d < 200*time.Millisecond {
		t.Errorf("second redelivery after %v, want >= 200ms", d)
	}

	// RetryAfter overrides the schedule.
	r2 := newRecorder()
	subscribe(t, b, "redeliver.after", func(ctx context.Context, m *pubsub.Message) error {
		r2.add(m)
		if m.Attempt == 1 {
			return pubsub.RetryAfter(time.Second, errors.New("busy"))
		}
		return nil
	}, cfg)
	publish(t, b, "redeliver.after", numbered(0))
	r2.exactly(t, 2)
	if d := r2.times[1].Sub(r2.times[0]); d < time.Second {
		t.Errorf("RetryAfter(1s) redelivered after %v", d)
	}

	// MaxDeliver bounds the attempts.
	r3 := newRecorder()
	subscribe(t, b, "redeliver.max", r3.handler(errors.New("always")), pubsub.SubscribeConfig{Backoff: []time.Duration{10 * time.Millisecond}, MaxDeliver: 3})
	publish(t, b, "redeliver.max", numbered(0))
	r3.exactly(t, 3)
}

func (s *suite) testRedeliveryHoldsBackOrder(t *testing.T, b Backend) {
	r := newRecorder()
	subscribe(t, b, "holdback", func(ctx context.Context, m *pubsub.Message) error {
		if number(t, m) == 1 && m.Attempt == 1 {
			return errors.New("fail once")
		}
		r.add(m)
		return nil
	}, pubsub.SubscribeConfig{Backoff: []time.Duration{200 * time.Millisecond}})
	for i := range 5 {
		publish(t, b, "holdback", numbered(i))
	}
	inOrder(t, "ordered subscription with a redelivery", r.exactly(t, 5))
}

func (s *suite) testRedeliveryBlocksOnlyItsKey(t *testing.T, b Backend) {
	r := newRecorder()
	subscribe(t, b, "keyhold", func(ctx context.Context, m *pubsub.Message) error {
		if m.Key == "a" && number(t, m) == 0 && m.Attempt == 1 {
			return errors.New("fail once")
		}
		r.add(m)
		return nil
	}, pubsub.SubscribeConfig{Concurrency: 2, Backoff: []time.Duration{time.Second}})
	for i := range 3 {
		for _, k := range []string{"a", "b"} {
			m := numbered(i)
			m.Key = k
			publish(t, b, "keyhold", m)
		}
	}
	got := r.exactly(t, 6)
	var order []string
	for _, m := range got {
		order = append(order, m.Key+string(m.Payload))
	}
	// b's messages do not wait for a's redelivery; a's stay in order.
	if want := []string{"b0", "b1", "b2", "a0", "a1", "a2"}; !slices.Equal(order, want) {
		t.Errorf("handled %v, want %v", order, want)
	}
}

func (s *suite) testDeadLetter(t *testing.T, b Backend) {
	dead := newRecorder()
	subscribe(t, b, "dlq.orders", dead.handler(nil), pubsub.SubscribeConfig{})
	tries := newRecorder()
	sub := subscribe(t, b, "dl.orders", tries.handler(errors.New("boom")), pubsub.SubscribeConfig{
		MaxDeliver: 3, Backoff: []time.Duration{50 * time.Millisecond}, DeadLetterTopic: "dlq.orders",
	})
	in := pubsub.NewMessage([]byte("poison"))
	in.Key = "k1"
	in.Headers = map[string]string{"tenant": "t1"}
	publish(t, b, "dl.orders", in)
	d := dead.exactly(t, 1)[0]
	tries.exactly(t, 3)
	h := d.Headers
	if string(d.Payload) != "poison" || d.Key != "k1" || h["tenant"] != "t1" {
		t.Errorf("dead letter payload %q key %q tenant %q; want the original's", d.Payload, d.Key, h["tenant"])
	}
	want := map[string]string{
		pubsub.HeaderDeadLetterID: in.ID, pubsub.HeaderDeadLetterTopic: "dl.orders",
		pubsub.HeaderDeadLetterReason: "max-deliver", pubsub.HeaderDeadLetterError: "boom",
		pubsub.HeaderDeadLetterAttempts: "3", pubsub.HeaderDeadLetterSubscription: sub.Name(),
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	first, err1 := time.Parse(time.RFC3339Nano, h[pubsub.HeaderDeadLetterFirstDelivery])
	last, err2 := time.Parse(time.RFC3339Nano, h[pubsub.HeaderDeadLetterLastDelivery])
	if err1 != nil || err2 != nil || last.Sub(first) < 100*time.Millisecond {
		t.Errorf("first/last delivery %q, %q: want RFC 3339 times >= 100ms apart", h[pubsub.HeaderDeadLetterFirstDelivery], h[pubsub.HeaderDeadLetterLastDelivery])
	}
	if st := sub.Stats(); st.DeadLettered != 1 || st.Delivered != 3 || st.Redelivered != 2 || st.Pending+st.InFlight != 0 {
		t.Errorf("stats %+v: want DeadLettered 1, Delivered 3, Redelivered 2, nothing held", st)
	}
}

func (s *suite) testPermanent(t *testing.T, b Backend) {
	dead := newRecorder()
	subscribe(t, b, "dlq.perm", dead.handler(nil), pubsub.SubscribeConfig{})
	tries := newRecorder()
	subscribe(t, b, "perm", tries.handler(pubsub.Permanent(errors.New("bad input"))), pubsub.SubscribeConfig{DeadLetterTopic: "dlq.perm"})
	publish(t, b, "perm", numbered(0))
	d := dead.exactly(t, 1)[0]
	tries.exactly(t, 1)
	if d.Header(pubsub.HeaderDeadLetterReason) != "permanent" || d.Header(pubsub.HeaderDeadLetterError) != "bad input" {
		t.Errorf("dead letter reason %q error %q, want permanent, bad input", d.Header(pubsub.HeaderDeadLetterReason), d.Header(pubsub.HeaderDeadLetterError))
	}
	// Without a dead-letter topic the message is terminated.
	r := newRecorder()
	sub := subscribe(t, b, "perm.nodlq", r.handler(pubsub.Permanent(errors.New("bad"))), pubsub.SubscribeConfig{})
	publish(t, b, "perm.nodlq", numbered(0))
	r.exactly(t, 1)
	if st := sub.Stats(); st.Terminated != 1 {
		t.Errorf("Terminated = %d, want 1", st.Terminated)
	}
}

func (s *suite) testDedup(t *testing.T, b Backend) {
	r := newRecorder()
	subscribe(t, b, "dedup", r.handler(nil), pubsub.SubscribeConfig{})
	m := pubsub.NewMessage([]byte("once"))
	publish(t, b, "dedup", m)
	publish(t, b, "dedup", m) // a publisher retrying after a lost ack
	publish(t, b, "dedup", pubsub.NewMessage([]byte("other")))
	got := r.exactly(t, 2)
	if string(got[0].Payload) != "once" || string(got[1].Payload) != "other" {
		t.Errorf("got %q, %q; want once, other", got[0].Payload, got[1].Payload)
	}
}

func (s *suite) testReplay(t *testing.T, b Backend) {
	for i := range 10 {
		publish(t, b, "replay.a", numbered(i))
	}
	all := newRecorder()
	subscribe(t, b, "replay.*", all.handler(nil), pubsub.SubscribeConfig{Deliver: pubsub.DeliverAll})
	for i := 10; i < 15; i++ {
		publish(t, b, "replay.a", numbered(i))
	}
	got := all.exactly(t, 15)
	inOrder(t, "DeliverAll", got)

	fromSeq := newRecorder()
	subscribe(t, b, "replay.a", fromSeq.handler(nil), pubsub.SubscribeConfig{Deliver: pubsub.DeliverFromSeq, StartSeq: got[12].Seq})
	if f := fromSeq.exactly(t, 3); number(t, f[0]) != 12 {
		t.Errorf("DeliverFromSeq started at %d, want 12", number(t, f[0]))
	}

	time.Sleep(time.Second)
	mark := time.Now()
	publish(t, b, "replay.a", numbered(15))
	fromTime := newRecorder()
	subscribe(t, b, "replay.a", fromTime.handler(nil), pubsub.SubscribeConfig{Deliver: pubsub.DeliverFromTime, StartTime: mark})
	if f := fromTime.exactly(t, 1); number(t, f[0]) != 15 {
		t.Errorf("DeliverFromTime replayed %d, want 15", number(t, f[0]))
	}

	newOnly := newRecorder()
	subscribe(t, b, "replay.a", newOnly.handler(nil), pubsub.SubscribeConfig{})
	time.Sleep(quiet)
	if n := len(newOnly.snapshot()); n != 0 {
		t.Errorf("DeliverNew replayed %d messages", n)
	}
}

func (s *suite) testAckDeadline(t *testing.T, b Backend) {
	cfg := pubsub.SubscribeConfig{AckWait: 500 * time.Millisecond, MaxExtension: time.Second, Backoff: []time.Duration{10 * time.Millisecond}}
	// A handler slower than AckWait but within MaxExtension is not
	// redelivered: the deadline is extended while it runs.
	slow := newRecorder()
	subscribe(t, b, "ack.slow", func(ctx context.Context, m *pubsub.Message) error {
		time.Sleep(1200 * time.Millisecond) // > AckWait, < MaxExtension+AckWait
		slow.add(m)
		return nil
	}, cfg)
	publish(t, b, "ack.slow", numbered(0))
	if got := slow.exactly(t, 1); got[0].Attempt != 1 {
		t.Errorf("slow handler saw Attempt %d", got[0].Attempt)
	}

	// A handler past MaxExtension+AckWait is abandoned and the message
	// redelivered.
	causes := make(chan error, 1)
	r := newRecorder()
	sub := subscribe(t, b, "ack.hung", func(ctx context.Context, m *pubsub.Message) error {
		r.add(m)
		if m.Attempt == 1 {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		}
		return nil
	}, pubsub.SubscribeConfig{Concurrency: 2, AckWait: cfg.AckWait, MaxExtension: cfg.MaxExtension, Backoff: cfg.Backoff})
	publish(t, b, "ack.hung", numbered(0))
	got := r.exactly(t, 2)
	if got[1].Attempt != 2 {
		t.Errorf("redelivery has Attempt %d, want 2", got[1].Attempt)
	}
	if c := <-causes; !errors.Is(c, pubsub.ErrAckDeadline) {
		t.Errorf("expired handler's context cause = %v, want ErrAckDeadline", c)
	}
	if st := sub.Stats(); st.Expired != 1 || st.Acked != 1 {
		t.Errorf("stats %+v: want Expired 1, Acked 1", st)
	}
}

func (s *suite) testOverflow(t *testing.T, b Backend) {
	block := make(chan struct{})
	defer close(block)
	stuck := func(ctx context.Context, m *pubsub.Message) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}
	ctx := context.Background()
	fill := func(topic string, n int) {
		for i := range n {
			publish(t, b, topic, numbered(i))
		}
	}
	// QueueSize counts the message in flight: 1 handled + 1 queued.
	newest := subscribe(t, b, "of.newest", stuck, pubsub.SubscribeConfig{QueueSize: 2, Overflow: pubsub.OverflowDropNewest})
	oldest := subscribe(t, b, "of.oldest", stuck, pubsub.SubscribeConfig{QueueSize: 2, Overflow: pubsub.OverflowDropOldest})
	refuse := subscribe(t, b, "of.error", stuck, pubsub.SubscribeConfig{QueueSize: 2, Overflow: pubsub.OverflowError})
	blocks := subscribe(t, b, "of.block", stuck, pubsub.SubscribeConfig{QueueSize: 2})
	for _, topic := range []string{"of.newest", "of.oldest", "of.error", "of.block"} {
		fill(topic, 1)
	}
	time.Sleep(quiet) // let each first message go in flight
	fill("of.newest", 3)
	fill("of.oldest", 3)
	fill("of.error", 1)
	if err := b.Publish(ctx, "of.error", numbered(9)); !errors.Is(err, pubsub.ErrQueueFull) {
		t.Errorf("Publish to a full OverflowError subscription = %v, want ErrQueueFull", err)
	}
	fill("of.block", 1)
	tctx, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	if err := b.Publish(tctx, "of.block", numbered(9)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish to a full OverflowBlock subscription = %v, want context.DeadlineExceeded", err)
	}
	for name, c := range map[string]struct {
		s       pubsub.Subscription
		dropped uint64
		reject  uint64
	}{"newest": {newest, 2, 0}, "oldest": {oldest, 2, 0}, "error": {refuse, 0, 1}, "block": {blocks, 0, 0}} {
		st := c.s.Stats()
		if st.Dropped != c.dropped || st.Rejected != c.reject || st.Pending+st.InFlight != 2 {
			t.Errorf("%s: stats %+v, want Dropped %d, Rejected %d, 2 held", name, st, c.dropped, c.reject)
		}
	}
}

func (s *suite) testStalledSubscriptionDoesNotSlowOthers(t *testing.T, b Backend) {
	block := make(chan struct{})
	defer close(block)
	stalled := subscribe(t, b, "stall", func(ctx context.Context, _ *pubsub.Message) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}, pubsub.SubscribeConfig{QueueSize: 5, Overflow: pubsub.OverflowDropOldest})
	r := newRecorder()
	subscribe(t, b, "stall", r.handler(nil), pubsub.SubscribeConfig{})
	const n = 300
	for i := range n {
		publish(t, b, "stall", numbered(i))
	}
	inOrder(t, "healthy subscription", r.exactly(t, n))
	if st := stalled.Stats(); st.Dropped != n-5 {
		t.Errorf("stalled subscription dropped %d, want %d", st.Dropped, n-5)
	}
}

func (s *suite) testShutdown(t *testing.T, b Backend) {
	sd, ok := b.(interface{ Shutdown(context.Context) error })
	if !ok {
		t.Fatal("Features.Shutdown set but the backend has no Shutdown(ctx) error method")
	}
	const n = 200
	var delivered atomic.Int64
	for _, g := range []string{"", "g"} {
		subscribe(t, b, "shut.>", func(ctx context.Context, m *pubsub.Message) error {
			time.Sleep(10 * time.Millisecond)
			if g == "" {
				delivered.Add(1)
			}
			return nil
		}, pubsub.SubscribeConfig{Group: g, QueueSize: n})
	}
	for i := range n {
		publish(t, b, "shut.x", numbered(i))
	}
	time.Sleep(300 * time.Millisecond) // mid-stream
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := sd.Shutdown(ctx)
	var ue *pubsub.UndeliveredError
	if !errors.As(err, &ue) {
		t.Fatalf("Shutdown mid-stream = %v, want an UndeliveredError", err)
	}
	undelivered := 0
	for _, u := range ue.Messages {
		if u.Subscription != "g" {
			undelivered++
		}
	}
	if got := int(delivered.Load()) + undelivered; got != n || undelivered == 0 {
		t.Errorf("delivered %d + undelivered %d = %d, want %d with some undelivered", delivered.Load(), undelivered, got, n)
	}
	if err := b.Publish(context.Background(), "shut.x", numbered(0)); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Publish after Shutdown = %v, want ErrClosed", err)
	}
	nop := func(context.Context, *pubsub.Message) error { return nil }
	if _, err := b.Subscribe(context.Background(), "x", nop, pubsub.SubscribeConfig{}); !errors.Is(err, pubsub.ErrClosed) {
		t.Errorf("Subscribe after Shutdown = %v, want ErrClosed", err)
	}
	if err := sd.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}
