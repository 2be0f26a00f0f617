package ambassador_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/circuitbreaker"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition parses the Prometheus text format strictly enough to
// catch what a scraper would reject: every sample belongs to a family
// declared by a TYPE line, label values are properly quoted and escaped,
// values are numbers.
func parseExposition(t testing.TB, text string) []sample {
	t.Helper()
	types := map[string]string{}
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			require.Len(t, f, 2, line)
			require.NotContains(t, types, f[0], "family declared twice")
			types[f[0]] = f[1]
			continue
		}
		open := strings.IndexByte(line, '{')
		require.Positive(t, open, line)
		s := sample{name: line[:open], labels: map[string]string{}}
		i := open + 1
		for line[i] != '}' {
			eq := strings.IndexByte(line[i:], '=')
			require.Positive(t, eq, line)
			key := line[i : i+eq]
			i += eq + 1
			require.Equal(t, byte('"'), line[i], line)
			i++
			var val strings.Builder
			for line[i] != '"' {
				if line[i] == '\\' {
					i++
					switch line[i] {
					case 'n':
						val.WriteByte('\n')
					case '\\', '"':
						val.WriteByte(line[i])
					default:
						t.Fatalf("bad escape in %q", line)
					}
				} else {
					val.WriteByte(line[i])
				}
				i++
			}
			s.labels[key] = val.String()
			i++
			if line[i] == ',' {
				i++
			}
		}
		v, err := strconv.ParseFloat(strings.TrimPrefix(line[i+1:], " "), 64)
		require.NoError(t, err, line)
		s.value = v
		family := s.name
		if _, ok := types[family]; !ok {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(s.name, suf); ok && types[b] == "histogram" {
					family = b
				}
			}
		}
		require.Contains(t, types, family, "sample before its TYPE: %s", line)
		out = append(out, s)
	}
	return out
}

func find(samples []sample, name string, labels ...string) (float64, bool) {
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

func TestPrometheusMetrics(t *testing.T) {
	m, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{Buckets: []float64{0.1, 1}})
	require.NoError(t, err)
	host := "h:80"
	m.ObserveAttempt(ambassador.AttemptEvent{Name: "api", Host: host, Outcome: ambassador.OutcomeResponse, Status: 503, Retry: true})
	m.ObserveAttempt(ambassador.AttemptEvent{Name: "api", Host: host, Outcome: ambassador.OutcomeError, Retry: true})
	m.ObserveAttempt(ambassador.AttemptEvent{Name: "api", Host: host, Outcome: ambassador.OutcomeResponse, Status: 200})
	m.ObserveRequest(ambassador.RequestEvent{Name: "api", Host: host, Outcome: ambassador.OutcomeResponse, Status: 200, Attempts: 3, Duration: 50 * time.Millisecond})
	m.ObserveRequest(ambassador.RequestEvent{Name: "api", Host: host, Outcome: ambassador.OutcomeResponse, Status: 502, Duration: 500 * time.Millisecond, RetryDenied: true, Hedges: 2})
	m.ObserveRequest(ambassador.RequestEvent{Name: "api", Host: host, Outcome: ambassador.OutcomeBreakerOpen, Duration: 2 * time.Second})
	m.ObserveBreaker(ambassador.BreakerEvent{Name: "api", Host: host, To: circuitbreaker.StateOpen})

	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, "text/plain; version=0.0.4; charset=utf-8", rec.Header().Get("Content-Type"))
	s := parseExposition(t, rec.Body.String())
	l := []string{"name", "api", "host", host}
	check := func(want float64, name string, extra ...string) {
		t.Helper()
		v, ok := find(s, name, append(append([]string{}, l...), extra...)...)
		assert.True(t, ok, "%s %v missing", name, extra)
		assert.Equal(t, want, v, "%s %v", name, extra)
	}
	check(1, "ambassador_requests_total", "result", "2xx")
	check(1, "ambassador_requests_total", "result", "5xx")
	check(1, "ambassador_requests_total", "result", "breaker_open")
	check(1, "ambassador_attempts_total", "result", "5xx")
	check(1, "ambassador_attempts_total", "result", "error")
	check(1, "ambassador_attempts_total", "result", "2xx")
	check(2, "ambassador_retries_total")
	check(2, "ambassador_hedges_total")
	check(1, "ambassador_retries_denied_total")
	check(1, "ambassador_failures_total", "reason", "status")
	check(1, "ambassador_failures_total", "reason", "breaker_open")
	check(1, "ambassador_request_duration_seconds_bucket", "le", "0.1")
	check(2, "ambassador_request_duration_seconds_bucket", "le", "1")
	check(3, "ambassador_request_duration_seconds_bucket", "le", "+Inf")
	check(3, "ambassador_request_duration_seconds_count")
	check(2.55, "ambassador_request_duration_seconds_sum")
	check(1, "ambassador_breaker_state")
	check(1, "ambassador_breaker_transitions_total", "to", "open")
}

func TestPrometheusFromATransport(t *testing.T) {
	var a arrivals
	m, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{Namespace: "edge"})
	require.NoError(t, err)
	srv := httptest.NewServer(failing(&a, 2, 503))
	defer srv.Close()
	tr := newTransport(t, fastRetries(ambassador.Config{Name: "users", Metrics: m}))
	defer tr.CloseIdleConnections()
	resp, err := get(t, tr, srv.URL)
	require.NoError(t, err)
	readAll(t, resp)
	var b bytes.Buffer
	_, err = m.WriteTo(&b)
	require.NoError(t, err)
	s := parseExposition(t, b.String())
	host := srv.Listener.Addr().String()
	v, _ := find(s, "edge_attempts_total", "name", "users", "host", host, "result", "5xx")
	assert.Equal(t, 2.0, v)
	v, _ = find(s, "edge_retries_total", "name", "users", "host", host)
	assert.Equal(t, 2.0, v)
	v, _ = find(s, "edge_requests_total", "name", "users", "host", host, "result", "2xx")
	assert.Equal(t, 1.0, v)
}

func TestPrometheusConcurrentUse(t *testing.T) {
	m, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				m.ObserveRequest(ambassador.RequestEvent{Name: "n", Host: fmt.Sprintf("h%d", (g+i)%7), Status: 200, Duration: time.Millisecond})
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			var b bytes.Buffer
			_, _ = m.WriteTo(&b)
			parseExposition(t, b.String())
		}
	})
	wg.Wait()
	var b bytes.Buffer
	_, _ = m.WriteTo(&b)
	total := 0.0
	for _, s := range parseExposition(t, b.String()) {
		if s.name == "ambassador_requests_total" {
			total += s.value
		}
	}
	assert.Equal(t, 2000.0, total)
}

func TestPrometheusConfigErrors(t *testing.T) {
	for _, cfg := range []ambassador.PrometheusConfig{
		{Namespace: "bad-name"},
		{Namespace: "1x"},
		{Buckets: []float64{1, 1}},
		{Buckets: []float64{-1}},
		{Buckets: []float64{2, 1}},
	} {
		_, err := ambassador.NewPrometheusMetrics(cfg)
		assert.ErrorIs(t, err, ambassador.ErrInvalidConfig, "%+v", cfg)
	}
}

// FuzzPrometheusLabels checks that any name and host come back from the
// exposition text unchanged (or, for invalid UTF-8, made valid).
func FuzzPrometheusLabels(f *testing.F) {
	f.Add("api", "127.0.0.1:80")
	f.Add(`we"ird\name`, "line\nbreak")
	f.Add("", `\"`)
	f.Add("\xff", "ok")
	f.Fuzz(func(t *testing.T, name, host string) {
		m, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
		require.NoError(t, err)
		m.ObserveRequest(ambassador.RequestEvent{Name: name, Host: host, Status: 200})
		var b bytes.Buffer
		_, _ = m.WriteTo(&b)
		v, ok := find(parseExposition(t, b.String()), "ambassador_requests_total",
			"name", strings.ToValidUTF8(name, "\uFFFD"), "host", strings.ToValidUTF8(host, "\uFFFD"), "result", "2xx")
		require.True(t, ok, b.String())
		require.Equal(t, 1.0, v)
	})
}
