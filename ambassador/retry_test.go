package ambassador_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failing returns a handler that answers status to the first n requests
// and 200 after, recording arrivals.
func failing(a *arrivals, n, status int, header ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.add(r) <= n {
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(status)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
}

func TestRetrySpacingIsFullJitterExponential(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const base, maxDelay = 100 * time.Millisecond, 400 * time.Millisecond
		var sum [4]time.Duration
		var distinct [4]map[time.Duration]bool
		const requests = 300
		for i := range distinct {
			distinct[i] = map[time.Duration]bool{}
		}
		for range requests {
			var a arrivals
			tr := newTransport(t, quiet(ambassador.Config{
				Transport: handlerTransport{failing(&a, 4, http.StatusServiceUnavailable)},
				Retry:     ambassador.RetryConfig{MaxAttempts: 5, BaseDelay: base, MaxDelay: maxDelay},
			}))
			resp, err := get(t, tr, "http://upstream/")
			require.NoError(t, err)
			require.Equal(t, "ok", readAll(t, resp))
			require.Equal(t, 5, a.count())
			for i, g := range a.gaps() {
				ceil := min(base<<i, maxDelay)
				require.Less(t, g, ceil, "gap before retry %d", i+1)
				sum[i] += g
				distinct[i][g] = true
			}
		}
		// Full jitter: uniform over [0, ceil), so the mean is ceil/2 and
		// the delays differ from request to request.
		for i := range sum {
			ceil := min(base<<i, maxDelay)
			mean := sum[i] / requests
			assert.InDelta(t, float64(ceil/2), float64(mean), float64(ceil)/8, "mean delay before retry %d", i+1)
			assert.Greater(t, len(distinct[i]), requests/2, "delays before retry %d should vary", i+1)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	date := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name     string
		value    func() string
		wantGap  time.Duration
		attempts int
	}{
		{"seconds", func() string { return "2" }, 2 * time.Second, 2},
		{"http date", func() string { return date(3 * time.Second) }, 3 * time.Second, 2},
		{"date in the past retries at once", func() string { return date(-time.Hour) }, 0, 2},
		{"above the cap is returned, not retried", func() string { return "60" }, 0, 1},
		{"malformed falls back to backoff", func() string { return "soon" }, -1, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var a arrivals
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if a.add(r) == 1 {
						w.Header().Set("Retry-After", tc.value())
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					_, _ = w.Write([]byte("ok"))
				})
				tr := newTransport(t, quiet(ambassador.Config{
					Transport: handlerTransport{h},
					Retry:     ambassador.RetryConfig{BaseDelay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond, MaxRetryAfter: 10 * time.Second},
				}))
				resp, err := get(t, tr, "http://upstream/")
				require.NoError(t, err)
				readAll(t, resp)
				require.Equal(t, tc.attempts, a.count())
				if tc.attempts == 1 {
					assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
					assert.Equal(t, "60", resp.Header.Get("Retry-After"), "the caller sees the upstream's Retry-After")
					return
				}
				gap := a.gaps()[0]
				if tc.wantGap < 0 {
					assert.Less(t, gap, 10*time.Millisecond)
				} else {
					assert.Equal(t, tc.wantGap, gap)
				}
			})
		})
	}
}

func TestRetryRules(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		header   string
		status   int
		cfg      ambassador.RetryConfig
		attempts int
	}{
		{"GET 503", http.MethodGet, "", 503, ambassador.RetryConfig{}, 3},
		{"GET 429", http.MethodGet, "", 429, ambassador.RetryConfig{}, 3},
		{"GET 500 is not retried by default", http.MethodGet, "", 500, ambassador.RetryConfig{}, 1},
		{"GET 404", http.MethodGet, "", 404, ambassador.RetryConfig{}, 1},
		{"PUT 502", http.MethodPut, "", 502, ambassador.RetryConfig{}, 3},
		{"DELETE 504", http.MethodDelete, "", 504, ambassador.RetryConfig{}, 3},
		{"POST 503 is not retried", http.MethodPost, "", 503, ambassador.RetryConfig{}, 1},
		{"PATCH 503 is not retried", http.MethodPatch, "", 503, ambassador.RetryConfig{}, 1},
		{"POST with an idempotency key", http.MethodPost, "Idempotency-Key", 503, ambassador.RetryConfig{}, 3},
		{"POST with a configured method list", http.MethodPost, "", 503, ambassador.RetryConfig{Methods: []string{"POST"}}, 3},
		{"custom statuses", http.MethodGet, "", 500, ambassador.RetryConfig{Statuses: []int{500}}, 3},
		{"no statuses", http.MethodGet, "", 503, ambassador.RetryConfig{Statuses: []int{}}, 1},
		{"retries off", http.MethodGet, "", 503, ambassador.RetryConfig{MaxAttempts: 1}, 1},
		{"five attempts", http.MethodGet, "", 503, ambassador.RetryConfig{MaxAttempts: 5}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var a arrivals
				tc.cfg.BaseDelay = time.Millisecond
				tr := newTransport(t, quiet(ambassador.Config{
					Transport: handlerTransport{failing(&a, 100, tc.status)},
					Retry:     tc.cfg,
				}))
				req, _ := http.NewRequest(tc.method, "http://upstream/x", strings.NewReader("payload"))
				if tc.header != "" {
					req.Header.Set(tc.header, "k1")
				}
				resp, err := tr.RoundTrip(req)
				require.NoError(t, err)
				readAll(t, resp)
				assert.Equal(t, tc.status, resp.StatusCode, "the last response is returned as is")
				assert.Equal(t, tc.attempts, a.count())
			})
		})
	}
}

func TestRetryStopsAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		tr := newTransport(t, quiet(ambassador.Config{
			Transport: handlerTransport{failing(&a, 100, 503, "Retry-After", "5")},
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream/", nil)
		start := time.Now()
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, 1, a.count(), "a wait past the deadline is not started")
		assert.Zero(t, time.Since(start), "the response comes back without waiting")
	})
}

func TestRetryBackoffEndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		tr := newTransport(t, quiet(ambassador.Config{
			Transport: handlerTransport{failing(&a, 100, 503, "Retry-After", "5")},
		}))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream/", nil)
		_, err := tr.RoundTrip(req)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, a.count())
	})
}

func TestRetryBudgetCapsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		rec := &recorder{}
		tr := newTransport(t, ambassador.Config{
			Transport: handlerTransport{failing(&a, 1<<30, 503)},
			Retry:     ambassador.RetryConfig{MaxAttempts: 3, BaseDelay: time.Millisecond},
			Budget:    ambassador.BudgetConfig{Ratio: 0.1, MinPerSecond: 0.1, Window: 10 * time.Second},
			Breaker:   ambassador.BreakerConfig{Disable: true},
			Metrics:   rec,
		})
		const requests = 200
		for range requests {
			resp, err := get(t, tr, "http://upstream/")
			require.NoError(t, err)
			readAll(t, resp)
		}
		// Without a budget: 600 attempts. With it: 10% of 200 requests
		// plus 0.1/s over 10s.
		retries := a.count() - requests
		assert.LessOrEqual(t, retries, 21)
		assert.GreaterOrEqual(t, retries, 19, "the budget should be used up, not refused outright")
		denied := 0
		for _, e := range rec.requests {
			if e.RetryDenied {
				denied++
			}
		}
		assert.Greater(t, denied, requests/2)

		// The window slides: after it has passed, retries are allowed
		// again.
		time.Sleep(11 * time.Second)
		before := a.count()
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, 2, a.count()-before, "one retry fits the floor of a fresh window")
	})
}

func TestAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if a.add(r) <= 2 {
				select {
				case <-time.After(time.Hour):
				case <-r.Context().Done():
					return
				}
			}
			_, _ = w.Write([]byte("fast"))
		})
		tr := newTransport(t, quiet(ambassador.Config{
			Transport:      handlerTransport{h},
			AttemptTimeout: time.Second,
			Retry:          ambassador.RetryConfig{BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond},
		}))
		start := time.Now()
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		assert.Equal(t, "fast", readAll(t, resp))
		assert.Equal(t, 3, a.count())
		assert.Equal(t, 2*time.Second, time.Since(start).Round(time.Millisecond), "two attempts cut off at 1s each")

		// When every attempt is slow, the error says so.
		a = arrivals{}
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.add(r)
			<-r.Context().Done()
		})
		tr = newTransport(t, quiet(ambassador.Config{Transport: handlerTransport{slow}, AttemptTimeout: time.Second, Retry: ambassador.RetryConfig{MaxAttempts: 2}}))
		_, err = get(t, tr, "http://upstream/")
		require.ErrorIs(t, err, ambassador.ErrAttemptTimeout)
		assert.Equal(t, 2, a.count())
	})
}

func TestAttemptTimeoutDoesNotCutTheBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("headers in time"))
		})
		tr := newTransport(t, quiet(ambassador.Config{Transport: handlerTransport{h}, AttemptTimeout: time.Second}))
		resp, err := get(t, tr, "http://upstream/")
		require.NoError(t, err)
		time.Sleep(5 * time.Second) // the caller reads the body late
		assert.NoError(t, resp.Request.Context().Err(), "the attempt's context lives until the body is closed")
		assert.Equal(t, "headers in time", readAll(t, resp))
		assert.Error(t, resp.Request.Context().Err(), "closing the body ends the attempt's context")
	})
}

func TestOverallTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.add(r)
			<-r.Context().Done()
		})
		tr := newTransport(t, quiet(ambassador.Config{Transport: handlerTransport{slow}, Timeout: 2 * time.Second, AttemptTimeout: 900 * time.Millisecond,
			Retry: ambassador.RetryConfig{MaxAttempts: 10, BaseDelay: time.Millisecond}}))
		start := time.Now()
		_, err := get(t, tr, "http://upstream/")
		require.ErrorIs(t, err, ambassador.ErrTimeout)
		assert.Equal(t, 2*time.Second, time.Since(start))
		assert.Equal(t, 3, a.count())
	})
}

func TestNonIdempotentRequestIsRetriedOnlyWhenNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, &dialError
		})
		var calls int
		counting := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			return refused(r)
		})
		tr := newTransport(t, quiet(ambassador.Config{Transport: counting, Retry: ambassador.RetryConfig{BaseDelay: time.Millisecond}}))
		req, _ := http.NewRequest(http.MethodPost, "http://upstream/", strings.NewReader("x"))
		_, err := tr.RoundTrip(req)
		require.Error(t, err)
		assert.Equal(t, 3, calls, "a refused connection sent nothing: safe to retry a POST")

		calls = 0
		reset := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			return nil, errors.New("read: connection reset by peer")
		})
		tr = newTransport(t, quiet(ambassador.Config{Transport: reset, Retry: ambassador.RetryConfig{BaseDelay: time.Millisecond}}))
		req, _ = http.NewRequest(http.MethodPost, "http://upstream/", strings.NewReader("x"))
		_, err = tr.RoundTrip(req)
		require.Error(t, err)
		assert.Equal(t, 1, calls, "a POST that may have been sent is not retried")

		calls = 0
		req, _ = http.NewRequest(http.MethodGet, "http://upstream/", nil)
		_, err = tr.RoundTrip(req)
		require.Error(t, err)
		assert.Equal(t, 3, calls, "a GET is retried on a reset")
	})
}

func TestRetriesResendTheWholeBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"GetBody", func() io.Reader { return strings.NewReader("the payload") }},
		{"buffered", func() io.Reader { return opaqueReader{strings.NewReader("the payload")} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var a arrivals
				tr := newTransport(t, quiet(ambassador.Config{
					Transport: handlerTransport{failing(&a, 2, 503)},
					Retry:     ambassador.RetryConfig{BaseDelay: time.Millisecond},
				}))
				req, _ := http.NewRequest(http.MethodPut, "http://upstream/", tc.body())
				resp, err := tr.RoundTrip(req)
				require.NoError(t, err)
				readAll(t, resp)
				require.Equal(t, 3, a.count())
				for i, b := range a.bodies {
					assert.Equal(t, "the payload", string(b), "attempt %d", i+1)
				}
			})
		})
	}
}
