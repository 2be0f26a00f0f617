package circuitbreaker_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

func FuzzConfig(f *testing.F) {
	f.Add(0, 0.0, 0.0, int64(0), 0, 0, int64(0), 0, int64(0), int64(0), 0, 0, int64(0))
	f.Add(3, 0.5, 0.25, int64(time.Second), 5, 0, int64(time.Minute), 12, int64(time.Second), int64(time.Minute), 2, 3, int64(time.Second))
	f.Add(-1, 1.5, -0.5, int64(-1), -1, 10, int64(time.Millisecond), 2000, int64(-1), int64(1), -1, -1, int64(-1))
	f.Add(1, 1.0, 1.0, int64(1), 1, 1, int64(0), 0, int64(1), int64(1), 1, 1, int64(1))
	f.Fuzz(func(t *testing.T, consec int, failRate, slowRate float64, slowDur int64, minCalls, windowCalls int,
		windowDur int64, buckets int, openTimeout, maxOpen int64, probes, successes int, probeTimeout int64) {
		cfg := circuitbreaker.Config{
			ConsecutiveFailures: consec, FailureRate: failRate, SlowCallRate: slowRate,
			SlowCallDuration: time.Duration(slowDur), MinCalls: minCalls, WindowCalls: windowCalls,
			WindowDuration: time.Duration(windowDur), WindowBuckets: buckets,
			OpenTimeout: time.Duration(openTimeout), MaxOpenTimeout: time.Duration(maxOpen),
			HalfOpenProbes: probes % (1 << 18), SuccessThreshold: successes, ProbeTimeout: time.Duration(probeTimeout),
		}
		synctest.Test(t, func(t *testing.T) {
			b, err := circuitbreaker.New(cfg)
			if err != nil {
				var ce *circuitbreaker.ConfigError
				if !errors.As(err, &ce) || ce.Field == "" || !errors.Is(err, circuitbreaker.ErrInvalidConfig) {
					t.Fatalf("New(%+v) = %v: want a *ConfigError naming a field", cfg, err)
				}
				return
			}
			// A valid config makes a working breaker: a run of failures as
			// long as the consecutive threshold opens it.
			n := cfg.ConsecutiveFailures
			if n == 0 && cfg.FailureRate == 0 && cfg.SlowCallRate == 0 {
				n = 5
			}
			if n == 0 || n > 64 {
				n = 64
			}
			for range n {
				_ = b.Do(context.Background(), func(context.Context) error { return errBoom })
			}
			s := b.Snapshot()
			if cfg.ConsecutiveFailures > 0 && cfg.ConsecutiveFailures <= 64 || n == 5 {
				if s.State != circuitbreaker.StateOpen {
					t.Fatalf("%+v: state %v after %d failures in a row", cfg, s.State, n)
				}
			}
			if s.State == circuitbreaker.StateOpen && !s.RetryAt.After(s.Since) {
				t.Fatalf("%+v: open with RetryAt %v not after %v", cfg, s.RetryAt, s.Since)
			}
		})
	})
}
