package ambassador_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run the Transport against real HTTP servers on loopback,
// with faults injected by the server.

func fastRetries(cfg ambassador.Config) ambassador.Config {
	cfg.Retry.BaseDelay = time.Millisecond
	cfg.Retry.MaxDelay = 5 * time.Millisecond
	return cfg
}

// opaqueReader hides a reader's type, so http.NewRequest sets no GetBody.
type opaqueReader struct{ r io.Reader }

func (o opaqueReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestBodiesAreReplayedByteForByte(t *testing.T) {
	payload := make([]byte, 50<<10)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)

	tests := []struct {
		name string
		body func() io.Reader
	}{
		{"with GetBody", func() io.Reader { return bytes.NewReader(payload) }},
		{"buffered by the transport", func() io.Reader { return opaqueReader{bytes.NewReader(payload)} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var sums [][32]byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				require.NoError(t, err)
				mu.Lock()
				sums = append(sums, sha256.Sum256(b))
				n := len(sums)
				mu.Unlock()
				if n < 3 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			defer srv.Close()
			tr := newTransport(t, fastRetries(quiet(ambassador.Config{})))
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodPost, srv.URL, tc.body())
			req.Header.Set("Idempotency-Key", "order-42")
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusCreated, resp.StatusCode)
			require.Len(t, sums, 3)
			for i, s := range sums {
				assert.Equal(t, want, s, "attempt %d body", i+1)
			}
		})
	}
}

func TestBodiesAboveTheCapAreSentOnceNotBuffered(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	var attempts atomic.Int32
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tr := newTransport(t, fastRetries(quiet(ambassador.Config{})))
	defer tr.CloseIdleConnections()
	for _, body := range []io.Reader{bytes.NewReader(payload), opaqueReader{bytes.NewReader(payload)}} {
		attempts.Store(0)
		req, _ := http.NewRequest(http.MethodPut, srv.URL, body)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, int32(1), attempts.Load(), "a body above Retry.MaxBodyBytes is not retried")
		assert.Equal(t, payload, got, "and it reaches the upstream intact")
	}
}

func TestCorrelationAndTraceReachTheUpstream(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
	}))
	defer srv.Close()
	tr := newTransport(t, ambassador.Config{})
	defer tr.CloseIdleConnections()
	send := func(req *http.Request) http.Header {
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		readAll(t, resp)
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}

	// Created when absent.
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	h := send(req)
	assert.Regexp(t, `^[0-9a-f]{32}$`, h.Get("X-Correlation-ID"))
	assert.True(t, ambassador.ValidTraceParent(h.Get("Traceparent")), h.Get("Traceparent"))
	assert.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, h.Get("Traceparent"))

	// Taken from the context.
	req, _ = http.NewRequestWithContext(ambassador.WithCorrelationID(t.Context(), "order-7"), http.MethodGet, srv.URL, nil)
	assert.Equal(t, "order-7", send(req).Get("X-Correlation-ID"))

	// Passed through when present and valid.
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("X-Correlation-ID", "mine")
	req.Header.Set("Traceparent", tp)
	req.Header.Set("Tracestate", "vendor=1")
	h = send(req)
	assert.Equal(t, "mine", h.Get("X-Correlation-ID"))
	assert.Equal(t, tp, h.Get("Traceparent"))
	assert.Equal(t, "vendor=1", h.Get("Tracestate"))

	// A malformed traceparent starts a new trace.
	req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	h = send(req)
	assert.True(t, ambassador.ValidTraceParent(h.Get("Traceparent")))
	assert.NotContains(t, h.Get("Traceparent"), "0000000000000000000000000000000")

	// Both can be turned off.
	tr2 := newTransport(t, ambassador.Config{DisableCorrelationID: true, DisableTraceParent: true, CorrelationHeader: "X-Request-ID"})
	defer tr2.CloseIdleConnections()
	req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := tr2.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Empty(t, seen[len(seen)-1].Get("X-Request-ID"))
	assert.Empty(t, seen[len(seen)-1].Get("Traceparent"))
}

func TestDeadUpstreamThatRecovers(t *testing.T) {
	// Reserve an address, then leave it closed: connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()

	var refusals atomic.Int32
	rec := &recorder{}
	tr := newTransport(t, fastRetries(ambassador.Config{
		Retry:   ambassador.RetryConfig{MaxAttempts: 4},
		Budget:  ambassador.BudgetConfig{Disable: true},
		Metrics: rec,
	}))
	defer tr.CloseIdleConnections()
	_, err = get(t, tr, "http://"+addr+"/")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused")
	require.Len(t, rec.attempts, 4, "a refused connection is retried")
	refusals.Add(4)

	// The upstream comes back on the same address.
	l, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("back")) })}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	resp, err := get(t, tr, "http://"+addr+"/")
	require.NoError(t, err)
	assert.Equal(t, "back", readAll(t, resp))
}

// hijacker answers the first n requests by closing the connection, after
// writing partial, which may be empty.
func hijacker(n int32, partial string) (http.Handler, *atomic.Int32) {
	var count atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) > n {
			_, _ = w.Write([]byte("complete"))
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		_, _ = buf.WriteString(partial)
		_ = buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // send a reset, not a clean close
		}
		conn.Close()
	}), &count
}

func TestResetBeforeHeaders(t *testing.T) {
	h, count := hijacker(2, "")
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := newTransport(t, fastRetries(quiet(ambassador.Config{Pool: ambassador.PoolConfig{MaxIdleConnsPerHost: 1}})))
	defer tr.CloseIdleConnections()

	resp, err := get(t, tr, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "complete", readAll(t, resp))
	assert.Equal(t, int32(3), count.Load(), "a GET is retried after a reset")

	count.Store(0)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("charge card"))
	_, err = tr.RoundTrip(req)
	require.Error(t, err)
	assert.Equal(t, int32(1), count.Load(), "a POST that reached the upstream is not retried")
}

func TestResetMidBodyReachesTheCaller(t *testing.T) {
	h, _ := hijacker(1, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := newTransport(t, fastRetries(quiet(ambassador.Config{})))
	defer tr.CloseIdleConnections()
	resp, err := get(t, tr, srv.URL)
	require.NoError(t, err, "the headers arrived: the response is returned")
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "partial", string(b))
	assert.Error(t, err, "the cut body is an error, never a silently short body")
}

func TestSlowResponsesAreCutAndRetried(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		_, _ = w.Write([]byte("fast"))
	}))
	defer srv.Close()
	tr := newTransport(t, fastRetries(quiet(ambassador.Config{AttemptTimeout: 50 * time.Millisecond})))
	defer tr.CloseIdleConnections()
	resp, err := get(t, tr, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "fast", readAll(t, resp))
	assert.Equal(t, int32(2), count.Load())
}

func TestBurstOf503WithRetryAfter(t *testing.T) {
	// Each request meets two 503s with Retry-After before it succeeds;
	// attempts are told apart by the correlation ID, which stays the same
	// across the retries of one request.
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Correlation-ID")
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		if n <= 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	tr := newTransport(t, quiet(ambassador.Config{}))
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				resp, err := get(t, tr, srv.URL)
				if assert.NoError(t, err) {
					assert.Equal(t, "ok", readAll(t, resp))
				}
			}
		})
	}
	wg.Wait()
	assert.Len(t, seen, 80)
	for id, n := range seen {
		assert.Equal(t, 3, n, "attempts of request %s", id)
	}
}

func TestNothingLeaksAfterShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	var active atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/503" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			active.Add(1)
		case http.StateClosed, http.StateHijacked:
			active.Add(-1)
		}
	}
	srv.Start()
	tr := newTransport(t, fastRetries(ambassador.Config{
		AttemptTimeout: time.Second,
		Timeout:        5 * time.Second,
		Bulkhead:       ambassador.BulkheadConfig{MaxConcurrent: 4, MaxWait: time.Second},
		Hedge:          ambassador.HedgeConfig{Delay: time.Millisecond},
	}))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				path := "/"
				if (i+j)%4 == 0 {
					path = "/503"
				}
				resp, err := get(t, tr, srv.URL+path)
				if err == nil { // the breaker may open: errors are fine here
					readAll(t, resp)
				}
			}
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()
	srv.Close()
	assert.Eventually(t, func() bool { return active.Load() == 0 }, 5*time.Second, 10*time.Millisecond, "connections left open")
	// Poll on this goroutine: assert.Eventually would add its own.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines left running: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
