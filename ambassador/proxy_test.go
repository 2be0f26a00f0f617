package ambassador_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/circuitbreaker"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type errorBody struct {
	Error, Code, Route string
}

func decodeError(t *testing.T, resp *http.Response) errorBody {
	t.Helper()
	defer resp.Body.Close()
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var e errorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	return e
}

func newProxy(t *testing.T, cfg ambassador.ProxyConfig) *httptest.Server {
	t.Helper()
	p, err := ambassador.NewProxy(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.CloseIdleConnections()
	})
	return srv
}

// echo answers with what it received.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		b, _ := io.ReadAll(r.Body)
		json.NewEncoder(w).Encode(map[string]any{
			"path": r.URL.RequestURI(), "host": r.Host, "body": string(b), "headers": r.Header,
		})
	})
}

type echoed struct {
	Path, Host, Body string
	Headers          http.Header
}

func TestProxyRoutes(t *testing.T) {
	a := httptest.NewServer(echo("a"))
	defer a.Close()
	b := httptest.NewServer(echo("b"))
	defer b.Close()
	c := httptest.NewServer(echo("c"))
	defer c.Close()
	px := newProxy(t, ambassador.ProxyConfig{Routes: []ambassador.Route{
		{Name: "catch-all", Upstream: a.URL},
		{Name: "api", PathPrefix: "/api", Upstream: b.URL + "/v2", StripPrefix: true},
		{Name: "search", Host: "search.local", Upstream: c.URL},
	}})
	tests := []struct {
		host, path       string
		upstream, wanted string
	}{
		{"", "/x?q=1", "a", "/x?q=1"},
		{"", "/api", "b", "/v2/"},
		{"", "/api/users/7?full=1", "b", "/v2/users/7?full=1"},
		{"", "/apis", "a", "/apis"},
		{"search.local:8080", "/api/users", "c", "/api/users"},
		{"SEARCH.local", "/", "c", "/"},
	}
	for _, tc := range tests {
		t.Run(tc.host+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, px.URL+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tc.upstream, resp.Header.Get("X-Upstream"))
			var e echoed
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			assert.Equal(t, tc.wanted, e.Path)
		})
	}
}

func TestProxyUnknownRouteIs404(t *testing.T) {
	up := httptest.NewServer(echo("a"))
	defer up.Close()
	px := newProxy(t, ambassador.ProxyConfig{Routes: []ambassador.Route{{PathPrefix: "/only/", Upstream: up.URL}}})
	resp, err := http.Get(px.URL + "/elsewhere")
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "route_not_found", decodeError(t, resp).Code)

	// Not an open proxy: an absolute URL to another host goes nowhere.
	conn, err := net.Dial("tcp", px.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp.Body.Close()

	_, _ = io.WriteString(conn, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp.Body.Close()
}

func TestProxyHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "upstream-only")
		w.Header().Set("Keep-Alive", "timeout=5")
		echo("a").ServeHTTP(w, r)
	}))
	defer up.Close()
	px := newProxy(t, ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: up.URL}}})
	req, _ := http.NewRequest(http.MethodGet, px.URL+"/", nil)
	req.Header.Set("Connection", "X-Secret")
	req.Header.Set("X-Secret", "hop")
	req.Header.Set("Proxy-Authorization", "Basic x")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Keep", "yes")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var e echoed
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	assert.Empty(t, e.Headers.Get("X-Secret"), "headers named by Connection are hop-by-hop")
	assert.Empty(t, e.Headers.Get("Proxy-Authorization"))
	assert.Equal(t, "yes", e.Headers.Get("X-Keep"))
	assert.Equal(t, "203.0.113.9, 127.0.0.1", e.Headers.Get("X-Forwarded-For"))
	assert.Equal(t, "http", e.Headers.Get("X-Forwarded-Proto"))
	assert.Equal(t, px.Listener.Addr().String(), e.Headers.Get("X-Forwarded-Host"))
	assert.Empty(t, resp.Header.Get("X-Hop"))
	assert.Empty(t, resp.Header.Get("Keep-Alive"))
	id := e.Headers.Get("X-Correlation-ID")
	assert.Regexp(t, `^[0-9a-f]{32}$`, id)
	assert.Equal(t, id, resp.Header.Get("X-Correlation-ID"), "the client learns the correlation ID")
}

func TestProxyBodyLimit(t *testing.T) {
	var reached atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	px := newProxy(t, ambassador.ProxyConfig{MaxBodyBytes: 1000, Routes: []ambassador.Route{{Upstream: up.URL}}})

	resp, err := http.Post(px.URL+"/", "text/plain", strings.NewReader(strings.Repeat("x", 1001)))
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "body_too_large", decodeError(t, resp).Code)
	assert.Zero(t, reached.Load(), "a declared length over the limit is refused before forwarding")

	// Chunked, so the length is discovered while reading: PUT is
	// idempotent, so the proxy buffers it for replay and sees the excess.
	req, _ := http.NewRequest(http.MethodPut, px.URL+"/", opaqueReader{strings.NewReader(strings.Repeat("x", 5000))})
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "body_too_large", decodeError(t, resp).Code)

	resp, err = http.Post(px.URL+"/", "text/plain", strings.NewReader(strings.Repeat("x", 1000)))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestProxyUpstreamFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + l.Addr().String()
	l.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	px := newProxy(t, ambassador.ProxyConfig{
		Client: ambassador.Config{
			Retry:   ambassador.RetryConfig{BaseDelay: time.Millisecond},
			Breaker: ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{ConsecutiveFailures: 6, OpenTimeout: time.Minute}}},
		},
		Routes: []ambassador.Route{
			{Name: "dead", PathPrefix: "/dead", Upstream: dead},
			{Name: "slow", PathPrefix: "/slow", Upstream: slow.URL, Timeout: 100 * time.Millisecond},
		},
	})

	resp, err := http.Get(px.URL + "/dead")
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	e := decodeError(t, resp)
	assert.Equal(t, "upstream_unavailable", e.Code)
	assert.Equal(t, "dead", e.Route)
	assert.Contains(t, e.Error, "refused")

	resp, err = http.Get(px.URL + "/slow")
	require.NoError(t, err)
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Equal(t, "upstream_timeout", decodeError(t, resp).Code)

	// Three attempts per request: the second request trips the breaker.
	resp, err = http.Get(px.URL + "/dead")
	require.NoError(t, err)
	resp.Body.Close()
	resp, err = http.Get(px.URL + "/dead")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	assert.InDelta(t, 60, ra, 1)
	assert.Equal(t, "circuit_open", decodeError(t, resp).Code)
}

func TestProxyStreamsResponses(t *testing.T) {
	step := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			<-step
		}
	}))
	defer up.Close()
	px := newProxy(t, ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: up.URL}}})
	resp, err := http.Get(px.URL + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := rd.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "data: "+strconv.Itoa(i)+"\n", line, "event %d arrives before the stream ends", i)
		_, _ = rd.ReadString('\n')
		step <- struct{}{}
	}
}

func TestProxyUpgrades(t *testing.T) {
	// A minimal upgrade handshake and an echo over the upgraded
	// connection, as WebSocket does.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		_, _ = rw.WriteString("echo: " + line)
		_ = rw.Flush()
	}))
	defer up.Close()
	px := newProxy(t, ambassador.ProxyConfig{
		Client: ambassador.Config{Bulkhead: ambassador.BulkheadConfig{MaxConcurrent: 1}, AttemptTimeout: time.Second, Hedge: ambassador.HedgeConfig{Delay: time.Millisecond}},
		Routes: []ambassador.Route{{Upstream: up.URL}},
	})
	conn, err := net.Dial("tcp", px.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, _ = io.WriteString(conn, "hello\n")
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "echo: hello\n", line)

	// The upgraded connection does not hold the bulkhead slot.
	resp2, err := http.Get(px.URL + "/plain")
	require.NoError(t, err)
	resp2.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp2.StatusCode)
}

func TestProxyConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		cfg   ambassador.ProxyConfig
		field string
	}{
		{"no routes", ambassador.ProxyConfig{}, "Routes"},
		{"no upstream", ambassador.ProxyConfig{Routes: []ambassador.Route{{}}}, "Routes[0].Upstream"},
		{"relative upstream", ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: "localhost:80"}}}, "Routes[0].Upstream"},
		{"ftp upstream", ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: "ftp://h"}}}, "Routes[0].Upstream"},
		{"bad prefix", ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: "http://h", PathPrefix: "api"}}}, "Routes[0].PathPrefix"},
		{"duplicate names", ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: "http://h"}, {Upstream: "http://h", PathPrefix: "/x"}}}, "Routes[1].Name"},
		{"negative timeout", ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: "http://h", Timeout: -1}}}, "Routes[0].Timeout"},
		{"bad client", ambassador.ProxyConfig{Client: ambassador.Config{Retry: ambassador.RetryConfig{MaxAttempts: -1}}, Routes: []ambassador.Route{{Upstream: "http://h"}}}, "Client.Retry.MaxAttempts"},
		{"negative body", ambassador.ProxyConfig{MaxBodyBytes: -1, Routes: []ambassador.Route{{Upstream: "http://h"}}}, "MaxBodyBytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ambassador.NewProxy(tc.cfg)
			require.ErrorIs(t, err, ambassador.ErrInvalidConfig)
			var ce *ambassador.ConfigError
			require.True(t, errors.As(err, &ce))
			assert.Equal(t, tc.field, ce.Field)
		})
	}
}
