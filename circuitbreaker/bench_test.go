package circuitbreaker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

// Baselines, measured in the same run as the breaker so that ratios hold on
// a noisy machine:
//
//   - atomic: one bare atomic increment, the floor for anything that
//     counts calls;
//   - mutex-now: the classic design (sony/gobreaker's): a mutex and a
//     time.Now before the call to check the state, and again after it to
//     record the outcome.

var counter atomic.Uint64

type mutexBreaker struct {
	mu       sync.Mutex
	open     bool
	expiry   time.Time
	failures int
	calls    int
}

func (m *mutexBreaker) do(fn func() error) error {
	m.mu.Lock()
	now := time.Now()
	if m.open && now.Before(m.expiry) {
		m.mu.Unlock()
		return circuitbreaker.ErrOpen
	}
	m.calls++
	m.mu.Unlock()
	err := fn()
	m.mu.Lock()
	now = time.Now()
	if err != nil {
		m.failures++
		if m.failures >= 5 {
			m.open, m.expiry = true, now.Add(time.Minute)
		}
	} else {
		m.failures = 0
	}
	m.mu.Unlock()
	return err
}

func BenchmarkBaseline(b *testing.B) {
	b.Run("atomic/serial", func(b *testing.B) {
		for b.Loop() {
			counter.Add(1)
		}
	})
	b.Run("atomic/parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				counter.Add(1)
			}
		})
	})
	ok := func() error { return nil }
	b.Run("mutex-now/serial", func(b *testing.B) {
		var m mutexBreaker
		for b.Loop() {
			_ = m.do(ok)
		}
	})
	b.Run("mutex-now/parallel", func(b *testing.B) {
		var m mutexBreaker
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = m.do(ok)
			}
		})
	})
	b.Run("mutex-now-open/serial", func(b *testing.B) {
		m := mutexBreaker{open: true, expiry: time.Now().Add(time.Hour)}
		for b.Loop() {
			_ = m.do(ok)
		}
	})
}

// policies are the trip policies benchmarked on every path.
var policies = []struct {
	name string
	cfg  circuitbreaker.Config
}{
	{"consecutive", circuitbreaker.Config{}},
	{"count-window", circuitbreaker.Config{FailureRate: 0.5, WindowCalls: 100}},
	{"time-window", circuitbreaker.Config{FailureRate: 0.5, WindowDuration: 10 * time.Second}},
	{"slow-call", circuitbreaker.Config{SlowCallRate: 0.5, FailureRate: 0.5, WindowCalls: 100}},
	{"all", circuitbreaker.Config{ConsecutiveFailures: 5, SlowCallRate: 0.5, FailureRate: 0.5, WindowDuration: 10 * time.Second}},
}

func newBench(b *testing.B, cfg circuitbreaker.Config) *circuitbreaker.Breaker {
	br, err := circuitbreaker.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return br
}

func BenchmarkClosed(b *testing.B) {
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	for _, p := range policies {
		b.Run(p.name+"/serial", func(b *testing.B) {
			br := newBench(b, p.cfg)
			for b.Loop() {
				_ = br.Do(ctx, ok)
			}
		})
		b.Run(p.name+"/parallel", func(b *testing.B) {
			br := newBench(b, p.cfg)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = br.Do(ctx, ok)
				}
			})
		})
	}
}

func BenchmarkAllow(b *testing.B) {
	for _, p := range policies {
		b.Run(p.name+"/serial", func(b *testing.B) {
			br := newBench(b, p.cfg)
			for b.Loop() {
				done, err := br.Allow()
				if err == nil {
					done(nil)
				}
			}
		})
		b.Run(p.name+"/parallel", func(b *testing.B) {
			br := newBench(b, p.cfg)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					done, err := br.Allow()
					if err == nil {
						done(nil)
					}
				}
			})
		})
	}
}

func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	br := newBench(b, circuitbreaker.Config{})
	fn := func(context.Context) (int, error) { return 1, nil }
	for b.Loop() {
		_, _ = circuitbreaker.Call(ctx, br, fn)
	}
}

var errBench = errors.New("bench failure")

// BenchmarkFailure measures failing calls in the closed state. With the
// consecutive policy every call fails and the threshold is out of reach;
// rate policies would trip on a run of failures, so there every other call
// fails, under a 0.6 threshold, and ns/op is the mean of the two paths.
func BenchmarkFailure(b *testing.B) {
	ctx := context.Background()
	fail := func(context.Context) error { return errBench }
	b.Run("consecutive/serial", func(b *testing.B) {
		br := newBench(b, circuitbreaker.Config{ConsecutiveFailures: 1 << 62})
		for b.Loop() {
			_ = br.Do(ctx, fail)
		}
	})
	b.Run("consecutive/parallel", func(b *testing.B) {
		br := newBench(b, circuitbreaker.Config{ConsecutiveFailures: 1 << 62})
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = br.Do(ctx, fail)
			}
		})
	})
	var n atomic.Uint64
	half := func(context.Context) error {
		if n.Add(1)%2 == 0 {
			return errBench
		}
		return nil
	}
	for _, p := range []struct {
		name string
		cfg  circuitbreaker.Config
	}{
		{"count-window-half", circuitbreaker.Config{FailureRate: 0.6, WindowCalls: 100}},
		{"time-window-half", circuitbreaker.Config{FailureRate: 0.6, WindowDuration: 10 * time.Second}},
	} {
		b.Run(p.name+"/serial", func(b *testing.B) {
			br := newBench(b, p.cfg)
			for b.Loop() {
				_ = br.Do(ctx, half)
			}
			if br.State() != circuitbreaker.StateClosed {
				b.Fatal("breaker tripped")
			}
		})
	}
}

func openBreaker(b *testing.B) *circuitbreaker.Breaker {
	br := newBench(b, circuitbreaker.Config{ConsecutiveFailures: 1, OpenTimeout: time.Hour})
	_ = br.Do(context.Background(), func(context.Context) error { return errBench })
	if br.State() != circuitbreaker.StateOpen {
		b.Fatal("breaker did not open")
	}
	return br
}

func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	b.Run("serial", func(b *testing.B) {
		br := openBreaker(b)
		for b.Loop() {
			_ = br.Do(ctx, ok)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		br := openBreaker(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = br.Do(ctx, ok)
			}
		})
	})
	b.Run("allow/serial", func(b *testing.B) {
		br := openBreaker(b)
		for b.Loop() {
			_, _ = br.Allow()
		}
	})
}

// BenchmarkHooks shows that a hook and a logger cost nothing while the
// state does not change.
func BenchmarkHooks(b *testing.B) {
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	br := newBench(b, circuitbreaker.Config{OnStateChange: func(circuitbreaker.Transition) {}})
	for b.Loop() {
		_ = br.Do(ctx, ok)
	}
}

// BenchmarkGroup measures a call through a Group: a lock-free lookup of an
// existing key, then the breaker.
func BenchmarkGroup(b *testing.B) {
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	g, err := circuitbreaker.NewGroup(circuitbreaker.GroupConfig{})
	if err != nil {
		b.Fatal(err)
	}
	hosts := []string{"db-1:5432", "db-2:5432", "cache:6379", "api.internal:443"}
	for _, h := range hosts {
		g.Get(h)
	}
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			_ = g.Do(ctx, hosts[i&3], ok)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				_ = g.Do(ctx, hosts[i&3], ok)
				i++
			}
		})
	})
}
