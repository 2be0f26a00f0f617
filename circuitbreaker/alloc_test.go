package circuitbreaker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/circuitbreaker"
)

// TestHotPathsDoNotAllocate guards the 0 allocs/op the benchmarks report,
// so that a change that adds an allocation to a hot path fails here and not
// only in a benchmark nobody reads: a closed-state success under every
// policy, a closed-state failure, an open-state rejection, and the
// two-step permit with its done.
func TestHotPathsDoNotAllocate(t *testing.T) {
	ctx := context.Background()
	policies := []struct {
		name string
		cfg  circuitbreaker.Config
	}{
		{"consecutive", circuitbreaker.Config{}},
		{"count-window", circuitbreaker.Config{FailureRate: 0.5, WindowCalls: 100}},
		{"time-window", circuitbreaker.Config{FailureRate: 0.5, WindowDuration: 10 * time.Second}},
		{"slow-call", circuitbreaker.Config{SlowCallRate: 0.5, FailureRate: 0.5, WindowCalls: 100}},
	}
	for _, p := range policies {
		t.Run(p.name+"/success", func(t *testing.T) {
			b := newBreaker(t, p.cfg)
			assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }))
			assert.Zero(t, testing.AllocsPerRun(1000, func() {
				done, err := b.Allow()
				if err == nil {
					done(nil)
				}
			}))
			assert.Equal(t, circuitbreaker.StateClosed, b.State())
		})
	}
	t.Run("failure", func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 1 << 62})
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, fail) }))
		assert.Equal(t, circuitbreaker.StateClosed, b.State())
	})
	t.Run("open", func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
		_ = b.Do(ctx, fail)
		require.Equal(t, circuitbreaker.StateOpen, b.State())
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = b.Do(ctx, succeed) }))
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = b.Allow() }))
		require.ErrorIs(t, b.Do(ctx, succeed), circuitbreaker.ErrOpen)
	})
}
