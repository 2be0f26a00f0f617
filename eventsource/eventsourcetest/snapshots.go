package eventsourcetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit/distkit/eventsource"
)

// RunSnapshotStore checks that the stores returned by newStore follow the
// [eventsource.SnapshotStore] contract. newStore is called once per
// subtest and must return a new, empty store.
func RunSnapshotStore(t *testing.T, newStore func(t *testing.T) eventsource.SnapshotStore) {
	ctx := context.Background()
	snap := func(stream string, version uint64, data string) eventsource.Snapshot {
		return eventsource.Snapshot{
			StreamID: stream, AggregateType: "acct", Version: version, SchemaVersion: 2,
			Time: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC), Data: []byte(data),
		}
	}
	same := func(a, b eventsource.Snapshot) bool {
		return a.StreamID == b.StreamID && a.AggregateType == b.AggregateType && a.Version == b.Version &&
			a.SchemaVersion == b.SchemaVersion && a.Time.Equal(b.Time) && string(a.Data) == string(b.Data)
	}
	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.LoadSnapshot(ctx, "acct-1"); !errors.Is(err, eventsource.ErrSnapshotNotFound) {
			t.Fatalf("LoadSnapshot of a stream without one: got %v, want ErrSnapshotNotFound", err)
		}
	})
	t.Run("RoundTripPerStream", func(t *testing.T) {
		s := newStore(t)
		a, b := snap("acct-1", 10, `{"a":1}`), snap("acct-2", 20, `{"b":2}`)
		for _, x := range []eventsource.Snapshot{a, b} {
			if err := s.SaveSnapshot(ctx, x); err != nil {
				t.Fatalf("SaveSnapshot: %v", err)
			}
		}
		for _, want := range []eventsource.Snapshot{a, b} {
			got, err := s.LoadSnapshot(ctx, want.StreamID)
			if err != nil || !same(got, want) {
				t.Fatalf("LoadSnapshot(%q): got %+v, %v; want %+v", want.StreamID, got, err, want)
			}
		}
	})
	t.Run("Replaces", func(t *testing.T) {
		s := newStore(t)
		for _, x := range []eventsource.Snapshot{snap("acct-1", 10, "ten"), snap("acct-1", 30, "thirty"), snap("acct-1", 20, "twenty")} {
			if err := s.SaveSnapshot(ctx, x); err != nil {
				t.Fatalf("SaveSnapshot: %v", err)
			}
		}
		got, err := s.LoadSnapshot(ctx, "acct-1")
		if err != nil || got.Version != 20 || string(got.Data) != "twenty" {
			t.Fatalf("after saving 10, 30, 20: got %+v, %v; want the last saved (20)", got, err)
		}
	})
	t.Run("Copies", func(t *testing.T) {
		s := newStore(t)
		x := snap("acct-1", 1, "state")
		if err := s.SaveSnapshot(ctx, x); err != nil {
			t.Fatal(err)
		}
		x.Data[0] = 'X'
		got, err := s.LoadSnapshot(ctx, "acct-1")
		if err != nil || string(got.Data) != "state" {
			t.Fatalf("changing saved data changed the store: %q, %v", got.Data, err)
		}
		got.Data[0] = 'Y'
		again, err := s.LoadSnapshot(ctx, "acct-1")
		if err != nil || string(again.Data) != "state" {
			t.Fatalf("changing loaded data changed the store: %q, %v", again.Data, err)
		}
	})
	t.Run("ContextCancelled", func(t *testing.T) {
		s := newStore(t)
		c, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.SaveSnapshot(c, snap("acct-1", 1, "x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("SaveSnapshot with a cancelled context: got %v, want context.Canceled", err)
		}
		if _, err := s.LoadSnapshot(c, "acct-1"); !errors.Is(err, context.Canceled) {
			t.Fatalf("LoadSnapshot with a cancelled context: got %v, want context.Canceled", err)
		}
		if _, err := s.LoadSnapshot(ctx, "acct-1"); !errors.Is(err, eventsource.ErrSnapshotNotFound) {
			t.Fatalf("a cancelled SaveSnapshot stored a snapshot: %v", err)
		}
	})
}
