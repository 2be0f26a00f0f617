package ambassador

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

// PrometheusConfig configures [PrometheusMetrics].
type PrometheusConfig struct {
	// Namespace prefixes every metric name. Empty means "ambassador".
	Namespace string

	// Buckets are the upper bounds, in seconds, of the request duration
	// histogram. Nil means Prometheus's defaults: 5ms to 10s.
	Buckets []float64
}

var defaultBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// PrometheusMetrics is a [Metrics] that keeps counters and a latency
// histogram per transport name and host, and serves them in the Prometheus
// text exposition format (version 0.0.4) without the Prometheus client
// library. Mount it as the /metrics handler, or call
// [PrometheusMetrics.WriteTo].
//
// It exports, each with the labels name (the [Config.Name]) and host:
//
//	<ns>_requests_total{result}             requests by result
//	<ns>_attempts_total{result}             attempts by result
//	<ns>_retries_total                      retries made
//	<ns>_hedges_total                       hedged copies sent
//	<ns>_retries_denied_total               requests whose retry the budget refused
//	<ns>_failures_total{reason}             requests that failed, by reason
//	<ns>_request_duration_seconds           histogram of time to response headers
//	<ns>_breaker_state                      0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed
//	<ns>_breaker_transitions_total{to}      breaker state changes
//
// A result is a status class ("2xx" ... "5xx") or an [Outcome] other than
// "response" ("error", "timeout", "breaker_open", "bulkhead_full",
// "canceled"); a failure reason is "status" (a 5xx) or one of those
// outcomes. Recording an event takes a lock-free map lookup and a few
// atomic adds, with no allocation once a name and host have been seen.
// Series are never removed, so the number of hosts a transport talks to
// bounds the memory used. A PrometheusMetrics is safe for concurrent use.
type PrometheusMetrics struct {
	ns      string
	buckets []float64
	nanos   []int64 // bucket bounds in nanoseconds

	mu     sync.Mutex // serializes inserts
	series atomic.Pointer[map[seriesKey]*series]
}

var (
	_ Metrics      = (*PrometheusMetrics)(nil)
	_ http.Handler = (*PrometheusMetrics)(nil)
)

type seriesKey struct{ name, host string }

const (
	nResults     = 10 // 1xx..5xx, then the outcomes after OutcomeResponse
	resultStatus = 0  // failure reason index for a 5xx
)

var resultNames = [nResults]string{"1xx", "2xx", "3xx", "4xx", "5xx", "error", "timeout", "breaker_open", "bulkhead_full", "canceled"}

// reasonNames index failures: "status", then the outcomes.
var reasonNames = [6]string{"status", "error", "timeout", "breaker_open", "bulkhead_full", "canceled"}

type series struct {
	requests    [nResults]atomic.Uint64
	attempts    [nResults]atomic.Uint64
	failures    [len(reasonNames)]atomic.Uint64
	retries     atomic.Uint64
	hedges      atomic.Uint64
	denied      atomic.Uint64
	hist        []atomic.Uint64 // one per bucket, then +Inf; not cumulative
	sumNanos    atomic.Int64
	hasBreaker  atomic.Bool
	state       atomic.Int32
	transitions [5]atomic.Uint64 // by state reached
}

// NewPrometheusMetrics returns an empty PrometheusMetrics, or a
// [*ConfigError] if the buckets are not positive and strictly increasing
// or the namespace is not a valid metric name prefix.
func NewPrometheusMetrics(cfg PrometheusConfig) (*PrometheusMetrics, error) {
	ns := orDefault(cfg.Namespace, "ambassador")
	if !validMetricName(ns) {
		return nil, &ConfigError{Field: "Namespace", Reason: "must match [a-zA-Z_:][a-zA-Z0-9_:]*"}
	}
	b := cfg.Buckets
	if b == nil {
		b = defaultBuckets
	}
	nanos := make([]int64, len(b))
	for i, v := range b {
		if !(v > 0) || math.IsInf(v, 1) || (i > 0 && v <= b[i-1]) {
			return nil, &ConfigError{Field: "Buckets", Reason: "must be positive, finite and strictly increasing"}
		}
		nanos[i] = int64(v * float64(time.Second))
	}
	m := &PrometheusMetrics{ns: ns, buckets: slices.Clone(b), nanos: nanos}
	empty := map[seriesKey]*series{}
	m.series.Store(&empty)
	return m, nil
}

func validMetricName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

func (m *PrometheusMetrics) get(name, host string) *series {
	if s := (*m.series.Load())[seriesKey{name, host}]; s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.series.Load()
	k := seriesKey{name, host}
	if s := old[k]; s != nil {
		return s
	}
	s := &series{hist: make([]atomic.Uint64, len(m.nanos)+1)}
	next := make(map[seriesKey]*series, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[k] = s
	m.series.Store(&next)
	return s
}

func resultIndex(o Outcome, status int) int {
	if o == OutcomeResponse {
		return min(max(status/100, 1), 5) - 1
	}
	return 4 + int(o)
}

// ObserveAttempt counts the attempt and, if it is retried, the retry.
func (m *PrometheusMetrics) ObserveAttempt(e AttemptEvent) {
	s := m.get(e.Name, e.Host)
	s.attempts[resultIndex(e.Outcome, e.Status)].Add(1)
	if e.Retry {
		s.retries.Add(1)
	}
}

// ObserveRequest counts the request, its failure if any, its hedges and
// denied retry, and records its duration.
func (m *PrometheusMetrics) ObserveRequest(e RequestEvent) {
	s := m.get(e.Name, e.Host)
	s.requests[resultIndex(e.Outcome, e.Status)].Add(1)
	switch {
	case e.Outcome != OutcomeResponse:
		s.failures[e.Outcome].Add(1)
	case e.Status >= 500:
		s.failures[resultStatus].Add(1)
	}
	if e.Hedges > 0 {
		s.hedges.Add(uint64(e.Hedges))
	}
	if e.RetryDenied {
		s.denied.Add(1)
	}
	d := int64(e.Duration)
	i, _ := slices.BinarySearch(m.nanos, d)
	s.hist[i].Add(1)
	s.sumNanos.Add(d)
}

// ObserveBreaker records the breaker's new state and counts the change.
func (m *PrometheusMetrics) ObserveBreaker(e BreakerEvent) {
	s := m.get(e.Name, e.Host)
	s.hasBreaker.Store(true)
	s.state.Store(int32(e.To))
	if int(e.To) < len(s.transitions) {
		s.transitions[e.To].Add(1)
	}
}

// ServeHTTP writes the metrics in the text exposition format.
func (m *PrometheusMetrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = m.WriteTo(w)
}

// WriteTo writes the metrics to w in the text exposition format, series
// sorted by name and host, and returns the bytes written.
func (m *PrometheusMetrics) WriteTo(w io.Writer) (int64, error) {
	all := *m.series.Load()
	keys := make([]seriesKey, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b seriesKey) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.host, b.host)
	})
	var b bytes.Buffer
	p := promWriter{b: &b, ns: m.ns}
	counterByLabel := func(metric, help, label string, names []string, pick func(*series) []atomic.Uint64) {
		p.header(metric, help, "counter")
		for _, k := range keys {
			vals := pick(all[k])
			for i, n := range names {
				if v := vals[i].Load(); v > 0 {
					p.sample(metric, k, label, n, strconv.AppendUint(nil, v, 10))
				}
			}
		}
	}
	counter := func(metric, help string, pick func(*series) *atomic.Uint64) {
		p.header(metric, help, "counter")
		for _, k := range keys {
			p.sample(metric, k, "", "", strconv.AppendUint(nil, pick(all[k]).Load(), 10))
		}
	}
	counterByLabel("requests_total", "Requests by result: a status class or a failure outcome.", "result", resultNames[:],
		func(s *series) []atomic.Uint64 { return s.requests[:] })
	counterByLabel("attempts_total", "Attempts by result, hedged copies included.", "result", resultNames[:],
		func(s *series) []atomic.Uint64 { return s.attempts[:] })
	counter("retries_total", "Retries made.", func(s *series) *atomic.Uint64 { return &s.retries })
	counter("hedges_total", "Hedged copies sent.", func(s *series) *atomic.Uint64 { return &s.hedges })
	counter("retries_denied_total", "Requests whose retry or hedge the retry budget refused.", func(s *series) *atomic.Uint64 { return &s.denied })
	counterByLabel("failures_total", "Requests that failed, by reason: status (a 5xx answer) or a failure outcome.", "reason", reasonNames[:],
		func(s *series) []atomic.Uint64 { return s.failures[:] })

	metric := "request_duration_seconds"
	p.header(metric, "Time from sending a request to returning its response headers or error, all attempts included.", "histogram")
	for _, k := range keys {
		s := all[k]
		var cum uint64
		for i := range s.hist {
			cum += s.hist[i].Load()
			le := "+Inf"
			if i < len(m.buckets) {
				le = strconv.FormatFloat(m.buckets[i], 'g', -1, 64)
			}
			p.sample(metric+"_bucket", k, "le", le, strconv.AppendUint(nil, cum, 10))
		}
		p.sample(metric+"_sum", k, "", "", strconv.AppendFloat(nil, float64(s.sumNanos.Load())/1e9, 'g', -1, 64))
		p.sample(metric+"_count", k, "", "", strconv.AppendUint(nil, cum, 10))
	}

	p.header("breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed.", "gauge")
	for _, k := range keys {
		if s := all[k]; s.hasBreaker.Load() {
			p.sample("breaker_state", k, "", "", strconv.AppendInt(nil, int64(s.state.Load()), 10))
		}
	}
	p.header("breaker_transitions_total", "Circuit breaker state changes, by the state reached.", "counter")
	for _, k := range keys {
		s := all[k]
		for st := range s.transitions {
			if v := s.transitions[st].Load(); v > 0 {
				p.sample("breaker_transitions_total", k, "to", circuitbreaker.State(st).String(), strconv.AppendUint(nil, v, 10))
			}
		}
	}
	return b.WriteTo(w)
}

type promWriter struct {
	b  *bytes.Buffer
	ns string
}

func (p promWriter) header(metric, help, typ string) {
	p.b.WriteString("# HELP " + p.ns + "_" + metric + " ")
	p.b.WriteString(escapeHelp(help))
	p.b.WriteString("\n# TYPE " + p.ns + "_" + metric + " " + typ + "\n")
}

func (p promWriter) sample(metric string, k seriesKey, label, value string, v []byte) {
	p.b.WriteString(p.ns + "_" + metric + `{name="`)
	p.b.WriteString(escapeLabel(k.name))
	p.b.WriteString(`",host="`)
	p.b.WriteString(escapeLabel(k.host))
	p.b.WriteByte('"')
	if label != "" {
		p.b.WriteString("," + label + `="`)
		p.b.WriteString(escapeLabel(value))
		p.b.WriteByte('"')
	}
	p.b.WriteString("} ")
	p.b.Write(v)
	p.b.WriteByte('\n')
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// escapeLabel escapes a label value for the text format: backslash,
// double quote and line feed.
func escapeLabel(s string) string { return labelEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD")) }

func escapeHelp(s string) string { return helpEscaper.Replace(s) }
