package ambassador_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/circuitbreaker"
)

// A client whose transport retries an upstream that fails twice.
func ExampleNewClient() {
	var calls atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer upstream.Close()

	client, err := ambassador.NewClient(ambassador.Config{
		Retry: ambassador.RetryConfig{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond},
	})
	if err != nil {
		panic(err)
	}
	resp, err := client.Get(upstream.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", calls.Load(), "attempts")
	// Output: 200 hello after 3 attempts
}

// When an upstream host keeps failing, its breaker opens and requests to
// it fail fast with circuitbreaker.ErrOpen until the open period ends.
func ExampleTransport_breaker() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer upstream.Close()

	client, _ := ambassador.NewClient(ambassador.Config{
		Breaker: ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{
			Breaker: circuitbreaker.Config{ConsecutiveFailures: 2, OpenTimeout: time.Minute},
		}},
	})
	for range 3 {
		resp, err := client.Get(upstream.URL)
		switch {
		case errors.Is(err, circuitbreaker.ErrOpen):
			fmt.Println("failed fast: breaker open")
		case err != nil:
			fmt.Println("error:", err)
		default:
			resp.Body.Close()
			fmt.Println("status", resp.StatusCode)
		}
	}
	// Output:
	// status 500
	// status 500
	// failed fast: breaker open
}

// A sidecar proxy in front of an upstream: routes, and the JSON error for
// a path with no route.
func ExampleNewProxy() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "users service got %s", r.URL.Path)
	}))
	defer upstream.Close()

	proxy, err := ambassador.NewProxy(ambassador.ProxyConfig{Routes: []ambassador.Route{
		{Name: "users", PathPrefix: "/users", Upstream: upstream.URL + "/v1", StripPrefix: true},
	}})
	if err != nil {
		panic(err)
	}
	sidecar := httptest.NewServer(proxy)
	defer sidecar.Close()

	for _, path := range []string{"/users/42", "/orders"} {
		resp, err := http.Get(sidecar.URL + path)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var e struct{ Code string }
			_ = json.Unmarshal(body, &e)
			body = []byte(e.Code)
		}
		fmt.Println(resp.StatusCode, string(body))
	}
	// Output:
	// 200 users service got /v1/42
	// 404 route_not_found
}

// Metrics in the Prometheus text format, written by hand, no client
// library needed.
func ExamplePrometheusMetrics() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	metrics, _ := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
	client, _ := ambassador.NewClient(ambassador.Config{Name: "users", Metrics: metrics})
	resp, _ := client.Get(upstream.URL)
	resp.Body.Close()

	var out bytes.Buffer
	_, _ = metrics.WriteTo(&out)
	for line := range strings.Lines(out.String()) {
		if strings.HasPrefix(line, "ambassador_requests_total") {
			fmt.Print(strings.Replace(line, upstream.Listener.Addr().String(), "HOST", 1))
		}
	}
	// Output: ambassador_requests_total{name="users",host="HOST",result="2xx"} 1
}

// A retry budget used on its own, by any retry loop.
func ExampleBudget() {
	budget, _ := ambassador.NewBudget(ambassador.BudgetConfig{Ratio: 0.1, MinPerSecond: 0.1, Window: 10 * time.Second})
	for range 100 {
		budget.Request()
	}
	allowed := 0
	for budget.AllowRetry() {
		allowed++
	}
	fmt.Println(allowed, "retries allowed for 100 requests")
	// Output: 11 retries allowed for 100 requests
}
