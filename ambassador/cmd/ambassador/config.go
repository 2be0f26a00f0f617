package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/circuitbreaker"
)

// fileConfig is the JSON configuration file. Durations are strings in Go
// syntax ("250ms", "15s"); every omitted field takes the default written
// in the README and in the ambassador package documentation.
type fileConfig struct {
	Listen            string        `json:"listen"`              // proxy address; default 127.0.0.1:8080
	AdminListen       string        `json:"admin_listen"`        // /healthz, /readyz, /metrics; default 127.0.0.1:9901
	Routes            []routeConfig `json:"routes"`              // required (or -upstream)
	MaxBodyBytes      int64         `json:"max_body_bytes"`      // default 10 MiB
	MaxHeaderBytes    int           `json:"max_header_bytes"`    // default 1 MiB
	ReadHeaderTimeout string        `json:"read_header_timeout"` // default 10s
	ReadTimeout       string        `json:"read_timeout"`        // whole request, body included; default none
	IdleTimeout       string        `json:"idle_timeout"`        // keep-alive connections; default 120s
	ShutdownTimeout   string        `json:"shutdown_timeout"`    // drain deadline; default 15s
	Timeout           string        `json:"timeout"`             // per request until headers; default 15s
	AttemptTimeout    string        `json:"attempt_timeout"`     // per attempt until headers; default none
	CorrelationHeader string        `json:"correlation_header"`  // default X-Correlation-ID
	Retry             struct {
		MaxAttempts        int      `json:"max_attempts"`
		BaseDelay          string   `json:"base_delay"`
		MaxDelay           string   `json:"max_delay"`
		MaxRetryAfter      string   `json:"max_retry_after"`
		Statuses           []int    `json:"statuses"`
		Methods            []string `json:"methods"`
		IdempotencyHeaders []string `json:"idempotency_headers"`
		MaxBodyBytes       int64    `json:"max_body_bytes"`
	} `json:"retry"`
	Budget struct {
		Disable      bool    `json:"disable"`
		Ratio        float64 `json:"ratio"`
		MinPerSecond float64 `json:"min_per_second"`
		Window       string  `json:"window"`
	} `json:"budget"`
	Breaker struct {
		Disable             bool    `json:"disable"`
		ConsecutiveFailures int     `json:"consecutive_failures"`
		FailureRate         float64 `json:"failure_rate"`
		MinCalls            int     `json:"min_calls"`
		WindowCalls         int     `json:"window_calls"`
		OpenTimeout         string  `json:"open_timeout"`
		MaxOpenTimeout      string  `json:"max_open_timeout"`
		HalfOpenProbes      int     `json:"half_open_probes"`
		FailureStatuses     []int   `json:"failure_statuses"`
	} `json:"breaker"`
	Bulkhead struct {
		MaxConcurrent int    `json:"max_concurrent"`
		MaxWait       string `json:"max_wait"`
	} `json:"bulkhead"`
	Hedge struct {
		Delay     string `json:"delay"`
		MaxHedges int    `json:"max_hedges"`
	} `json:"hedge"`
	Pool struct {
		MaxIdleConns        int    `json:"max_idle_conns"`
		MaxIdleConnsPerHost int    `json:"max_idle_conns_per_host"`
		MaxConnsPerHost     int    `json:"max_conns_per_host"`
		IdleConnTimeout     string `json:"idle_conn_timeout"`
		DialTimeout         string `json:"dial_timeout"`
	} `json:"pool"`
	Log struct {
		Level  string `json:"level"`  // debug, info (default), warn, error
		Format string `json:"format"` // text (default) or json
	} `json:"log"`
}

type routeConfig struct {
	Name        string `json:"name"`
	Host        string `json:"host"`
	PathPrefix  string `json:"path_prefix"`
	Upstream    string `json:"upstream"`
	StripPrefix bool   `json:"strip_prefix"`
	Timeout     string `json:"timeout"`
}

// fieldError is an invalid configuration field, named by its JSON path.
type fieldError struct {
	Field, Reason string
}

func (e *fieldError) Error() string { return "config: " + e.Field + ": " + e.Reason }

// parseConfig decodes a JSON config, rejecting unknown fields and trailing
// data with the offending field named.
func parseConfig(r io.Reader) (*fileConfig, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		var (
			te *json.UnmarshalTypeError
			se *json.SyntaxError
		)
		switch {
		case errors.As(err, &te):
			return nil, &fieldError{Field: te.Field, Reason: "must be a JSON " + jsonKind(te.Type.Kind().String()) + ", got " + te.Value}
		case errors.As(err, &se):
			line, col := position(data, se.Offset-1)
			return nil, &fieldError{Field: fmt.Sprintf("line %d, column %d", line, col), Reason: se.Error()}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, &fieldError{Field: strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), Reason: "is not a known field"}
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if dec.More() {
		return nil, &fieldError{Field: "(end)", Reason: "unexpected data after the configuration object"}
	}
	return &fc, nil
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "number"
	case k == "slice":
		return "array"
	case k == "struct":
		return "object"
	}
	return k
}

func position(data []byte, off int64) (line, col int) {
	line, col = 1, 1
	for _, b := range data[:min(int(off), len(data))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// durations parses the named duration fields; empty means zero.
type durations struct{ err error }

func (d *durations) parse(field, v string) time.Duration {
	if v == "" || d.err != nil {
		return 0
	}
	x, err := time.ParseDuration(v)
	switch {
	case err != nil:
		d.err = &fieldError{Field: field, Reason: "must be a duration such as \"250ms\" or \"15s\", got " + strconv.Quote(v)}
	case x < 0:
		d.err = &fieldError{Field: field, Reason: "must not be negative"}
	}
	return x
}

// settings is a validated configuration.
type settings struct {
	listen, admin     string
	proxy             ambassador.ProxyConfig
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	idleTimeout       time.Duration
	shutdownTimeout   time.Duration
	maxHeaderBytes    int
	level             slog.Level
	jsonLogs          bool
}

// build validates fc and turns it into settings. Errors name the JSON
// field.
func (fc *fileConfig) build() (*settings, error) {
	var d durations
	s := &settings{
		listen:            orDefault(fc.Listen, "127.0.0.1:8080"),
		admin:             orDefault(fc.AdminListen, "127.0.0.1:9901"),
		readHeaderTimeout: orDefault(d.parse("read_header_timeout", fc.ReadHeaderTimeout), 10*time.Second),
		readTimeout:       d.parse("read_timeout", fc.ReadTimeout),
		idleTimeout:       orDefault(d.parse("idle_timeout", fc.IdleTimeout), 120*time.Second),
		shutdownTimeout:   orDefault(d.parse("shutdown_timeout", fc.ShutdownTimeout), 15*time.Second),
		maxHeaderBytes:    orDefault(fc.MaxHeaderBytes, 1<<20),
	}
	for _, a := range []struct{ field, addr string }{{"listen", s.listen}, {"admin_listen", s.admin}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return nil, &fieldError{Field: a.field, Reason: "must be host:port, got " + strconv.Quote(a.addr)}
		}
	}
	if fc.MaxHeaderBytes < 0 {
		return nil, &fieldError{Field: "max_header_bytes", Reason: "must not be negative"}
	}
	switch strings.ToLower(fc.Log.Level) {
	case "", "info":
		s.level = slog.LevelInfo
	case "debug":
		s.level = slog.LevelDebug
	case "warn":
		s.level = slog.LevelWarn
	case "error":
		s.level = slog.LevelError
	default:
		return nil, &fieldError{Field: "log.level", Reason: "must be debug, info, warn or error, got " + strconv.Quote(fc.Log.Level)}
	}
	switch fc.Log.Format {
	case "", "text":
	case "json":
		s.jsonLogs = true
	default:
		return nil, &fieldError{Field: "log.format", Reason: "must be text or json, got " + strconv.Quote(fc.Log.Format)}
	}

	c := ambassador.Config{
		Timeout:           d.parse("timeout", fc.Timeout),
		AttemptTimeout:    d.parse("attempt_timeout", fc.AttemptTimeout),
		CorrelationHeader: fc.CorrelationHeader,
	}
	r := &fc.Retry
	c.Retry = ambassador.RetryConfig{
		MaxAttempts: r.MaxAttempts, BaseDelay: d.parse("retry.base_delay", r.BaseDelay),
		MaxDelay: d.parse("retry.max_delay", r.MaxDelay), MaxRetryAfter: d.parse("retry.max_retry_after", r.MaxRetryAfter),
		Statuses: r.Statuses, Methods: r.Methods, IdempotencyHeaders: r.IdempotencyHeaders, MaxBodyBytes: r.MaxBodyBytes,
	}
	c.Budget = ambassador.BudgetConfig{
		Disable: fc.Budget.Disable, Ratio: fc.Budget.Ratio, MinPerSecond: fc.Budget.MinPerSecond,
		Window: d.parse("budget.window", fc.Budget.Window),
	}
	b := &fc.Breaker
	c.Breaker = ambassador.BreakerConfig{
		Disable: b.Disable, FailureStatuses: b.FailureStatuses,
		Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{
			ConsecutiveFailures: b.ConsecutiveFailures, FailureRate: b.FailureRate, MinCalls: b.MinCalls,
			WindowCalls: b.WindowCalls, OpenTimeout: d.parse("breaker.open_timeout", b.OpenTimeout),
			MaxOpenTimeout: d.parse("breaker.max_open_timeout", b.MaxOpenTimeout), HalfOpenProbes: b.HalfOpenProbes,
		}},
	}
	c.Bulkhead = ambassador.BulkheadConfig{MaxConcurrent: fc.Bulkhead.MaxConcurrent, MaxWait: d.parse("bulkhead.max_wait", fc.Bulkhead.MaxWait)}
	c.Hedge = ambassador.HedgeConfig{Delay: d.parse("hedge.delay", fc.Hedge.Delay), MaxHedges: fc.Hedge.MaxHedges}
	c.Pool = ambassador.PoolConfig{
		MaxIdleConns: fc.Pool.MaxIdleConns, MaxIdleConnsPerHost: fc.Pool.MaxIdleConnsPerHost,
		MaxConnsPerHost: fc.Pool.MaxConnsPerHost, IdleConnTimeout: d.parse("pool.idle_conn_timeout", fc.Pool.IdleConnTimeout),
		DialTimeout: d.parse("pool.dial_timeout", fc.Pool.DialTimeout),
	}
	s.proxy = ambassador.ProxyConfig{Client: c, MaxBodyBytes: fc.MaxBodyBytes}
	if len(fc.Routes) == 0 {
		return nil, &fieldError{Field: "routes", Reason: "must have at least one route (or use -upstream)"}
	}
	for i, rc := range fc.Routes {
		s.proxy.Routes = append(s.proxy.Routes, ambassador.Route{
			Name: rc.Name, Host: rc.Host, PathPrefix: rc.PathPrefix, Upstream: rc.Upstream, StripPrefix: rc.StripPrefix,
			Timeout: d.parse("routes["+strconv.Itoa(i)+"].timeout", rc.Timeout),
		})
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

// configError turns an error of the ambassador or circuitbreaker package
// into one naming the JSON field.
func configError(err error) error {
	var (
		ae *ambassador.ConfigError
		ce *circuitbreaker.ConfigError
	)
	switch {
	case errors.As(err, &ae):
		return &fieldError{Field: snakePath(strings.TrimPrefix(ae.Field, "Client.")), Reason: ae.Reason}
	case errors.As(err, &ce):
		return &fieldError{Field: "breaker." + snakePath(ce.Field), Reason: ce.Reason}
	}
	return err
}

// snakePath turns "Routes[1].PathPrefix" into "routes[1].path_prefix".
func snakePath(p string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range p {
		if unicode.IsUpper(r) {
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
			continue
		}
		b.WriteRune(r)
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	return b.String()
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
