package ambassador

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

// Config configures a [Transport]. The zero value is a transport that
// retries idempotent requests up to 3 attempts with jittered exponential
// backoff under a retry budget, keeps a circuit breaker per host, sends a
// correlation ID and a W3C traceparent with every request, and pools
// connections in a tuned [http.Transport]. Every field's zero value means
// the default written beside it; New rejects negative durations and counts
// with a [*ConfigError].
//
// Each policy can be used on its own: turn the others off (Retry.MaxAttempts
// 1, Budget.Disable, Breaker.Disable, DisableCorrelationID,
// DisableTraceParent) and the transport does only what is left.
type Config struct {
	// Name identifies the transport in logs and metrics (the proxy names
	// each route's transport after the route). Empty is allowed.
	Name string

	// Transport sends each attempt. Nil means an [http.Transport] built
	// from Pool by [NewHTTPTransport]; when Transport is set, Pool must be
	// zero.
	Transport http.RoundTripper

	// Pool tunes the connection pool of the transport built when
	// Transport is nil.
	Pool PoolConfig

	// Retry says which requests are retried, on what, and how long to
	// wait between attempts.
	Retry RetryConfig

	// Budget caps retries and hedges to a fraction of recent requests.
	Budget BudgetConfig

	// Breaker keeps a circuit breaker per upstream host.
	Breaker BreakerConfig

	// Bulkhead limits the requests in flight per host. Off by default.
	Bulkhead BulkheadConfig

	// Hedge sends extra copies of slow idempotent requests. Off by
	// default.
	Hedge HedgeConfig

	// AttemptTimeout bounds each attempt, from the moment it is sent
	// until its response headers arrive; an attempt that takes longer is
	// abandoned with [ErrAttemptTimeout] and may be retried. Reading the
	// body is bounded only by the request's context. Zero means no bound
	// per attempt.
	AttemptTimeout time.Duration

	// Timeout bounds the whole request until its response headers arrive:
	// every attempt, backoff and hedge. When it passes, the request fails
	// with [ErrTimeout]. The request's context deadline applies as well,
	// and also covers reading the body. Zero means no bound beyond the
	// context.
	Timeout time.Duration

	// CorrelationHeader is the header that carries the correlation ID.
	// Empty means "X-Correlation-ID".
	CorrelationHeader string

	// DisableCorrelationID stops the transport from adding a correlation
	// ID. By default a request without the header gets the context's ID
	// ([WithCorrelationID]) or, failing that, a new random one.
	DisableCorrelationID bool

	// DisableTraceParent stops the transport from starting a W3C trace.
	// By default a valid traceparent header passes through unchanged and a
	// request without one (or with a malformed one) gets a new one.
	DisableTraceParent bool

	// Logger receives a record per request (Info, or Warn when it failed)
	// and per retried or hedged attempt (Info), with the method, host,
	// path, status, attempt, duration, breaker state and correlation ID.
	// Nil discards.
	Logger *slog.Logger

	// Metrics, if set, is told about every attempt, request and breaker
	// transition; see [Metrics]. [PrometheusMetrics] is ready to use.
	Metrics Metrics
}

// RetryConfig configures retries. The zero value retries idempotent
// requests (and any request that never reached the upstream) up to 3
// attempts, on connection errors and on 429, 502, 503 and 504, after a
// delay drawn uniformly from [0, min(MaxDelay, BaseDelay*2^(n-1))) before
// retry n (full jitter), or after the response's Retry-After when it has one.
type RetryConfig struct {
	// MaxAttempts is the number of attempts, the first included. Zero
	// means 3; 1 turns retries off.
	MaxAttempts int

	// BaseDelay is the backoff before the first retry, before jitter.
	// Zero means 50ms.
	BaseDelay time.Duration

	// MaxDelay caps the backoff before jitter. Zero means 2s.
	MaxDelay time.Duration

	// MaxRetryAfter is the longest Retry-After the transport waits for.
	// A response asking for a longer wait is returned to the caller as
	// is, Retry-After header included, rather than retried early. Zero
	// means 10s.
	MaxRetryAfter time.Duration

	// Statuses are the response codes that are retried. Nil means 429,
	// 502, 503 and 504; an empty, non-nil slice means none.
	Statuses []int

	// Methods are the methods retried on any retryable outcome. Nil
	// means the idempotent methods of RFC 9110: GET, HEAD, OPTIONS,
	// TRACE, PUT and DELETE. Other requests are retried only when they
	// carry one of IdempotencyHeaders, or when the attempt failed before
	// anything was sent (the connection was refused).
	Methods []string

	// IdempotencyHeaders are headers whose presence makes any request
	// retryable. Nil means "Idempotency-Key"; an empty, non-nil slice
	// means none.
	IdempotencyHeaders []string

	// MaxBodyBytes caps the request bodies that are kept for replay. A
	// body with GetBody is replayed through it; one without is buffered,
	// up to this size, before the first attempt. A longer body is sent
	// once and the request is not retried (nor hedged). Zero means 64 KiB.
	MaxBodyBytes int64
}

// BudgetConfig configures the retry budget, which keeps retries from
// multiplying the load on an upstream that is already failing: over the
// last Window, retries and hedges may make up at most Ratio of the
// requests, plus MinPerSecond*Window so that a quiet client can still
// retry. The zero value is Linkerd's default budget: 20% plus 10 per second
// over 10 seconds.
type BudgetConfig struct {
	// Disable turns the budget off: every retry allowed by Retry is made.
	Disable bool

	// Ratio is the share of requests that may be retried. Zero means 0.2.
	Ratio float64

	// MinPerSecond is a floor of retries per second allowed whatever the
	// traffic. Zero means 10; it cannot be turned off, only made small.
	MinPerSecond float64

	// Window is the period over which requests and retries are counted,
	// in ten buckets. Zero means 10s; it must be at least 10ms.
	Window time.Duration
}

// BreakerConfig configures the circuit breakers, one per upstream host
// (host:port), held in a [circuitbreaker.Group]. The zero value uses the
// circuitbreaker defaults: a host's breaker opens after 5 consecutive
// failures and stays open 30s, then lets one probe through.
type BreakerConfig struct {
	// Disable turns circuit breaking off.
	Disable bool

	// Group configures the breakers. Its Breaker.IsFailure, if set,
	// decides which outcomes count as failures: it sees transport errors
	// and a [*StatusError] for responses with FailureStatuses. Its
	// OnStateChange and Logger are called in addition to the transport's
	// own logging and metrics.
	Group circuitbreaker.GroupConfig

	// FailureStatuses are the response codes that count as failures of
	// the host. Nil means 500, 502, 503 and 504; an empty, non-nil slice
	// means none (only transport errors count).
	FailureStatuses []int
}

// BulkheadConfig configures the per-host concurrency limit. The zero value
// is no limit.
type BulkheadConfig struct {
	// MaxConcurrent is the number of requests that may be in flight to
	// one host at once, from sending the request until its response body
	// is closed or read to the end. Zero means no limit.
	MaxConcurrent int

	// MaxWait is how long a request waits for a slot before it fails with
	// [ErrBulkheadFull]. Zero means it does not wait.
	MaxWait time.Duration

	// MaxHosts bounds the number of hosts whose limits are tracked; idle
	// hosts are forgotten first. Zero means 1024.
	MaxHosts int
}

// HedgeConfig configures hedged requests: when an idempotent request with
// a replayable body has had no response for Delay, the transport sends a
// copy, up to MaxHedges copies Delay apart, uses whichever good response
// comes first and cancels the others. Hedges spend the retry budget. The
// zero value is no hedging.
type HedgeConfig struct {
	// Delay is the time after which a copy is sent. Zero disables
	// hedging. Set it near the upstream's p95 latency.
	Delay time.Duration

	// MaxHedges is the number of extra copies. Zero means 1.
	MaxHedges int
}

const (
	defaultMaxAttempts   = 3
	defaultBaseDelay     = 50 * time.Millisecond
	defaultMaxDelay      = 2 * time.Second
	defaultMaxRetryAfter = 10 * time.Second
	defaultMaxBodyBytes  = 64 << 10
	defaultBudgetRatio   = 0.2
	defaultBudgetMin     = 10
	defaultBudgetWindow  = 10 * time.Second
	defaultMaxHosts      = 1024
	defaultCorrelation   = "X-Correlation-ID"
)

var (
	defaultRetryStatuses   = []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	defaultBreakerStatuses = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	defaultMethods         = []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete}
	defaultIdemHeaders     = []string{"Idempotency-Key"}
)

// statusSet is a set of status codes 100..599.
type statusSet [8]uint64

func (s *statusSet) add(code int) { s[(code-100)/64] |= 1 << ((code - 100) % 64) }

func (s *statusSet) has(code int) bool {
	if code < 100 || code > 599 {
		return false
	}
	return s[(code-100)/64]&(1<<((code-100)%64)) != 0
}

func makeStatusSet(field string, codes []int) (statusSet, error) {
	var s statusSet
	for i, c := range codes {
		if c < 100 || c > 599 {
			return s, &ConfigError{Field: field + "[" + strconv.Itoa(i) + "]", Reason: "must be a status code in [100, 599], got " + strconv.Itoa(c)}
		}
		s.add(c)
	}
	return s, nil
}

func negative(field string) error {
	return &ConfigError{Field: field, Reason: "must not be negative"}
}

// settings is a validated Config with defaults applied.
type settings struct {
	maxAttempts   int
	baseDelay     time.Duration
	maxDelay      time.Duration
	maxRetryAfter time.Duration
	retryStatuses statusSet
	methods       []string
	idemHeaders   []string
	maxBody       int64
	failStatuses  statusSet
}

func (c *Config) validate() (*settings, error) {
	s := &settings{}
	r := c.Retry
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Retry.BaseDelay", r.BaseDelay}, {"Retry.MaxDelay", r.MaxDelay}, {"Retry.MaxRetryAfter", r.MaxRetryAfter},
		{"Budget.Window", c.Budget.Window}, {"Bulkhead.MaxWait", c.Bulkhead.MaxWait}, {"Hedge.Delay", c.Hedge.Delay},
		{"AttemptTimeout", c.AttemptTimeout}, {"Timeout", c.Timeout},
	} {
		if d.v < 0 {
			return nil, negative(d.name)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"Retry.MaxAttempts", int64(r.MaxAttempts)}, {"Retry.MaxBodyBytes", r.MaxBodyBytes},
		{"Bulkhead.MaxConcurrent", int64(c.Bulkhead.MaxConcurrent)}, {"Bulkhead.MaxHosts", int64(c.Bulkhead.MaxHosts)},
		{"Hedge.MaxHedges", int64(c.Hedge.MaxHedges)},
	} {
		if n.v < 0 {
			return nil, negative(n.name)
		}
	}
	s.maxAttempts = orDefault(r.MaxAttempts, defaultMaxAttempts)
	s.baseDelay = orDefault(r.BaseDelay, defaultBaseDelay)
	s.maxDelay = orDefault(r.MaxDelay, defaultMaxDelay)
	if r.MaxDelay == 0 && s.baseDelay > s.maxDelay {
		s.maxDelay = s.baseDelay
	}
	if s.maxDelay < s.baseDelay {
		return nil, &ConfigError{Field: "Retry.MaxDelay", Reason: "must not be below Retry.BaseDelay"}
	}
	s.maxRetryAfter = orDefault(r.MaxRetryAfter, defaultMaxRetryAfter)
	s.maxBody = orDefault(r.MaxBodyBytes, defaultMaxBodyBytes)
	var err error
	statuses := r.Statuses
	if statuses == nil {
		statuses = defaultRetryStatuses
	}
	if s.retryStatuses, err = makeStatusSet("Retry.Statuses", statuses); err != nil {
		return nil, err
	}
	fail := c.Breaker.FailureStatuses
	if fail == nil {
		fail = defaultBreakerStatuses
	}
	if s.failStatuses, err = makeStatusSet("Breaker.FailureStatuses", fail); err != nil {
		return nil, err
	}
	s.methods = r.Methods
	if s.methods == nil {
		s.methods = defaultMethods
	}
	for i, m := range s.methods {
		if m == "" || strings.ContainsAny(m, " \t\r\n") {
			return nil, &ConfigError{Field: "Retry.Methods[" + strconv.Itoa(i) + "]", Reason: "must be a method name"}
		}
	}
	s.idemHeaders = r.IdempotencyHeaders
	if s.idemHeaders == nil {
		s.idemHeaders = defaultIdemHeaders
	}
	for i, h := range s.idemHeaders {
		if !validHeaderName(h) {
			return nil, &ConfigError{Field: "Retry.IdempotencyHeaders[" + strconv.Itoa(i) + "]", Reason: "must be a header name"}
		}
	}
	if c.CorrelationHeader != "" && !validHeaderName(c.CorrelationHeader) {
		return nil, &ConfigError{Field: "CorrelationHeader", Reason: "must be a header name"}
	}
	if c.Transport != nil && c.Pool != (PoolConfig{}) {
		return nil, &ConfigError{Field: "Pool", Reason: "must be zero when Transport is set"}
	}
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// validHeaderName reports whether h is a non-empty token (RFC 9110).
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
