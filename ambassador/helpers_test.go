package ambassador_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/stretchr/testify/require"
)

// handlerTransport is an in-memory RoundTripper that serves requests with
// an http.Handler on its own goroutine, honouring the request's context
// like a real transport. It has no sockets, so it runs inside synctest
// bubbles, where time is fake.
type handlerTransport struct {
	h http.Handler
}

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	in := r.Clone(r.Context())
	in.Body = io.NopCloser(bytes.NewReader(body))
	in.RequestURI = r.URL.RequestURI()
	in.RemoteAddr = "192.0.2.1:1234"
	done := make(chan *http.Response, 1)
	go func() {
		rec := httptest.NewRecorder()
		ht.h.ServeHTTP(rec, in)
		resp := rec.Result()
		resp.Request = r
		done <- resp
	}()
	select {
	case resp := <-done:
		return resp, nil
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

// arrivals records when each request reached a handler, on the bubble's
// clock.
type arrivals struct {
	mu     sync.Mutex
	times  []time.Time
	reqs   []*http.Request
	bodies [][]byte
}

func (a *arrivals) add(r *http.Request) int {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.times = append(a.times, time.Now())
	a.reqs = append(a.reqs, r)
	a.bodies = append(a.bodies, b)
	return len(a.times)
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.times)
}

func (a *arrivals) gaps() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var g []time.Duration
	for i := 1; i < len(a.times); i++ {
		g = append(g, a.times[i].Sub(a.times[i-1]))
	}
	return g
}

// quiet turns off the policies a test does not look at, so each test sees
// only the one it names.
func quiet(cfg ambassador.Config) ambassador.Config {
	cfg.Budget.Disable = true
	cfg.Breaker.Disable = true
	return cfg
}

func newTransport(t testing.TB, cfg ambassador.Config) *ambassador.Transport {
	t.Helper()
	tr, err := ambassador.New(cfg)
	require.NoError(t, err)
	return tr
}

func get(t testing.TB, rt http.RoundTripper, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	require.NoError(t, err)
	return rt.RoundTrip(req)
}

// readAll reads and closes a response body.
func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return string(b)
}

// recorder is a Metrics that keeps every event.
type recorder struct {
	mu       sync.Mutex
	attempts []ambassador.AttemptEvent
	requests []ambassador.RequestEvent
	breakers []ambassador.BreakerEvent
}

func (r *recorder) ObserveAttempt(e ambassador.AttemptEvent) {
	r.mu.Lock()
	r.attempts = append(r.attempts, e)
	r.mu.Unlock()
}

func (r *recorder) ObserveRequest(e ambassador.RequestEvent) {
	r.mu.Lock()
	r.requests = append(r.requests, e)
	r.mu.Unlock()
}

func (r *recorder) ObserveBreaker(e ambassador.BreakerEvent) {
	r.mu.Lock()
	r.breakers = append(r.breakers, e)
	r.mu.Unlock()
}

func (r *recorder) transitions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.breakers {
		s = append(s, e.To.String())
	}
	return s
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return f(r)
}

var dialError = net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
