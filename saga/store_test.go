package saga_test

import (
	"context"
	"errors"
	"testing"

	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/saga/sagatest"
)

func TestMemoryStoreConformance(t *testing.T) {
	sagatest.Run(t, func(*testing.T) saga.Store { return saga.NewMemoryStore() })
}

func TestEventStoreConformance(t *testing.T) {
	sagatest.Run(t, func(t *testing.T) saga.Store {
		s, err := saga.NewEventStore(eventsource.NewMemoryStore(), saga.EventStoreConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestEventStoreSharesTheLogAcrossInstances(t *testing.T) {
	ctx := context.Background()
	es := eventsource.NewMemoryStore()
	a, _ := saga.NewEventStore(es, saga.EventStoreConfig{})
	other, _ := saga.NewEventStore(es, saga.EventStoreConfig{Category: "othersaga"})
	if _, err := a.Append(ctx, "trip-1", 0, saga.Record{Type: saga.RecordStarted, State: saga.Running, Saga: "trip"}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Append(ctx, "x", 0, saga.Record{Type: saga.RecordStarted, State: saga.Running, Saga: "x"}); err != nil {
		t.Fatal(err)
	}
	// A coordinator in a new process builds its index from the log.
	b, _ := saga.NewEventStore(es, saga.EventStoreConfig{})
	got, err := b.List(ctx, saga.Query{})
	if err != nil || len(got) != 1 || got[0].ID != "trip-1" || got[0].State != saga.Running {
		t.Fatalf("List from a new EventStore = %+v, %v; want trip-1 running only", got, err)
	}
	// The history is an ordinary stream, correlated by saga ID.
	for ev, err := range es.ReadStream(ctx, "saga-trip-1", eventsource.StreamQuery{}) {
		if err != nil || ev.Type != string(saga.RecordStarted) || ev.Metadata.CorrelationID != "trip-1" {
			t.Fatalf("stream event %+v, %v", ev, err)
		}
	}
	// Writes through b are seen by a, and conflict with a's stale view.
	if _, err := b.Append(ctx, "trip-1", 1, saga.Record{Type: saga.RecordCompleted, State: saga.Completed}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, "trip-1", 1, saga.Record{Type: saga.RecordAborted, State: saga.Aborted}); !errors.Is(err, saga.ErrConflict) {
		t.Fatalf("stale append through another instance: %v, want ErrConflict", err)
	}
	got, _ = a.List(ctx, saga.Query{States: []saga.State{saga.Completed}})
	if len(got) != 1 {
		t.Fatalf("List through a = %+v, want trip-1 completed", got)
	}
}

func TestNewEventStoreRejectsBadConfig(t *testing.T) {
	if _, err := saga.NewEventStore(nil, saga.EventStoreConfig{}); !errors.Is(err, saga.ErrInvalidConfig) {
		t.Errorf("nil store: %v", err)
	}
	if _, err := saga.NewEventStore(eventsource.NewMemoryStore(), saga.EventStoreConfig{Category: "a-b"}); !errors.Is(err, saga.ErrInvalidConfig) {
		t.Errorf("category with '-': %v", err)
	}
}
