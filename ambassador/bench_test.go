package ambassador_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/distkit/distkit/ambassador"
)

// The benchmarks compare the ambassador with a direct call in the same
// run, on loopback, so that the ratios hold on a noisy machine:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./ambassador/
//
// allocs/op counts the server's allocations too (it runs in the same
// process), so the direct client sends the same correlation and trace
// headers the ambassador adds: the difference is the ambassador's own.

func benchServer(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	b.Cleanup(srv.Close)
	return srv
}

func directClient(b *testing.B) *http.Client {
	ht, err := ambassador.NewHTTPTransport(ambassador.PoolConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ht.CloseIdleConnections)
	return &http.Client{Transport: ht}
}

func doGET(b *testing.B, c *http.Client, req *http.Request) {
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func withTraceHeaders(req *http.Request) *http.Request {
	req.Header.Set("X-Correlation-ID", "0123456789abcdef0123456789abcdef")
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return req
}

func ambassadorClient(b *testing.B, cfg ambassador.Config) *http.Client {
	c, err := ambassador.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	return c
}

// BenchmarkGET is one loopback GET: direct, then through the default
// policy chain (retries, budget, per-host breaker, correlation ID and
// traceparent created), then with every policy on (bulkhead, attempt and
// overall timeouts, Prometheus metrics).
func BenchmarkGET(b *testing.B) {
	srv := benchServer(b)
	pm, _ := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
	cases := []struct {
		name    string
		client  func(*testing.B) *http.Client
		headers bool
	}{
		{"direct", directClient, true},
		{"ambassador", func(b *testing.B) *http.Client { return ambassadorClient(b, ambassador.Config{}) }, false},
		{"ambassador-metrics", func(b *testing.B) *http.Client {
			return ambassadorClient(b, ambassador.Config{Metrics: pm})
		}, false},
		{"ambassador-all", func(b *testing.B) *http.Client {
			return ambassadorClient(b, ambassador.Config{
				Metrics:        pm,
				Bulkhead:       ambassador.BulkheadConfig{MaxConcurrent: 100},
				AttemptTimeout: 10 * time.Second,
				Timeout:        30 * time.Second,
			})
		}, false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := tc.client(b)
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			if tc.headers {
				withTraceHeaders(req)
			}
			doGET(b, c, req) // warm the pool
			b.ReportAllocs()
			for b.Loop() {
				doGET(b, c, req)
			}
		})
	}
}

// BenchmarkGETParallel is BenchmarkGET's first two cases under
// contention.
func BenchmarkGETParallel(b *testing.B) {
	srv := benchServer(b)
	for _, name := range []string{"direct", "ambassador"} {
		b.Run(name, func(b *testing.B) {
			c := directClient(b)
			if name == "ambassador" {
				c = ambassadorClient(b, ambassador.Config{})
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				if name == "direct" {
					withTraceHeaders(req)
				}
				for pb.Next() {
					doGET(b, c, req)
				}
			})
		})
	}
}

// BenchmarkOverheadRatio alternates a direct GET and an ambassador GET in
// one loop, so both see the same machine load, and reports the ratio of
// their median latencies (target: under 1.15).
func BenchmarkOverheadRatio(b *testing.B) {
	srv := benchServer(b)
	direct := directClient(b)
	amb := ambassadorClient(b, ambassador.Config{})
	dreq, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	withTraceHeaders(dreq)
	areq, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	doGET(b, direct, dreq)
	doGET(b, amb, areq)
	var d, a []time.Duration
	for b.Loop() {
		t0 := time.Now()
		doGET(b, direct, dreq)
		t1 := time.Now()
		doGET(b, amb, areq)
		t2 := time.Now()
		d, a = append(d, t1.Sub(t0)), append(a, t2.Sub(t1))
	}
	md, ma := median(d), median(a)
	b.ReportMetric(float64(md.Nanoseconds()), "direct-p50-ns")
	b.ReportMetric(float64(ma.Nanoseconds()), "ambassador-p50-ns")
	b.ReportMetric(float64(ma)/float64(md), "ratio")
}

// BenchmarkProxyLatency alternates a GET straight to the upstream and one
// through the Proxy, and reports the p50 and p90 latency the proxy adds
// (target: p50 under 100us on loopback).
func BenchmarkProxyLatency(b *testing.B) {
	up := benchServer(b)
	px := benchProxy(b, up.URL)
	c := directClient(b)
	dreq, _ := http.NewRequest(http.MethodGet, up.URL+"/x", nil)
	withTraceHeaders(dreq)
	preq, _ := http.NewRequest(http.MethodGet, px.URL+"/x", nil)
	withTraceHeaders(preq)
	doGET(b, c, dreq)
	doGET(b, c, preq)
	var d, v []time.Duration
	for b.Loop() {
		t0 := time.Now()
		doGET(b, c, dreq)
		t1 := time.Now()
		doGET(b, c, preq)
		t2 := time.Now()
		d, v = append(d, t1.Sub(t0)), append(v, t2.Sub(t1))
	}
	b.ReportMetric(float64(median(d).Nanoseconds()), "direct-p50-ns")
	b.ReportMetric(float64(median(v).Nanoseconds()), "proxied-p50-ns")
	b.ReportMetric(float64((median(v) - median(d)).Nanoseconds()), "added-p50-ns")
	b.ReportMetric(float64((quantile(v, 0.9) - quantile(d, 0.9)).Nanoseconds()), "added-p90-ns")
}

// BenchmarkProxy is one GET through the proxy, for its allocations per
// request (client, proxy and upstream together; compare with
// BenchmarkGET/direct).
func BenchmarkProxy(b *testing.B) {
	up := benchServer(b)
	px := benchProxy(b, up.URL)
	c := directClient(b)
	req, _ := http.NewRequest(http.MethodGet, px.URL+"/x", nil)
	withTraceHeaders(req)
	doGET(b, c, req)
	b.ReportAllocs()
	for b.Loop() {
		doGET(b, c, req)
	}
}

// BenchmarkPolicies is the policy chain alone, over an in-memory
// transport that answers at once: the cost of the ambassador itself.
func BenchmarkPolicies(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })
	pm, _ := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
	for _, tc := range []struct {
		name string
		cfg  ambassador.Config
	}{
		{"default", ambassador.Config{Transport: base}},
		{"metrics", ambassador.Config{Transport: base, Metrics: pm}},
		{"no-headers", ambassador.Config{Transport: base, DisableCorrelationID: true, DisableTraceParent: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tr := newTransport(b, tc.cfg)
			req, _ := http.NewRequest(http.MethodGet, "http://upstream/", nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tr.RoundTrip(req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// benchProxy serves a Proxy with one route to upstream, default policies.
func benchProxy(b *testing.B, upstream string) *httptest.Server {
	p, err := ambassador.NewProxy(ambassador.ProxyConfig{Routes: []ambassador.Route{{Upstream: upstream}}})
	if err != nil {
		b.Fatal(err)
	}
	px := httptest.NewServer(p)
	b.Cleanup(func() { px.Close(); p.CloseIdleConnections() })
	return px
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}
