package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/pubsub"
)

func TestEventMessageRoundTrip(t *testing.T) {
	ev := eventsource.Event{
		StreamID: "counter-a", Version: 3, Position: 17, ID: eventsource.NewID(), Type: "counter.added",
		SchemaVersion: 2, Time: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC), Data: []byte(`{"N":1}`),
		Metadata: eventsource.Metadata{CorrelationID: "corr", CausationID: "cause", Headers: map[string]string{"tenant": "t1"}},
	}
	m := cqrs.EventMessage(ev)
	assert.Equal(t, ev.ID, m.ID)
	assert.Equal(t, "counter-a", m.Key)
	assert.Equal(t, "corr", m.Header(pubsub.HeaderCorrelationID))
	got, err := cqrs.MessageEvent(m)
	require.NoError(t, err)
	assert.Equal(t, ev, got)

	ev.Metadata = eventsource.Metadata{}
	got, err = cqrs.MessageEvent(cqrs.EventMessage(ev))
	require.NoError(t, err)
	assert.Equal(t, ev, got)

	for _, h := range []string{cqrs.HeaderEventStream, cqrs.HeaderEventType, cqrs.HeaderEventVersion,
		cqrs.HeaderEventPosition, cqrs.HeaderEventSchema, cqrs.HeaderEventTime} {
		t.Run("without "+h, func(t *testing.T) {
			bad := cqrs.EventMessage(ev).Clone()
			delete(bad.Headers, h)
			_, err := cqrs.MessageEvent(bad)
			require.ErrorIs(t, err, cqrs.ErrNotAnEvent)
			assert.Contains(t, err.Error(), h)
		})
	}
	_, err = cqrs.MessageEvent(nil)
	require.ErrorIs(t, err, cqrs.ErrNotAnEvent)
}

func FuzzMessageEvent(f *testing.F) {
	f.Add("counter-a", "3", "17", "t", "1", "2025-03-01T12:00:00Z", "md")
	f.Add("", "0", "x", "", "-1", "yesterday", "")
	f.Fuzz(func(t *testing.T, stream, version, position, typ, schema, at, md string) {
		m := &pubsub.Message{ID: "id", Payload: []byte("p"), Headers: map[string]string{
			cqrs.HeaderEventStream: stream, cqrs.HeaderEventVersion: version, cqrs.HeaderEventPosition: position,
			cqrs.HeaderEventType: typ, cqrs.HeaderEventSchema: schema, cqrs.HeaderEventTime: at,
			cqrs.HeaderEventMetadataPrefix + "k": md,
		}}
		ev, err := cqrs.MessageEvent(m)
		if err != nil {
			if !errors.Is(err, cqrs.ErrNotAnEvent) {
				t.Fatalf("error %v does not wrap ErrNotAnEvent", err)
			}
			return
		}
		again, err := cqrs.MessageEvent(cqrs.EventMessage(ev))
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", ev, err)
		}
		if !again.Time.Equal(ev.Time) {
			t.Fatalf("time %v became %v", ev.Time, again.Time)
		}
		again.Time = ev.Time
		assert.Equal(t, ev, again)
	})
}

// TestPubSubFeed feeds one read model from the log and another from
// pubsub through Forward; they must agree, and redeliveries and repeats
// must not be applied twice.
func TestPubSubFeed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	broker, err := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	require.NoError(t, err)
	defer broker.Close()
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
	runModel(t, f.totals)

	remote, err := cqrs.NewReadModel(ctx, f.store, newTotals(), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "remote"})
	require.NoError(t, err)
	failed := false
	sub, err := broker.Subscribe(ctx, "events.>", func(ctx context.Context, m *pubsub.Message) error {
		if !failed && m.Header(cqrs.HeaderEventPosition) == "5" {
			failed = true // one nack: the message is redelivered
			return errors.New("transient")
		}
		return remote.Handle(ctx, m)
	}, pubsub.SubscribeConfig{Backoff: []time.Duration{time.Millisecond}})
	require.NoError(t, err)
	defer sub.Close()

	fwdDone := make(chan uint64, 1)
	go func() {
		last, err := cqrs.Forward(ctx, f.store, 0, eventsource.Filter{}, broker, func(ev eventsource.Event) string {
			return "events." + eventsource.Category(ev.StreamID)
		})
		assert.ErrorIs(t, err, context.Canceled)
		fwdDone <- last
	}()
	var tok cqrs.Token
	for i := range 50 {
		tok = f.add(t, ctx, fmt.Sprint("c", i%7), 1).Token
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	require.NoError(t, remote.WaitFor(wctx, tok))
	require.NoError(t, f.totals.WaitFor(wctx, tok))
	// A re-forward of the whole log (as after a forwarder crash) changes nothing.
	for ev, err := range f.store.ReadAll(ctx, 0, eventsource.Filter{}) {
		require.NoError(t, err)
		require.NoError(t, remote.Handle(ctx, cqrs.EventMessage(ev)))
	}
	a, _ := rowsOf(remote.Current())
	b, _ := rowsOf(f.totals.Current())
	assert.Equal(t, b, a)
	assert.Equal(t, expectedTotals(t, f.store), a)
	assert.True(t, failed)
	cancel()
	assert.Equal(t, uint64(tok), <-fwdDone)

	err = remote.Handle(context.Background(), &pubsub.Message{ID: "x"})
	require.ErrorIs(t, err, pubsub.ErrPermanent)
	_, err = cqrs.Forward(ctx, nil, 0, eventsource.Filter{}, broker, nil)
	require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
}

// TestPubSubDriftRepaired loses a message on the way to a pubsub-fed
// read model; the reconciler finds and repairs the row.
func TestPubSubDriftRepaired(t *testing.T) {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	for i := range 40 {
		appendRaw(t, store, fmt.Sprint("c", i%4), 1+i)
	}
	rm, err := cqrs.NewReadModel(ctx, store, newTotals(), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "fed", New: newTotals})
	require.NoError(t, err)
	for ev, err := range store.ReadAll(ctx, 0, eventsource.Filter{}) {
		require.NoError(t, err)
		if ev.Position == 22 {
			continue // dropped on the way
		}
		require.NoError(t, rm.Handle(ctx, cqrs.EventMessage(ev)))
	}
	rec, err := cqrs.NewReconciler(rm, cqrs.ReconcilerConfig{})
	require.NoError(t, err)
	rep, err := rec.Pass(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"c1"}, rep.Repaired) // position 22 is i=21, counter c1
	got, _ := rowsOf(rm.Current())
	assert.Equal(t, expectedTotals(t, store), got)
}
