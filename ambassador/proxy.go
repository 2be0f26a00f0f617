package ambassador

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

// ProxyConfig configures a [Proxy]. Routes is required; every other
// field's zero value means the default written beside it.
type ProxyConfig struct {
	// Routes say which requests go to which upstream. A request that
	// matches no route gets 404: the proxy never forwards to an address
	// it was not configured with.
	Routes []Route

	// Client configures the policies (retries, budget, breakers,
	// bulkhead, hedging, timeouts, correlation, logging, metrics) of every
	// route. Each route gets its own [Transport], named after the route,
	// over one shared connection pool.
	Client Config

	// MaxBodyBytes caps request bodies. A request declaring a longer body
	// gets 413 at once; one whose body turns out longer is cut off and
	// gets 413 if nothing has been answered yet. Zero means 10 MiB.
	MaxBodyBytes int64

	// Logger receives a record for each request the proxy answers itself
	// (no route, body too large, upstream failure). Nil discards. The
	// transports log to Client.Logger.
	Logger *slog.Logger
}

// Route maps requests to an upstream. A request matches a route when its
// host matches Host (if set) and its path starts with PathPrefix at a
// segment boundary; among matching routes, one with a Host wins over one
// without, then the longest PathPrefix.
type Route struct {
	// Name labels the route in logs, metrics and errors. Empty means the
	// upstream's host:port. Names must be unique.
	Name string

	// Host matches the request's Host header, case-insensitively and
	// ignoring the port. Empty matches any host.
	Host string

	// PathPrefix matches the start of the request path: "/api" matches
	// "/api" and "/api/users" but not "/apis". Empty means "/".
	PathPrefix string

	// Upstream is the absolute http or https URL requests are forwarded
	// to. Its path, if any, is prepended to the request path.
	Upstream string

	// StripPrefix removes PathPrefix from the path before forwarding.
	StripPrefix bool

	// Timeout bounds the time until the upstream's response headers,
	// retries included ([Config.Timeout]); the body may stream for as long
	// as the client reads it. Zero means Client.Timeout if set, else 15s.
	Timeout time.Duration
}

const (
	defaultProxyMaxBody = 10 << 20
	defaultRouteTimeout = 15 * time.Second
)

// Proxy is the sidecar face of the ambassador: an [http.Handler] that
// forwards each request to the upstream of its [Route] through a
// [Transport], so that an application in any language gets retries,
// timeouts, circuit breaking, pooling, logs and metrics by pointing its
// client at the proxy.
//
// It is a reverse proxy built on [httputil.ReverseProxy]: it strips
// hop-by-hop headers in both directions, appends the client's address to
// X-Forwarded-For and sets X-Forwarded-Host and X-Forwarded-Proto, streams
// request and response bodies without buffering them whole (a response of
// unknown length or an event stream is flushed as it arrives), and proxies
// protocol upgrades such as WebSocket, which are never retried or hedged.
// CONNECT requests get 405: the proxy is not a forward proxy.
//
// It answers these itself, with a JSON body {"error", "code", "route"}:
// 404 route_not_found, 405 method_not_allowed, 413 body_too_large, 503
// circuit_open (with Retry-After, from the breaker's open period), 503
// bulkhead_full (Retry-After: 1), 504 upstream_timeout, 502
// upstream_unavailable for any other upstream failure. It echoes the
// correlation ID it sent upstream in the response, unless the upstream set
// one.
//
// A Proxy is safe for concurrent use and owns no goroutine. Serve it with
// an [http.Server] with ReadHeaderTimeout and IdleTimeout set (the
// ambassador command does); [Proxy.CloseIdleConnections] closes pooled
// upstream connections at shutdown.
type Proxy struct {
	routes  []*proxyRoute // sorted: host routes first, then longest prefix
	maxBody int64
	logger  *slog.Logger
	pool    http.RoundTripper
	corr    string
	bufs    bufferPool
}

var _ http.Handler = (*Proxy)(nil)

type proxyRoute struct {
	Route
	host     string // lowercase, no port
	prefix   string
	upstream *url.URL
	corr     string // the correlation header, or "" when disabled
	t        *Transport
	rp       *httputil.ReverseProxy
}

// NewProxy returns a proxy for cfg, or a [*ConfigError] naming the invalid
// field (for example "Routes[1].Upstream").
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if len(cfg.Routes) == 0 {
		return nil, &ConfigError{Field: "Routes", Reason: "must have at least one route"}
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, negative("MaxBodyBytes")
	}
	p := &Proxy{
		maxBody: orDefault(cfg.MaxBodyBytes, defaultProxyMaxBody),
		logger:  cfg.Logger,
		corr:    orDefault(cfg.Client.CorrelationHeader, defaultCorrelation),
	}
	base := cfg.Client
	if base.Transport == nil {
		ht, err := NewHTTPTransport(base.Pool)
		if err != nil {
			return nil, err
		}
		base.Transport, base.Pool = ht, PoolConfig{}
	}
	p.pool = base.Transport
	names := map[string]bool{}
	for i, r := range cfg.Routes {
		field := "Routes[" + strconv.Itoa(i) + "]"
		pr, err := p.newRoute(r, base, field)
		if err != nil {
			return nil, err
		}
		if names[pr.Name] {
			return nil, &ConfigError{Field: field + ".Name", Reason: "duplicates another route's name " + strconv.Quote(pr.Name)}
		}
		names[pr.Name] = true
		p.routes = append(p.routes, pr)
	}
	slices.SortStableFunc(p.routes, func(a, b *proxyRoute) int {
		if (a.host == "") != (b.host == "") {
			if a.host != "" {
				return -1
			}
			return 1
		}
		return len(b.prefix) - len(a.prefix)
	})
	return p, nil
}

func (p *Proxy) newRoute(r Route, base Config, field string) (*proxyRoute, error) {
	u, err := url.Parse(r.Upstream)
	switch {
	case r.Upstream == "":
		return nil, &ConfigError{Field: field + ".Upstream", Reason: "is required"}
	case err != nil:
		return nil, &ConfigError{Field: field + ".Upstream", Reason: "is not a URL: " + err.Error()}
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, &ConfigError{Field: field + ".Upstream", Reason: "must be an http or https URL, got " + strconv.Quote(r.Upstream)}
	case u.Host == "":
		return nil, &ConfigError{Field: field + ".Upstream", Reason: "must have a host"}
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, &ConfigError{Field: field + ".Upstream", Reason: "must not have a query, fragment or user info"}
	}
	prefix := r.PathPrefix
	if prefix == "" {
		prefix = "/"
	}
	if prefix[0] != '/' || strings.ContainsAny(prefix, "?#%") {
		return nil, &ConfigError{Field: field + ".PathPrefix", Reason: "must start with / and contain no ?, # or %"}
	}
	if strings.ContainsAny(r.Host, "/ ") {
		return nil, &ConfigError{Field: field + ".Host", Reason: "must be a host name"}
	}
	if r.Timeout < 0 {
		return nil, negative(field + ".Timeout")
	}
	pr := &proxyRoute{Route: r, host: strings.ToLower(stripPort(r.Host)), prefix: prefix, upstream: u}
	if !base.DisableCorrelationID {
		pr.corr = p.corr
	}
	if pr.Name == "" {
		pr.Name = u.Host
	}
	cfg := base
	cfg.Name = pr.Name
	cfg.Timeout = orDefault(r.Timeout, orDefault(base.Timeout, defaultRouteTimeout))
	if pr.t, err = New(cfg); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return nil, &ConfigError{Field: "Client." + ce.Field, Reason: ce.Reason}
		}
		return nil, err
	}
	errorLog := log.New(io.Discard, "", 0)
	if p.logger != nil {
		errorLog = slog.NewLogLogger(p.logger.Handler(), slog.LevelWarn)
	}
	pr.rp = &httputil.ReverseProxy{
		ErrorLog:       errorLog,
		Rewrite:        pr.rewrite,
		Transport:      pr.t,
		BufferPool:     &p.bufs,
		ErrorHandler:   func(w http.ResponseWriter, req *http.Request, err error) { p.upstreamError(w, req, pr, err) },
		ModifyResponse: p.echoCorrelation,
	}
	return pr, nil
}

func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

func (pr *proxyRoute) matches(host, path string) bool {
	if pr.host != "" && pr.host != host {
		return false
	}
	if !strings.HasPrefix(path, pr.prefix) {
		return false
	}
	return pr.prefix[len(pr.prefix)-1] == '/' || len(path) == len(pr.prefix) || path[len(pr.prefix)] == '/'
}

func (pr *proxyRoute) rewrite(r *httputil.ProxyRequest) {
	if pr.StripPrefix && pr.prefix != "/" {
		out := r.Out.URL
		prefix := strings.TrimSuffix(pr.prefix, "/")
		out.Path = "/" + strings.TrimLeft(strings.TrimPrefix(out.Path, prefix), "/")
		if out.RawPath != "" {
			out.RawPath = "/" + strings.TrimLeft(strings.TrimPrefix(out.RawPath, prefix), "/")
		}
	}
	if pr.corr != "" && r.Out.Header.Get(pr.corr) == "" {
		var id [32]byte
		newCorrelationID(&id)
		r.Out.Header.Set(pr.corr, string(id[:]))
	}
	r.Out.Header["X-Forwarded-For"] = r.In.Header["X-Forwarded-For"]
	r.SetURL(pr.upstream)
	r.SetXForwarded()
}

// echoCorrelation returns the correlation ID sent upstream to the client.
func (p *Proxy) echoCorrelation(resp *http.Response) error {
	if resp.Request != nil && resp.Header.Get(p.corr) == "" {
		if id := resp.Request.Header.Get(p.corr); id != "" {
			resp.Header.Set(p.corr, id)
		}
	}
	return nil
}

// ServeHTTP forwards r to the upstream of its route.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.reply(w, r, nil, http.StatusMethodNotAllowed, "method_not_allowed", "CONNECT is not supported: this is a reverse proxy", 0)
		return
	}
	host := strings.ToLower(stripPort(r.Host))
	path := r.URL.Path
	var route *proxyRoute
	for _, pr := range p.routes {
		if pr.matches(host, path) {
			route = pr
			break
		}
	}
	if route == nil {
		p.reply(w, r, nil, http.StatusNotFound, "route_not_found", "no route for "+r.Host+path, 0)
		return
	}
	if r.ContentLength > p.maxBody {
		p.reply(w, r, route, http.StatusRequestEntityTooLarge, "body_too_large",
			"request body of "+strconv.FormatInt(r.ContentLength, 10)+" bytes exceeds the limit of "+strconv.FormatInt(p.maxBody, 10), 0)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, p.maxBody)
	}
	route.rp.ServeHTTP(w, r)
}

// upstreamError answers a request the upstream did not.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, pr *proxyRoute, err error) {
	var (
		rej *circuitbreaker.RejectedError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		p.reply(w, r, pr, http.StatusRequestEntityTooLarge, "body_too_large",
			"request body exceeds the limit of "+strconv.FormatInt(mbe.Limit, 10)+" bytes", 0)
	case errors.As(err, &rej):
		wait := time.Second
		if !rej.RetryAt.IsZero() {
			wait = time.Until(rej.RetryAt)
		}
		p.reply(w, r, pr, http.StatusServiceUnavailable, "circuit_open", err.Error(), wait)
	case errors.Is(err, ErrBulkheadFull):
		p.reply(w, r, pr, http.StatusServiceUnavailable, "bulkhead_full", err.Error(), time.Second)
	case r.Context().Err() != nil && !errors.Is(err, ErrTimeout):
		// The client went away; nobody reads the answer.
		p.reply(w, r, pr, 499, "client_closed_request", err.Error(), 0)
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrAttemptTimeout), errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		p.reply(w, r, pr, http.StatusGatewayTimeout, "upstream_timeout", err.Error(), 0)
	default:
		p.reply(w, r, pr, http.StatusBadGateway, "upstream_unavailable", err.Error(), 0)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// proxyError is the JSON body of an answer the proxy gives itself.
type proxyError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Route string `json:"route,omitempty"`
}

func (p *Proxy) reply(w http.ResponseWriter, r *http.Request, pr *proxyRoute, status int, code, msg string, retryAfter time.Duration) {
	route := ""
	if pr != nil {
		route = pr.Name
	}
	if p.logger != nil {
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		p.logger.LogAttrs(r.Context(), level, "ambassador: proxy answered", slog.Int("status", status),
			slog.String("code", code), slog.String("route", route), slog.String("method", r.Method),
			slog.String("upstream", r.URL.Host), slog.String("path", r.URL.Path), slog.String("error", msg),
			slog.String("correlation_id", r.Header.Get(p.corr)))
	}
	h := w.Header()
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retryAfter.Seconds())), 10))
	}
	if id := r.Header.Get(p.corr); id != "" {
		h.Set(p.corr, id)
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(proxyError{Error: msg, Code: code, Route: route})
}

// RouteStatus describes a route for readiness and debugging.
type RouteStatus struct {
	Name     string `json:"name"`     // the route's name
	Upstream string `json:"upstream"` // the route's upstream URL
	// Breaker is the state of the upstream host's breaker ("closed",
	// "open", ...), or "" when circuit breaking is disabled.
	Breaker string `json:"breaker,omitempty"`
}

// Routes returns the status of every route, in matching order.
func (p *Proxy) Routes() []RouteStatus {
	out := make([]RouteStatus, 0, len(p.routes))
	for _, pr := range p.routes {
		s := RouteStatus{Name: pr.Name, Upstream: pr.Upstream}
		if g := pr.t.Breakers(); g != nil {
			s.Breaker = g.Get(pr.upstream.Host).State().String()
		}
		out = append(out, s)
	}
	return out
}

// CloseIdleConnections closes the idle upstream connections.
func (p *Proxy) CloseIdleConnections() {
	if c, ok := p.pool.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// bufferPool recycles the 32 KiB buffers the reverse proxy copies bodies
// through.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
