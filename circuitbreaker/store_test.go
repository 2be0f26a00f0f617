package circuitbreaker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/circuitbreaker"
	"github.com/distkit/distkit/circuitbreaker/circuitbreakertest"
)

func TestMemoryStoreConformance(t *testing.T) {
	circuitbreakertest.RunStore(t, func(*testing.T) circuitbreaker.Store { return circuitbreaker.NewMemoryStore() })
	circuitbreakertest.RunStore(t, func(*testing.T) circuitbreaker.Store { return new(circuitbreaker.MemoryStore) })
}

// countingStore counts the calls that reach the store.
type countingStore struct {
	circuitbreaker.Store
	loads, publishes atomic.Int64
	fail             atomic.Bool
}

var errStoreDown = errors.New("store down")

func (s *countingStore) Load(ctx context.Context, name string) (circuitbreaker.SharedState, error) {
	s.loads.Add(1)
	if s.fail.Load() {
		return circuitbreaker.SharedState{}, errStoreDown
	}
	return s.Store.Load(ctx, name)
}

func (s *countingStore) Publish(ctx context.Context, name string, st circuitbreaker.SharedState) error {
	s.publishes.Add(1)
	if s.fail.Load() {
		return errStoreDown
	}
	return s.Store.Publish(ctx, name, st)
}

// run starts r.Run in a goroutine and stops it at the end of the test.
func run(t *testing.T, r interface{ Run(context.Context) error }) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := r.Run(ctx)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func TestSharedTripReachesOtherInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := circuitbreaker.NewMemoryStore()
		cfg := circuitbreaker.Config{
			Name: "payments", ConsecutiveFailures: 2, OpenTimeout: time.Minute,
			Store: store, SyncInterval: time.Second,
		}
		a, b := newBreaker(t, cfg), newBreaker(t, cfg)
		run(t, a)
		run(t, b)
		synctest.Wait()

		calls(a, 2, errBoom)
		tripped := time.Now()
		synctest.Wait() // a publishes at once
		st, err := store.Load(context.Background(), "payments")
		require.NoError(t, err)
		require.Equal(t, tripped.Add(time.Minute), st.OpenUntil)
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "b has not synced yet")

		time.Sleep(time.Second)
		synctest.Wait()
		s := b.Snapshot()
		require.Equal(t, circuitbreaker.StateOpen, s.State, "b adopted a's trip")
		require.Equal(t, tripped.Add(time.Minute), s.RetryAt, "with a's open period")
		require.ErrorIs(t, b.Do(context.Background(), succeed), circuitbreaker.ErrOpen)

		// Each instance probes on its own when the period ends.
		time.Sleep(time.Minute - time.Second)
		require.NoError(t, b.Do(context.Background(), succeed))
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		require.Equal(t, circuitbreaker.StateHalfOpen, a.State())

		// An adopted trip is not adopted again, and b does not re-publish it.
		time.Sleep(3 * time.Second)
		synctest.Wait()
		require.Equal(t, circuitbreaker.StateClosed, b.State())
	})
}

func TestStoreIsNotOnTheCallPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &countingStore{Store: circuitbreaker.NewMemoryStore()}
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 3, Store: store})
		calls(b, 100, nil)
		calls(b, 3, errBoom)
		calls(b, 10, nil) // rejected
		require.Equal(t, circuitbreaker.StateOpen, b.State())
		require.Zero(t, store.loads.Load()+store.publishes.Load(), "calls and trips never wait on the store")
		run(t, b)
		synctest.Wait()
		require.EqualValues(t, 1, store.publishes.Load(), "Run publishes the trip")
	})
}

func TestStoreErrorsAreLoggedAndRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		store := &countingStore{Store: circuitbreaker.NewMemoryStore()}
		store.fail.Store(true)
		b := newBreaker(t, circuitbreaker.Config{
			Name: "x", ConsecutiveFailures: 1, Store: store, SyncInterval: time.Second,
			Logger: slog.New(slog.NewTextHandler(&buf, nil)),
		})
		run(t, b)
		calls(b, 1, errBoom)
		synctest.Wait()
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "the local trip stands")
		require.Contains(t, buf.String(), "circuit breaker store error")
		require.Contains(t, buf.String(), "store down")
		store.fail.Store(false)
		time.Sleep(time.Second)
		synctest.Wait()
		st, err := store.Store.Load(context.Background(), "x")
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Version, "the failed publish was retried")
	})
}

func TestAdoptSkipsStaleAndExpiredTrips(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := circuitbreaker.NewMemoryStore()
		ctx := context.Background()
		cfg := circuitbreaker.Config{Name: "n", Store: store, SyncInterval: time.Second}
		b := newBreaker(t, cfg)
		require.NoError(t, store.Publish(ctx, "n", circuitbreaker.SharedState{Version: 1, OpenUntil: time.Now().Add(-time.Second), Trips: 1}))
		run(t, b)
		synctest.Wait()
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "an expired trip is not adopted")

		b.ForceClosed()
		require.NoError(t, store.Publish(ctx, "n", circuitbreaker.SharedState{Version: 2, OpenUntil: time.Now().Add(time.Hour), Trips: 1}))
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, circuitbreaker.StateForcedClosed, b.State(), "a forced state is not overridden")

		b.Reset()
		require.NoError(t, store.Publish(ctx, "n", circuitbreaker.SharedState{Version: 3, OpenUntil: time.Now().Add(time.Hour), Trips: 1}))
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, circuitbreaker.StateOpen, b.State())

		b.Reset()
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "a trip already adopted is not adopted again")
	})
}

func TestRunWithoutStore(t *testing.T) {
	b := newBreaker(t, circuitbreaker.Config{})
	require.ErrorIs(t, b.Run(context.Background()), circuitbreaker.ErrNoStore)
	g, err := circuitbreaker.NewGroup(circuitbreaker.GroupConfig{})
	require.NoError(t, err)
	require.ErrorIs(t, g.Run(context.Background()), circuitbreaker.ErrNoStore)
}
