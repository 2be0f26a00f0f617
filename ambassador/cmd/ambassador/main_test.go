package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigErrorsNameTheField(t *testing.T) {
	ok := `"routes": [{"upstream": "http://127.0.0.1:9000"}]`
	tests := []struct {
		name, json, field string
	}{
		{"unknown field", `{` + ok + `, "retires": {}}`, "retires"},
		{"wrong type", `{` + ok + `, "retry": {"max_attempts": "three"}}`, "retry.max_attempts"},
		{"bad duration", `{` + ok + `, "timeout": "soon"}`, "timeout"},
		{"negative duration", `{` + ok + `, "retry": {"base_delay": "-1s"}}`, "retry.base_delay"},
		{"bad route duration", `{"routes": [{"upstream": "http://h", "timeout": "x"}]}`, "routes[0].timeout"},
		{"bad upstream", `{"routes": [{"upstream": "http://h"}, {"upstream": "h:80", "path_prefix": "/b"}]}`, "routes[1].upstream"},
		{"no routes", `{}`, "routes"},
		{"bad status", `{` + ok + `, "retry": {"statuses": [503, 700]}}`, "retry.statuses[1]"},
		{"breaker rate", `{` + ok + `, "breaker": {"failure_rate": 2}}`, "breaker.failure_rate"},
		{"bad listen", `{` + ok + `, "listen": "8080"}`, "listen"},
		{"bad log level", `{` + ok + `, "log": {"level": "loud"}}`, "log.level"},
		{"negative bulkhead", `{` + ok + `, "bulkhead": {"max_concurrent": -1}}`, "bulkhead.max_concurrent"},
		{"syntax", "{\n  \"routes\": [,]\n}", "line 2, column 14"},
		{"trailing data", `{` + ok + `} {}`, "(end)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.json")
			require.NoError(t, os.WriteFile(path, []byte(tc.json), 0o600))
			_, err := loadSettings(io.Discard, []string{"-config", path})
			if err == nil {
				var s *settings
				s, err = loadSettings(io.Discard, []string{"-config", path})
				require.NoError(t, err)
				_, err = newSidecar(s, slog.New(slog.DiscardHandler))
			}
			require.Error(t, err)
			var fe *fieldError
			require.True(t, errors.As(err, &fe), "%T %v", err, err)
			assert.Equal(t, tc.field, fe.Field, err.Error())
		})
	}
}

func TestFlagsOverrideTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"listen": "127.0.0.1:1", "routes": [{"name": "a", "upstream": "http://h"}]}`), 0o600))
	s, err := loadSettings(io.Discard, []string{"-config", path, "-listen", "127.0.0.1:2", "-upstream", "http://other", "-log-level", "debug"})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:2", s.listen)
	assert.Equal(t, "127.0.0.1:9901", s.admin)
	assert.Len(t, s.proxy.Routes, 2)
	assert.Equal(t, slog.LevelDebug, s.level)

	_, err = loadSettings(io.Discard, []string{"-nope"})
	assert.Error(t, err)
	_, err = loadSettings(io.Discard, []string{"-config", filepath.Join(t.TempDir(), "missing.json")})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// flakyUpstream answers with a random body and its checksum, and fails
// some requests: 503 with Retry-After, a reset before the headers, a slow
// answer, or a reset in the middle of the body.
func flakyUpstream(seed uint64) http.Handler {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		roll := rng.IntN(100)
		body := make([]byte, 1+rng.IntN(64<<10))
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
		mu.Unlock()
		reset := func(partial string) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			_, _ = buf.WriteString(partial)
			_ = buf.Flush()
			conn.Close()
		}
		switch {
		case roll < 15:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case roll < 22:
			reset("")
			return
		case roll < 26:
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
				return
			}
		case roll < 30:
			reset(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2]))
			return
		}
		sum := sha256.Sum256(body)
		w.Header().Set("X-Sum", hex.EncodeToString(sum[:]))
		_, _ = w.Write(body)
	})
}

func TestSidecarInFrontOfAFlakyUpstream(t *testing.T) {
	up := httptest.NewServer(flakyUpstream(7))
	defer up.Close()
	fc := &fileConfig{
		Routes:         []routeConfig{{Name: "flaky", Upstream: up.URL}},
		AttemptTimeout: "1s", // well above a loaded machine's response time, well below the 2 s stall
	}
	fc.Retry.MaxAttempts = 4
	fc.Retry.BaseDelay = "1ms"
	fc.Breaker.Disable = true
	fc.Budget.Disable = true
	s, err := fc.build()
	require.NoError(t, err)
	sc, err := newSidecar(s, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	px := httptest.NewServer(sc.proxy)
	defer px.Close()
	defer sc.proxy.CloseIdleConnections()
	admin := httptest.NewServer(sc.admin())
	defer admin.Close()

	var okCount, failCount, cut atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for range 25 {
				resp, err := client.Get(px.URL + "/data")
				if !assert.NoError(t, err) {
					return
				}
				body, readErr := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					if readErr != nil {
						cut.Add(1) // reset mid-body: the client sees the cut, never a short 200
						continue
					}
					sum := sha256.Sum256(body)
					assert.Equal(t, resp.Header.Get("X-Sum"), hex.EncodeToString(sum[:]), "a 200 body arrives intact")
					okCount.Add(1)
				case http.StatusServiceUnavailable:
					// The upstream's own 503, after the retries ran out.
					assert.NotEqual(t, "application/json", resp.Header.Get("Content-Type"))
					failCount.Add(1)
				case http.StatusBadGateway, http.StatusGatewayTimeout:
					// An error the proxy answered itself.
					var e struct{ Code string }
					assert.NoError(t, json.Unmarshal(body, &e), "%s", body)
					assert.NotEmpty(t, e.Code)
					failCount.Add(1)
				default:
					t.Errorf("unexpected status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d ok, %d failed with a JSON error, %d cut mid-body", okCount.Load(), failCount.Load(), cut.Load())
	assert.Equal(t, int32(200), okCount.Load()+failCount.Load()+cut.Load())
	// About 26% of attempts fail in a retryable way; with 4 attempts
	// nearly every request succeeds.
	assert.Greater(t, okCount.Load(), int32(170))

	resp, err := http.Get(admin.URL + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Regexp(t, `ambassador_retries_total\{name="flaky",host="[^"]+"\} [1-9]`, string(metrics))
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startRun(t *testing.T, cfg string) (proxy, admin string, cancel context.CancelFunc, done <-chan error, out *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, out, []string{"-config", path, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"})
	}()
	re := regexp.MustCompile(`proxy=(\S+) admin=(\S+)`)
	require.Eventually(t, func() bool { return re.MatchString(out.String()) }, 10*time.Second, 5*time.Millisecond, "no listening line:\n%s", out)
	m := re.FindStringSubmatch(out.String())
	return "http://" + m[1], "http://" + m[2], cancel, errc, out
}

func TestRunServesAndDrainsOnShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done "+r.URL.Path)
	}))
	defer up.Close()
	proxy, admin, cancel, done, out := startRun(t, `{"routes": [{"upstream": "`+up.URL+`"}], "shutdown_timeout": "10s"}`)
	defer cancel()

	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(admin + p)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, p)
	}
	resp, err := http.Get(proxy + "/fast")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "done /fast", string(body))

	// A request in flight when the signal comes is let finish.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(proxy + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-started
	cancel()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "shutting down") }, 5*time.Second, 5*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("run returned before the in-flight request finished: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	assert.Equal(t, "done /slow", <-slow)
	require.NoError(t, <-done)
	_, err = net.Dial("tcp", strings.TrimPrefix(proxy, "http://"))
	assert.Error(t, err, "the listener is closed")
}

func TestRunGivesUpDrainingAfterTheTimeout(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	started := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	proxy, _, cancel, done, _ := startRun(t, `{"routes": [{"upstream": "`+up.URL+`", "timeout": "1m"}], "shutdown_timeout": "100ms"}`)
	go func() {
		if resp, err := http.Get(proxy + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	err := <-done
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not finish within 100ms")
}

// TestSlowClientsAreCutOff guards the server timeouts against slow
// clients: a client that never finishes its request headers is
// disconnected after read_header_timeout, and an idle keep-alive
// connection after idle_timeout, instead of holding a connection forever.
func TestSlowClientsAreCutOff(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	proxy, _, cancel, done, _ := startRun(t, `{"routes": [{"upstream": "`+up.URL+`"}],
		"read_header_timeout": "200ms", "idle_timeout": "300ms"}`)
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	addr := strings.TrimPrefix(proxy, "http://")

	// waitClosed reads until the server closes the connection; the read
	// deadline only bounds a failing test.
	waitClosed := func(t *testing.T, conn net.Conn) string {
		t.Helper()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		got, err := io.ReadAll(conn)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server did not close the connection")
		return string(got)
	}

	t.Run("headers never finished", func(t *testing.T) {
		start := time.Now() // before the server can start its timer
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n") // no blank line
		require.NoError(t, err)
		got := waitClosed(t, conn)
		assert.NotContains(t, got, "ok", "no request was forwarded")
		assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "cut off by the timeout, not at once")
	})

	t.Run("idle keep-alive connection", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		got := waitClosed(t, conn)
		assert.Contains(t, got, "200 OK")
		assert.True(t, strings.HasSuffix(got, "ok"), "the response came whole before the close: %q", got)
	})
}
