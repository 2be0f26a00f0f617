// Package circuitbreakertest holds the conformance suite for
// [circuitbreaker.Store] implementations.
//
// A store adapter's tests call [RunStore] with a constructor for a fresh,
// empty store:
//
//	func TestStore(t *testing.T) {
//		circuitbreakertest.RunStore(t, func(t *testing.T) circuitbreaker.Store {
//			return redisstore.New(newClient(t))
//		})
//	}
package circuitbreakertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

// RunStore checks that the stores made by newStore behave like
// [circuitbreaker.MemoryStore]: Load of an unknown name is the zero state;
// Publish keeps the newest state per name under
// [circuitbreaker.SharedState.Newer], whatever the order of concurrent
// writes; names are independent; a done context is reported with an error
// wrapping ctx.Err() and changes nothing. OpenUntil must survive a round
// trip to within a microsecond.
func RunStore(t *testing.T, newStore func(t *testing.T) circuitbreaker.Store) {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	st := func(v uint64, after time.Duration, trips int) circuitbreaker.SharedState {
		return circuitbreaker.SharedState{Version: v, OpenUntil: base.Add(after), Trips: trips}
	}
	load := func(t *testing.T, s circuitbreaker.Store, name string) circuitbreaker.SharedState {
		t.Helper()
		got, err := s.Load(ctx, name)
		if err != nil {
			t.Fatalf("Load(%q): %v", name, err)
		}
		return got
	}
	publish := func(t *testing.T, s circuitbreaker.Store, name string, v circuitbreaker.SharedState) {
		t.Helper()
		if err := s.Publish(ctx, name, v); err != nil {
			t.Fatalf("Publish(%q, %+v): %v", name, v, err)
		}
	}
	same := func(t *testing.T, got, want circuitbreaker.SharedState) {
		t.Helper()
		d := got.OpenUntil.Sub(want.OpenUntil)
		if got.Version != want.Version || got.Trips != want.Trips || d > time.Microsecond || d < -time.Microsecond {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}

	t.Run("LoadUnknownIsZero", func(t *testing.T) {
		s := newStore(t)
		same(t, load(t, s, "nobody"), circuitbreaker.SharedState{})
	})
	t.Run("PublishThenLoad", func(t *testing.T) {
		s := newStore(t)
		publish(t, s, "a", st(1, time.Minute, 1))
		same(t, load(t, s, "a"), st(1, time.Minute, 1))
	})
	t.Run("NewerVersionWins", func(t *testing.T) {
		s := newStore(t)
		publish(t, s, "a", st(2, time.Minute, 2))
		publish(t, s, "a", st(1, time.Hour, 1)) // older version, later time: ignored
		same(t, load(t, s, "a"), st(2, time.Minute, 2))
		publish(t, s, "a", st(3, time.Second, 1))
		same(t, load(t, s, "a"), st(3, time.Second, 1))
	})
	t.Run("SameVersionLaterOpenUntilWins", func(t *testing.T) {
		s := newStore(t)
		publish(t, s, "a", st(4, time.Minute, 1))
		publish(t, s, "a", st(4, time.Second, 1))
		same(t, load(t, s, "a"), st(4, time.Minute, 1))
		publish(t, s, "a", st(4, time.Hour, 2))
		same(t, load(t, s, "a"), st(4, time.Hour, 2))
	})
	t.Run("NamesAreIndependent", func(t *testing.T) {
		s := newStore(t)
		publish(t, s, "a", st(1, time.Minute, 1))
		publish(t, s, "b", st(7, time.Hour, 3))
		same(t, load(t, s, "a"), st(1, time.Minute, 1))
		same(t, load(t, s, "b"), st(7, time.Hour, 3))
		same(t, load(t, s, "c"), circuitbreaker.SharedState{})
	})
	t.Run("DoneContext", func(t *testing.T) {
		s := newStore(t)
		publish(t, s, "a", st(1, time.Minute, 1))
		dead, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Publish(dead, "a", st(9, time.Hour, 9)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Publish with a cancelled context: got %v, want an error wrapping context.Canceled", err)
		}
		if _, err := s.Load(dead, "a"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Load with a cancelled context: got %v, want an error wrapping context.Canceled", err)
		}
		same(t, load(t, s, "a"), st(1, time.Minute, 1))
	})
	t.Run("ConcurrentPublishersConverge", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8*50)
		for w := range 8 {
			wg.Go(func() {
				for i := range 50 {
					v := uint64((i*7+w*13)%50 + 1)
					if err := s.Publish(ctx, "hot", st(v, time.Duration(w)*time.Second, w)); err != nil {
						errs <- fmt.Errorf("publish: %w", err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Version 50 was published by every writer; the latest OpenUntil
		// among them (writer 7) must win.
		same(t, load(t, s, "hot"), st(50, 7*time.Second, 7))
	})
}
