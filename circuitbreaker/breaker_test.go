package circuitbreaker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/circuitbreaker"
)

var errBoom = errors.New("boom")

func succeed(context.Context) error { return nil }
func fail(context.Context) error    { return errBoom }

func newBreaker(t *testing.T, cfg circuitbreaker.Config) *circuitbreaker.Breaker {
	t.Helper()
	b, err := circuitbreaker.New(cfg)
	require.NoError(t, err)
	return b
}

// calls makes n calls that return err and returns the errors Do returned.
func calls(b *circuitbreaker.Breaker, n int, err error) []error {
	var out []error
	for range n {
		out = append(out, b.Do(context.Background(), func(context.Context) error { return err }))
	}
	return out
}

func TestConsecutiveFailuresThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 3})
		calls(b, 2, errBoom)
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "2 of 3 failures")
		calls(b, 1, nil) // a success breaks the run
		calls(b, 2, errBoom)
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "run restarted after a success")
		assert.EqualValues(t, 2, b.Snapshot().ConsecutiveFailures)
		calls(b, 1, errBoom)
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "third failure in a row")
		assert.EqualValues(t, 1, b.Snapshot().Trips)
	})
}

func TestZeroConfigDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{})
		calls(b, 4, errBoom)
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		calls(b, 1, errBoom)
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "default: 5 consecutive failures")
		time.Sleep(30*time.Second - time.Nanosecond)
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "default open timeout is 30s")
		time.Sleep(time.Nanosecond)
		require.Equal(t, circuitbreaker.StateHalfOpen, b.State())
		require.NoError(t, b.Do(context.Background(), succeed))
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "one probe closes by default")
	})
}

func TestFailureRateCountWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{FailureRate: 0.5, WindowCalls: 10, MinCalls: 6})
		// 5 failures in 5 calls: 100%, but under MinCalls.
		calls(b, 5, errBoom)
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "below MinCalls")
		// A success reaches MinCalls; a success never trips.
		calls(b, 1, nil)
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "successes never trip")
		b.Reset()
		// 4 failures, 6 successes: 40% over a full window.
		calls(b, 6, nil)
		calls(b, 4, errBoom)
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "40% < 50%")
		s := b.Snapshot()
		assert.EqualValues(t, 10, s.Calls)
		assert.EqualValues(t, 4, s.Failures)
		assert.InDelta(t, 0.4, s.FailureRate, 1e-9)
		// The next failure pushes out the oldest success: 5 of 10.
		calls(b, 1, errBoom)
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "50% reaches the threshold exactly")
	})
}

func TestFailureRateCountWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{FailureRate: 0.5, WindowCalls: 4, MinCalls: 4})
		calls(b, 1, errBoom)
		calls(b, 4, nil) // the failure slides out
		s := b.Snapshot()
		assert.EqualValues(t, 4, s.Calls)
		assert.EqualValues(t, 0, s.Failures)
		calls(b, 1, errBoom) // 1 of 4
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		calls(b, 1, errBoom) // 2 of 4
		require.Equal(t, circuitbreaker.StateOpen, b.State())
	})
}

func TestFailureRateTimeWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{
			FailureRate: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinCalls: 4,
		})
		calls(b, 3, errBoom)
		time.Sleep(10 * time.Second) // the failures age out of the window
		synctest.Wait()
		s := b.Snapshot()
		assert.EqualValues(t, 0, s.Calls, "failures older than the window are gone")
		calls(b, 3, nil)
		calls(b, 2, errBoom)
		require.Equal(t, circuitbreaker.StateClosed, b.State(), "2 of 5 in the window")
		time.Sleep(5 * time.Second)
		calls(b, 1, errBoom)
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "3 of 6 in the window")
	})
}

func TestSlowCallRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{
			SlowCallRate: 0.5, SlowCallDuration: time.Second, WindowCalls: 4, MinCalls: 4,
		})
		slow := func(d time.Duration) error {
			return b.Do(context.Background(), func(context.Context) error {
				time.Sleep(d)
				return nil
			})
		}
		require.NoError(t, slow(900*time.Millisecond))
		require.NoError(t, slow(100*time.Millisecond))
		require.NoError(t, slow(2*time.Second))
		s := b.Snapshot()
		assert.EqualValues(t, 1, s.Slow, "one call took at least SlowCallDuration")
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		require.NoError(t, slow(1100*time.Millisecond))
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "2 slow of 4")
		s = b.Snapshot()
		assert.EqualValues(t, 1, s.Trips)
	})
}

func TestSlowCallsTwoStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{
			SlowCallRate: 1, SlowCallDuration: time.Second, WindowCalls: 2, MinCalls: 2,
		})
		for range 2 {
			done, err := b.Allow()
			require.NoError(t, err)
			time.Sleep(time.Second)
			synctest.Wait() // let the coarse clock's tick at this instant run
			done(nil)
		}
		require.Equal(t, circuitbreaker.StateOpen, b.State())
	})
}

func TestOpenTimeoutAndBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 1, OpenTimeout: time.Second, MaxOpenTimeout: 5 * time.Second,
		})
		calls(b, 1, errBoom)
		for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
			s := b.Snapshot()
			require.Equal(t, circuitbreaker.StateOpen, s.State)
			require.Equal(t, want, s.RetryAt.Sub(s.Since), "open period")
			time.Sleep(want - time.Nanosecond)
			require.Equal(t, circuitbreaker.StateOpen, b.State())
			err := b.Do(context.Background(), succeed)
			require.ErrorIs(t, err, circuitbreaker.ErrOpen, "rejected until the very end")
			time.Sleep(time.Nanosecond)
			calls(b, 1, errBoom) // the probe fails: reopen with a longer period
		}
		time.Sleep(5 * time.Second)
		require.NoError(t, b.Do(context.Background(), succeed))
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		calls(b, 1, errBoom)
		s := b.Snapshot()
		require.Equal(t, time.Second, s.RetryAt.Sub(s.Since), "closing resets the backoff")
	})
}

func TestStateReportsHalfOpenWithoutTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen []circuitbreaker.Transition
		b := newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 1, OpenTimeout: time.Minute,
			OnStateChange: func(tr circuitbreaker.Transition) { seen = append(seen, tr) },
		})
		calls(b, 1, errBoom)
		time.Sleep(time.Minute)
		require.Equal(t, circuitbreaker.StateHalfOpen, b.State())
		require.Len(t, seen, 2)
		assert.Equal(t, circuitbreaker.StateHalfOpen, seen[1].To)
		assert.Equal(t, time.Now(), seen[1].At)
		assert.Empty(t, seen[1].Key, "not in a group")
	})
}

func TestHalfOpenAdmitsExactlyTheProbes(t *testing.T) {
	for _, probes := range []int{1, 3} {
		t.Run(strings.Repeat("p", probes), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(t, circuitbreaker.Config{
					ConsecutiveFailures: 1, OpenTimeout: time.Second, HalfOpenProbes: probes,
				})
				calls(b, 1, errBoom)
				time.Sleep(time.Second)

				release := make(chan struct{})
				var admitted, tooMany, other atomic.Int32
				var wg sync.WaitGroup
				for range 100 {
					wg.Go(func() {
						err := b.Do(context.Background(), func(context.Context) error {
							admitted.Add(1)
							<-release
							return nil
						})
						switch {
						case err == nil:
						case errors.Is(err, circuitbreaker.ErrTooManyProbes):
							tooMany.Add(1)
						default:
							other.Add(1)
						}
					})
				}
				synctest.Wait() // every caller is admitted and blocked, or rejected
				require.EqualValues(t, probes, admitted.Load())
				require.EqualValues(t, 100-probes, tooMany.Load())
				require.Equal(t, probes, b.Snapshot().Probes)
				close(release)
				wg.Wait()
				require.Zero(t, other.Load())
				require.Equal(t, circuitbreaker.StateClosed, b.State(), "all probes succeeded")
			})
		})
	}
}

func TestHalfOpenSuccessThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 1, OpenTimeout: time.Second, SuccessThreshold: 3,
		})
		calls(b, 1, errBoom)
		time.Sleep(time.Second)
		calls(b, 2, nil)
		require.Equal(t, circuitbreaker.StateHalfOpen, b.State(), "2 of 3 successes")
		calls(b, 1, nil)
		require.Equal(t, circuitbreaker.StateClosed, b.State())
	})
}

func TestProbePermitReleasedOnEveryExit(t *testing.T) {
	open := func(t *testing.T) *circuitbreaker.Breaker {
		b := newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 1, OpenTimeout: time.Second, ProbeTimeout: 10 * time.Second,
		})
		calls(b, 1, errBoom)
		time.Sleep(time.Second)
		require.Equal(t, circuitbreaker.StateHalfOpen, b.State())
		return b
	}
	t.Run("error reopens", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := open(t)
			calls(b, 1, errBoom)
			require.Equal(t, circuitbreaker.StateOpen, b.State())
		})
	})
	t.Run("panic reopens and propagates", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := open(t)
			require.PanicsWithValue(t, "kaboom", func() {
				_ = b.Do(context.Background(), func(context.Context) error { panic("kaboom") })
			})
			require.Equal(t, circuitbreaker.StateOpen, b.State())
		})
	})
	t.Run("cancelled call frees the permit without a verdict", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := open(t)
			ctx, cancel := context.WithCancel(context.Background())
			err := b.Do(ctx, func(ctx context.Context) error {
				cancel()
				return ctx.Err()
			})
			require.ErrorIs(t, err, context.Canceled)
			require.Equal(t, circuitbreaker.StateHalfOpen, b.State())
			require.Zero(t, b.Snapshot().Probes, "permit released")
			require.NoError(t, b.Do(context.Background(), succeed), "the next caller gets the permit")
			require.Equal(t, circuitbreaker.StateClosed, b.State())
		})
	})
	t.Run("dead context takes no permit", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := open(t)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			require.ErrorIs(t, b.Do(ctx, succeed), context.Canceled)
			_, err := circuitbreaker.Call(ctx, b, func(context.Context) (int, error) { return 1, nil })
			require.ErrorIs(t, err, context.Canceled)
			require.Zero(t, b.Snapshot().Probes)
			require.NoError(t, b.Do(context.Background(), succeed))
			require.Equal(t, circuitbreaker.StateClosed, b.State())
		})
	})
	t.Run("done never called times out", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var reasons []string
			b := newBreaker(t, circuitbreaker.Config{
				ConsecutiveFailures: 1, OpenTimeout: time.Second, ProbeTimeout: 10 * time.Second,
				OnStateChange: func(tr circuitbreaker.Transition) { reasons = append(reasons, tr.Reason) },
			})
			calls(b, 1, errBoom)
			time.Sleep(time.Second)
			done, err := b.Allow()
			require.NoError(t, err)
			_, err = b.Allow()
			require.ErrorIs(t, err, circuitbreaker.ErrTooManyProbes)
			var rej *circuitbreaker.RejectedError
			require.ErrorAs(t, err, &rej)
			require.Equal(t, time.Now().Add(10*time.Second), rej.RetryAt, "when the held permit expires")
			time.Sleep(10*time.Second - time.Nanosecond)
			require.Equal(t, circuitbreaker.StateHalfOpen, b.State())
			time.Sleep(time.Nanosecond)
			require.Equal(t, circuitbreaker.StateOpen, b.State(), "the abandoned probe counts as failed")
			require.Equal(t, "probe timed out", reasons[len(reasons)-1])
			done(nil) // late: ignored
			require.Equal(t, circuitbreaker.StateOpen, b.State())
			time.Sleep(time.Second)
			require.NoError(t, b.Do(context.Background(), succeed))
			require.Equal(t, circuitbreaker.StateClosed, b.State(), "not stuck half-open")
		})
	})
	t.Run("done called twice counts once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, circuitbreaker.Config{
				ConsecutiveFailures: 1, OpenTimeout: time.Second, SuccessThreshold: 2,
			})
			calls(b, 1, errBoom)
			time.Sleep(time.Second)
			done, err := b.Allow()
			require.NoError(t, err)
			done(nil)
			done(nil)
			require.Equal(t, circuitbreaker.StateHalfOpen, b.State(), "one success of two")
		})
	})
}

func TestCancellationIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 2})
		calls(b, 10, context.Canceled)
		calls(b, 10, errors.Join(errBoom, context.Canceled))
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		assert.Zero(t, b.Snapshot().Calls, "ignored outcomes are not counted")

		// A context that is already done: fn is not called, nothing counts.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		time.Sleep(time.Second)
		synctest.Wait() // let the context's timer fire
		for range 5 {
			err := b.Do(ctx, func(context.Context) error {
				t.Fatal("called with a dead context")
				return nil
			})
			require.ErrorIs(t, err, context.DeadlineExceeded)
		}
		require.Equal(t, circuitbreaker.StateClosed, b.State())

		// A deadline that expires during the call is the dependency's fault.
		calls(b, 2, context.DeadlineExceeded)
		require.Equal(t, circuitbreaker.StateOpen, b.State())
	})
}

func TestCustomIsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errNotFound := errors.New("not found")
		b := newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 2,
			IsFailure:           func(err error) bool { return !errors.Is(err, errNotFound) },
		})
		calls(b, 5, errNotFound)
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		calls(b, 2, errBoom)
		require.Equal(t, circuitbreaker.StateOpen, b.State())
	})
}

func TestPanicCountsAsFailureAndPropagates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, cfg := range []circuitbreaker.Config{
			{ConsecutiveFailures: 2},
			{SlowCallRate: 1, ConsecutiveFailures: 2}, // the timed path
		} {
			b := newBreaker(t, cfg)
			for range 2 {
				require.PanicsWithValue(t, "kaboom", func() {
					_ = b.Do(context.Background(), func(context.Context) error { panic("kaboom") })
				})
			}
			require.Equal(t, circuitbreaker.StateOpen, b.State())
			b = newBreaker(t, cfg)
			for range 2 {
				require.Panics(t, func() {
					_, _ = circuitbreaker.Call(context.Background(), b, func(context.Context) (int, error) { panic("kaboom") })
				})
			}
			require.Equal(t, circuitbreaker.StateOpen, b.State())
		}
	})
}

func TestRejectedError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{Name: "payments", ConsecutiveFailures: 1, OpenTimeout: time.Minute})
		calls(b, 1, errBoom)
		err := b.Do(context.Background(), succeed)
		require.ErrorIs(t, err, circuitbreaker.ErrOpen)
		require.NotErrorIs(t, err, circuitbreaker.ErrTooManyProbes)
		var rej *circuitbreaker.RejectedError
		require.ErrorAs(t, err, &rej)
		assert.Equal(t, "payments", rej.Name)
		assert.Equal(t, circuitbreaker.StateOpen, rej.State)
		assert.Equal(t, time.Now().Add(time.Minute), rej.RetryAt)
		assert.Contains(t, err.Error(), `breaker "payments"`)
		assert.EqualValues(t, 1, b.Snapshot().Rejected)

		done, err := b.Allow()
		require.Nil(t, done)
		require.ErrorIs(t, err, circuitbreaker.ErrOpen)
		v, err := circuitbreaker.Call(context.Background(), b, func(context.Context) (int, error) { return 1, nil })
		require.ErrorIs(t, err, circuitbreaker.ErrOpen)
		require.Zero(t, v)
		assert.EqualValues(t, 3, b.Snapshot().Rejected)
	})
}

func TestForceAndReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 1, OpenTimeout: time.Second})
		b.ForceOpen()
		require.Equal(t, circuitbreaker.StateForcedOpen, b.State())
		time.Sleep(time.Hour)
		err := b.Do(context.Background(), succeed)
		require.ErrorIs(t, err, circuitbreaker.ErrOpen, "forced open ignores the open timeout")
		var rej *circuitbreaker.RejectedError
		require.ErrorAs(t, err, &rej)
		assert.True(t, rej.RetryAt.IsZero())

		b.ForceClosed()
		calls(b, 10, errBoom)
		s := b.Snapshot()
		require.Equal(t, circuitbreaker.StateForcedClosed, s.State, "forced closed never trips")
		assert.EqualValues(t, 10, s.Failures, "but still counts")

		b.Reset()
		s = b.Snapshot()
		require.Equal(t, circuitbreaker.StateClosed, s.State)
		assert.Zero(t, s.Calls, "reset clears the counts")
		calls(b, 1, errBoom)
		require.Equal(t, circuitbreaker.StateOpen, b.State(), "policies apply again")
	})
}

func TestLateOutcomeReportsToItsOwnEpisode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 1, OpenTimeout: time.Second})
		done, err := b.Allow() // admitted while closed
		require.NoError(t, err)
		calls(b, 1, errBoom)
		time.Sleep(time.Second)
		require.NoError(t, b.Do(context.Background(), succeed))
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		done(errBoom) // reports to the closed period that ended
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		assert.Zero(t, b.Snapshot().Failures)
	})
}

func TestHookMayCallBackIntoTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *circuitbreaker.Breaker
		var got []string
		b = newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 1, OpenTimeout: time.Second,
			OnStateChange: func(tr circuitbreaker.Transition) {
				s := b.Snapshot() // reads state inside the hook
				got = append(got, tr.From.String()+">"+tr.To.String()+"("+s.State.String()+")")
				if tr.To == circuitbreaker.StateOpen && len(got) == 1 {
					b.Reset() // changes state inside the hook
				}
			},
		})
		calls(b, 1, errBoom)
		require.Equal(t, circuitbreaker.StateClosed, b.State())
		assert.Equal(t, []string{"closed>open(open)", "open>closed(closed)"}, got,
			"the nested change is delivered after the hook returns, in order")
	})
}

func TestHooksAreDeliveredInOrderUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []circuitbreaker.Transition
		b := newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 1, OpenTimeout: time.Millisecond * 10, HalfOpenProbes: 4,
			OnStateChange: func(tr circuitbreaker.Transition) {
				mu.Lock()
				got = append(got, tr)
				mu.Unlock()
			},
		})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					err := errBoom
					if (i+g)%3 == 0 {
						err = nil
					}
					_ = b.Do(context.Background(), func(context.Context) error { return err })
					if i%7 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		require.NotEmpty(t, got)
		for i := 1; i < len(got); i++ {
			require.Equal(t, got[i-1].To, got[i].From, "transition %d follows %d", i, i-1)
			require.False(t, got[i].At.Before(got[i-1].At))
		}
		require.Equal(t, got[len(got)-1].To, b.State())
	})
}

func TestHookPanicDoesNotWedgeDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		b := newBreaker(t, circuitbreaker.Config{
			ConsecutiveFailures: 1,
			OnStateChange: func(circuitbreaker.Transition) {
				n++
				if n == 1 {
					panic("hook")
				}
			},
		})
		require.Panics(t, func() { calls(b, 1, errBoom) })
		require.Equal(t, circuitbreaker.StateOpen, b.State())
		b.Reset()
		require.Equal(t, 2, n, "later transitions are still delivered")
	})
}

func TestLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		b := newBreaker(t, circuitbreaker.Config{
			Name: "db", ConsecutiveFailures: 1,
			Logger: slog.New(slog.NewTextHandler(&buf, nil)),
		})
		calls(b, 1, errBoom)
		out := buf.String()
		assert.Contains(t, out, "circuit breaker state changed")
		assert.Contains(t, out, "breaker=db from=closed to=open")
		assert.Contains(t, out, `reason="consecutive failures" error=boom`)
	})
}

func TestCallAndFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, circuitbreaker.Config{ConsecutiveFailures: 1})
		v, err := circuitbreaker.Call(context.Background(), b, func(context.Context) (string, error) { return "fresh", nil })
		require.NoError(t, err)
		require.Equal(t, "fresh", v)

		fallback := func(_ context.Context, err error) (string, error) {
			if errors.Is(err, circuitbreaker.ErrOpen) {
				return "cached", nil
			}
			return "", err
		}
		_, err = circuitbreaker.Fallback(context.Background(), b, func(context.Context) (string, error) { return "", errBoom }, fallback)
		require.ErrorIs(t, err, errBoom, "the fallback sees the failure")
		v, err = circuitbreaker.Fallback(context.Background(), b, func(context.Context) (string, error) { return "fresh", nil }, fallback)
		require.NoError(t, err)
		require.Equal(t, "cached", v, "the fallback answers while open")
	})
}

func TestConcurrentUseIsConsistent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, p := range []circuitbreaker.Config{
			{ConsecutiveFailures: 1 << 30},
			{FailureRate: 1, WindowCalls: 1 << 20, MinCalls: 1 << 20},
			{FailureRate: 1, WindowDuration: time.Hour, MinCalls: 1 << 30},
		} {
			b := newBreaker(t, p)
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 1000 {
						var err error
						if (i+g)%4 == 0 {
							err = errBoom
						}
						_ = b.Do(context.Background(), func(context.Context) error { return err })
					}
				})
			}
			wg.Wait()
			s := b.Snapshot()
			require.EqualValues(t, 4000, s.Calls, "%+v", p)
			require.EqualValues(t, 1000, s.Failures, "%+v", p)
		}
	})
}

func TestName(t *testing.T) {
	b := newBreaker(t, circuitbreaker.Config{Name: "x"})
	require.Equal(t, "x", b.Name())
	require.Equal(t, "x", b.Snapshot().Name)
	for s, want := range map[circuitbreaker.State]string{
		circuitbreaker.StateClosed: "closed", circuitbreaker.StateOpen: "open",
		circuitbreaker.StateHalfOpen: "half-open", circuitbreaker.StateForcedOpen: "forced-open",
		circuitbreaker.StateForcedClosed: "forced-closed", circuitbreaker.State(99): "unknown",
	} {
		require.Equal(t, want, s.String())
	}
}
