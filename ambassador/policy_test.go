package ambassador_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/circuitbreaker"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBreakerOpensFailsFastAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		var down atomic.Bool
		down.Store(true)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.add(r)
			if down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		rec := &recorder{}
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{h},
			Retry:     ambassador.RetryConfig{MaxAttempts: 1},
			Budget:    ambassador.BudgetConfig{Disable: true},
			Breaker: ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{
				ConsecutiveFailures: 3, OpenTimeout: 5 * time.Second,
			}}},
			Metrics: rec,
		})
		for range 3 {
			resp, err := get(t, tr, "http://upstream:80/")
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, 503, resp.StatusCode)
		}
		assert.Equal(t, circuitbreaker.StateOpen, tr.Breakers().Get("upstream:80").State())

		// Open: fail fast, without reaching the upstream.
		_, err := get(t, tr, "http://upstream:80/")
		require.ErrorIs(t, err, circuitbreaker.ErrOpen)
		var rej *circuitbreaker.RejectedError
		require.ErrorAs(t, err, &rej)
		assert.Equal(t, time.Now().Add(5*time.Second), rej.RetryAt)
		assert.Equal(t, 3, a.count())

		// Another host has its own breaker.
		resp, err := get(t, tr, "http://other:80/")
		require.NoError(t, err)
		readAll(t, resp)

		// Recovery: after the open period one probe goes through and
		// closes the breaker.
		down.Store(false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		resp, err = get(t, tr, "http://upstream:80/")
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, resp))
		assert.Equal(t, circuitbreaker.StateClosed, tr.Breakers().Get("upstream:80").State())
		assert.Equal(t, []string{"open", "half-open", "closed"}, rec.transitions())
		for _, e := range rec.breakers {
			assert.Equal(t, "upstream:80", e.Host)
		}
		var rejected int
		for _, e := range rec.attempts {
			if e.Outcome == ambassador.OutcomeBreakerOpen {
				rejected++
			}
		}
		assert.Equal(t, 1, rejected)
	})
}

func TestBreakerStopsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{failing(&a, 1<<30, 503)},
			Retry:     ambassador.RetryConfig{MaxAttempts: 10, BaseDelay: time.Millisecond},
			Budget:    ambassador.BudgetConfig{Disable: true},
			Breaker: ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{
				ConsecutiveFailures: 4,
			}}},
		})
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, 503, resp.StatusCode, "the response that tripped the breaker is returned")
		assert.Equal(t, 4, a.count(), "retries stop once the breaker opens")
	})
}

func TestBreakerFailureStatuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{failing(&a, 1<<30, 404)},
			Retry:     ambassador.RetryConfig{MaxAttempts: 1},
			Breaker:   ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{ConsecutiveFailures: 2}}},
		})
		for range 5 {
			resp, err := get(t, tr, "http://upstream/")
			require.NoError(t, err)
			readAll(t, resp)
		}
		assert.Equal(t, circuitbreaker.StateClosed, tr.Breakers().Get("upstream").State(), "a 404 is the request's fault, not the host's")

		tr = newTransport(t, ambassador.Config{
			Transport: handlerTransport{failing(&a, 1<<30, 404)},
			Retry:     ambassador.RetryConfig{MaxAttempts: 1},
			Breaker: ambassador.BreakerConfig{FailureStatuses: []int{404},
				Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{ConsecutiveFailures: 2}}},
		})
		for range 2 {
			resp, err := get(t, tr, "http://upstream/")
			require.NoError(t, err)
			readAll(t, resp)
		}
		assert.Equal(t, circuitbreaker.StateOpen, tr.Breakers().Get("upstream").State())
	})
}

func TestBulkheadLimitsConcurrencyPerHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var inFlight, peak atomic.Int32
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Host == "upstream" {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
			}
			if r.URL.Path == "/block" {
				<-release
			}
			_, _ = w.Write([]byte("body"))
		})
		tr := newTransport(t, quiet(ambassador.Config{
			Transport: handlerTransport{h},
			Bulkhead:  ambassador.BulkheadConfig{MaxConcurrent: 2, MaxWait: 100 * time.Millisecond},
		}))
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				resp, err := get(t, tr, "http://upstream/block")
				if assert.NoError(t, err) {
					readAll(t, resp)
				}
			})
		}
		synctest.Wait()
		start := time.Now()
		_, err := get(t, tr, "http://upstream/block")
		require.ErrorIs(t, err, ambassador.ErrBulkheadFull)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "the request waited MaxWait for a slot")

		// Other hosts are not affected.
		resp, err := get(t, tr, "http://other/")
		require.NoError(t, err)
		readAll(t, resp)

		close(release)
		wg.Wait()
		assert.Equal(t, int32(2), peak.Load())

		// A slot is held until the response body is closed.
		r1, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		r2, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		_, err = get(t, tr, "http://upstream/")
		require.ErrorIs(t, err, ambassador.ErrBulkheadFull)
		readAll(t, r1)
		r3, err := get(t, tr, "http://upstream/")
		require.NoError(t, err, "closing a body frees its slot")
		_, _ = io.ReadAll(r2.Body) // read to the end but never closed
		r4, err := get(t, tr, "http://upstream/")
		require.NoError(t, err, "reading a body to the end frees its slot")
		readAll(t, r3)
		readAll(t, r4)
		r2.Body.Close()
	})
}

func TestBulkheadWaiterGetsTheFreedSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("x")) })
		tr := newTransport(t, quiet(ambassador.Config{
			Transport: handlerTransport{h},
			Bulkhead:  ambassador.BulkheadConfig{MaxConcurrent: 1, MaxWait: time.Second},
		}))
		held, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		time.AfterFunc(300*time.Millisecond, func() { held.Body.Close() })
		start := time.Now()
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		assert.Equal(t, 300*time.Millisecond, time.Since(start))
		readAll(t, resp)
	})
}

func TestHedgeSendsACopyAfterTheDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		var primaryCanceled atomic.Bool
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if a.add(r) == 1 {
				select {
				case <-time.After(time.Hour):
				case <-r.Context().Done():
					primaryCanceled.Store(true)
					return
				}
			}
			_, _ = w.Write([]byte("hedge"))
		})
		rec := &recorder{}
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{h},
			Hedge:     ambassador.HedgeConfig{Delay: 200 * time.Millisecond},
			Metrics:   rec,
		})
		start := time.Now()
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		assert.Equal(t, 200*time.Millisecond, time.Since(start))
		assert.Equal(t, "hedge", readAll(t, resp))
		synctest.Wait()
		assert.True(t, primaryCanceled.Load(), "the slower copy is cancelled")
		assert.Equal(t, 2, a.count())
		require.Len(t, rec.requests, 1)
		assert.Equal(t, 1, rec.requests[0].Hedges)
		assert.Len(t, rec.attempts, 2)
	})
}

func TestHedgeUpToMaxHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := a.add(r)
			select {
			case <-time.After(time.Duration(10-2*n) * time.Second):
				_, _ = w.Write([]byte{byte('0' + n)})
			case <-r.Context().Done():
			}
		})
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{h},
			Hedge:     ambassador.HedgeConfig{Delay: time.Second, MaxHedges: 3},
		})
		start := time.Now()
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		// Copies leave at 0s, 1s, 2s, 3s and take 8s, 6s, 4s, 2s: the
		// fourth answers first, at 5s.
		assert.Equal(t, 5*time.Second, time.Since(start))
		assert.Equal(t, "4", readAll(t, resp))
		assert.Equal(t, 4, a.count())
	})
}

func TestHedgeFastResponseSendsNoCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{failing(&a, 0, 0)},
			Hedge:     ambassador.HedgeConfig{Delay: 100 * time.Millisecond},
		})
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		readAll(t, resp)
		time.Sleep(time.Second)
		assert.Equal(t, 1, a.count())
	})
}

func TestHedgeIsNotUsedForNonIdempotentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.add(r)
			time.Sleep(time.Second)
		})
		tr := newTransport(t, ambassador.Config{Transport: handlerTransport{h}, Hedge: ambassador.HedgeConfig{Delay: 100 * time.Millisecond}})
		req, _ := http.NewRequest(http.MethodPost, "http://upstream/", strings.NewReader("x"))
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, 1, a.count())
	})
}

func TestHedgeFailuresFallBackToRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := a.add(r)
			if n <= 2 {
				time.Sleep(300 * time.Millisecond)
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		tr := newTransport(t, quiet(ambassador.Config{
			Transport: handlerTransport{h},
			Hedge:     ambassador.HedgeConfig{Delay: 100 * time.Millisecond},
			Retry:     ambassador.RetryConfig{BaseDelay: time.Millisecond},
		}))
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, resp))
	})
}

func TestHedgesSpendTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.add(r)
			time.Sleep(time.Second)
		})
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{h},
			Hedge:     ambassador.HedgeConfig{Delay: 100 * time.Millisecond},
			Budget:    ambassador.BudgetConfig{Ratio: 0.1, MinPerSecond: 0.001, Window: 100 * time.Second},
		})
		for range 50 {
			resp, err := get(t, tr, "http://upstream/")
			require.NoError(t, err)
			readAll(t, resp)
		}
		time.Sleep(2 * time.Second) // let the cancelled copies' handlers end
		// 10% of 50 plus 0.001/s over 100s: 5 hedges, not 50.
		hedges := a.count() - 50
		assert.LessOrEqual(t, hedges, 5)
		assert.GreaterOrEqual(t, hedges, 4)
	})
}

func TestContextCancelIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{h},
			Breaker:   ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{ConsecutiveFailures: 1}}},
		})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream/", nil)
		_, err := tr.RoundTrip(req)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, circuitbreaker.StateClosed, tr.Breakers().Get("upstream").State(), "a caller giving up says nothing about the host")
	})
}

func TestRoundTripDoesNotModifyTheRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		tr := newTransport(t, ambassador.Config{Transport: handlerTransport{failing(&a, 1, 503)}, Retry: ambassador.RetryConfig{BaseDelay: time.Millisecond}})
		req, _ := http.NewRequest(http.MethodPut, "http://upstream/", strings.NewReader("body"))
		req.Header.Set("A", "1")
		before := req.Header.Clone()
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, before, req.Header)
		assert.Equal(t, 2, a.count())
	})
}

func TestErrorsAreClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTransport(t, quiet(ambassador.Config{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, errors.New("boom")
		}), Retry: ambassador.RetryConfig{MaxAttempts: 1}}))
		_, err := get(t, tr, "http://upstream/")
		require.EqualError(t, err, "boom", "transport errors come back unchanged")
	})
}

func TestNoGoroutinePerRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var before, during int
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			during = runtime.NumGoroutine()
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
		})
		pm, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
		require.NoError(t, err)
		tr := newTransport(t, ambassador.Config{Transport: base, Metrics: pm, Bulkhead: ambassador.BulkheadConfig{MaxConcurrent: 1}})
		for range 3 {
			before = runtime.NumGoroutine()
			resp, err := get(t, tr, "http://upstream/")
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, before, during, "the attempt runs on the caller's goroutine")
		}
	})
}

func TestHedgingWithLogsAndMetricsUnderRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := a.add(r)
			select {
			case <-time.After(time.Duration(n%3) * 100 * time.Millisecond):
				if n%4 == 0 {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			case <-r.Context().Done():
			}
		})
		pm, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
		require.NoError(t, err)
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{h},
			Hedge:     ambassador.HedgeConfig{Delay: 50 * time.Millisecond, MaxHedges: 2},
			Retry:     ambassador.RetryConfig{BaseDelay: time.Millisecond},
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			Metrics:   pm,
			Budget:    ambassador.BudgetConfig{Disable: true},
		})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 10 {
					resp, err := get(t, tr, "http://upstream/")
					if assert.NoError(t, err) {
						readAll(t, resp)
					}
				}
			})
		}
		wg.Wait()
		time.Sleep(time.Second)
	})
}
