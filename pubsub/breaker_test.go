package pubsub_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/circuitbreaker"
	"github.com/distkit/distkit/pubsub"
)

var _ pubsub.Breaker = (*circuitbreaker.Breaker)(nil)

// TestCircuitBreakerWithRealBreaker: while the downstream is down the
// breaker opens and messages are redelivered without reaching the
// handler; once it recovers every message is handled.
func TestCircuitBreakerWithRealBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb, err := circuitbreaker.New(circuitbreaker.Config{ConsecutiveFailures: 3, OpenTimeout: 10 * time.Second})
		require.NoError(t, err)
		b := newBroker(t, pubsub.MemoryConfig{})
		var down atomic.Bool
		down.Store(true)
		var calls, acked atomic.Int64
		h := pubsub.CircuitBreaker(cb)(func(context.Context, *pubsub.Message) error {
			calls.Add(1)
			if down.Load() {
				return errors.New("downstream down")
			}
			acked.Add(1)
			return nil
		})
		sub, err := b.Subscribe(t.Context(), "cb", h, pubsub.SubscribeConfig{
			Concurrency: 4, MaxDeliver: -1, Backoff: []time.Duration{time.Second},
		})
		require.NoError(t, err)
		for range 10 {
			require.NoError(t, b.Publish(t.Context(), "cb", pubsub.NewMessage(nil)))
		}
		time.Sleep(5 * time.Second)
		// Three failures open the breaker. Each of the other three workers
		// may have passed Allow just before the third failure was recorded,
		// so up to 3+3 calls reach the handler; the other 4+ never do.
		require.GreaterOrEqual(t, calls.Load(), int64(3))
		require.LessOrEqual(t, calls.Load(), int64(6), "the open breaker kept messages from the failing handler")
		require.Greater(t, sub.Stats().Redelivered, uint64(10), "refused messages were redelivered")
		down.Store(false)
		time.Sleep(time.Minute)
		require.EqualValues(t, 10, acked.Load())
		require.Equal(t, circuitbreaker.StateClosed, cb.State())
	})
}
