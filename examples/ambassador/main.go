// Command ambassador shows the ambassador sidecar in front of a flaky
// upstream service.
//
// It starts a local upstream that answers normally, then fails with 503
// for a while (-outage), then recovers; and the ambassador Proxy in front
// of it, with retries, a retry budget and a circuit breaker. A plain HTTP
// client, which knows nothing about retries or breakers, calls the
// sidecar every -interval. The program prints each breaker state change as
// it happens, a summary of what the client saw, and the sidecar's
// Prometheus metrics page. It stops on its own once the breaker has closed
// again after the outage.
//
//	go run ./examples/ambassador
//	go run ./examples/ambassador -outage 2s -open 300ms
//
// To run the real sidecar in front of any service instead:
//
//	go run ./ambassador/cmd/ambassador -upstream http://127.0.0.1:9000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/circuitbreaker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ambassador:", err)
		os.Exit(1)
	}
}

// flaky fails with 503 from healthyFor after its start until outage has
// passed and at least minFails requests have failed.
type flaky struct {
	healthyFor, outage time.Duration
	minFails           int64
	start              time.Time
	failed, served     atomic.Int64
	recovered          atomic.Bool
}

func (f *flaky) down() bool {
	since := time.Since(f.start)
	if since < f.healthyFor || f.recovered.Load() {
		return false
	}
	if since < f.healthyFor+f.outage || f.failed.Load() < f.minFails {
		return true
	}
	f.recovered.Store(true)
	return false
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.served.Add(1)
	if f.down() {
		f.failed.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, `{"price": 42, "correlation_id": %q}`+"\n", r.Header.Get("X-Correlation-ID"))
}

// printer prints breaker transitions as they happen and keeps the
// Prometheus metrics.
type printer struct {
	*ambassador.PrometheusMetrics
	mu     sync.Mutex
	w      io.Writer
	start  time.Time
	states []circuitbreaker.State
}

func (p *printer) ObserveBreaker(e ambassador.BreakerEvent) {
	p.PrometheusMetrics.ObserveBreaker(e)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.states = append(p.states, e.To)
	fmt.Fprintf(p.w, "  %6s  breaker %-9s -> %-9s (%s)\n", time.Since(p.start).Round(time.Millisecond), e.From, e.To, e.Reason)
}

func (p *printer) last() circuitbreaker.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.states) == 0 {
		return circuitbreaker.StateClosed
	}
	return p.states[len(p.states)-1]
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("ambassador", flag.ContinueOnError)
	fs.SetOutput(w)
	outage := fs.Duration("outage", 500*time.Millisecond, "how long the upstream fails")
	interval := fs.Duration("interval", 5*time.Millisecond, "time between client calls")
	openTimeout := fs.Duration("open", 100*time.Millisecond, "how long the breaker stays open after a trip")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *outage <= 0 || *interval <= 0 || *openTimeout <= 0 {
		return errors.New("-outage, -interval and -open must be positive")
	}

	// The upstream.
	up := &flaky{healthyFor: 20 * *interval, outage: *outage, minFails: 10, start: time.Now()}
	upL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upSrv := &http.Server{Handler: up, ReadHeaderTimeout: time.Second}
	go func() { _ = upSrv.Serve(upL) }()
	defer upSrv.Close()

	// The sidecar.
	pm, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
	if err != nil {
		return err
	}
	metrics := &printer{PrometheusMetrics: pm, w: w, start: up.start}
	proxy, err := ambassador.NewProxy(ambassador.ProxyConfig{
		Routes: []ambassador.Route{{Name: "prices", PathPrefix: "/prices", Upstream: "http://" + upL.Addr().String()}},
		Client: ambassador.Config{
			Retry: ambassador.RetryConfig{MaxAttempts: 3, BaseDelay: *interval / 2},
			Breaker: ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{
				ConsecutiveFailures: 5, OpenTimeout: *openTimeout,
			}}},
			Metrics: metrics,
		},
	})
	if err != nil {
		return err
	}
	sideL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	side := &http.Server{Handler: proxy, ReadHeaderTimeout: time.Second, IdleTimeout: time.Minute}
	go func() { _ = side.Serve(sideL) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = side.Shutdown(sctx)
		proxy.CloseIdleConnections()
	}()
	fmt.Fprintf(w, "upstream on %s, sidecar on %s; the upstream fails for %v\n", upL.Addr(), sideL.Addr(), *outage)

	// The application: a plain client that knows nothing of retries.
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var calls, ok, fast, failed, after int
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	deadline := time.After(*outage + 30*time.Second)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errors.New("the breaker did not close again in time")
		case <-tick.C:
		}
		calls++
		resp, err := client.Get("http://" + sideL.Addr().String() + "/prices/widget")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			ok++
		case resp.Header.Get("Content-Type") == "application/json":
			var e struct{ Code string }
			_ = json.Unmarshal(body, &e)
			if e.Code == "circuit_open" {
				fast++
			} else {
				failed++
			}
		default:
			failed++ // the upstream's own 503 after the retries
		}
		if up.recovered.Load() && metrics.last() == circuitbreaker.StateClosed {
			after++ // a few calls after the recovery show traffic flowing again
			if after > 20 {
				break
			}
		}
	}

	fmt.Fprintf(w, "\n%d calls: %d succeeded, %d failed at the upstream after retries, %d failed fast (circuit open)\n", calls, ok, failed, fast)
	fmt.Fprintf(w, "the upstream served %d requests, %d of them during the outage; the breaker is %s\n\n",
		up.served.Load(), up.failed.Load(), metrics.last())

	fmt.Fprintln(w, "metrics page (excerpt):")
	var page strings.Builder
	if _, err := pm.WriteTo(&page); err != nil {
		return err
	}
	for line := range strings.Lines(page.String()) {
		if strings.HasPrefix(line, "#") || strings.Contains(line, "_bucket") {
			continue
		}
		fmt.Fprint(w, "  "+strings.Replace(line, upL.Addr().String(), "upstream", 1))
	}
	return nil
}
