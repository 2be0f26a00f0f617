// Command circuitbreaker shows a circuit breaker protecting an HTTP client
// from a flaky server.
//
// It starts a local HTTP server that answers normally, then fails with 503
// for a while (for -outage, and for at least 5 requests), then recovers.
// A client calls it every -interval through a circuit breaker that trips
// at a 50% failure rate over the last 10 calls. The program prints every
// state change of the breaker as it happens and, at the end, how many calls
// succeeded, failed, and failed fast without reaching the server. It stops
// on its own once the breaker has closed again after the outage.
//
//	go run ./examples/circuitbreaker
//	go run ./examples/circuitbreaker -outage 2s -open 300ms
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "circuitbreaker:", err)
		os.Exit(1)
	}
}

// flaky is an HTTP handler that fails between start and the moment both
// its outage duration and its minimum number of failed requests are past.
type flaky struct {
	healthyFor time.Duration // before the outage
	outage     time.Duration
	minFails   int64

	start     time.Time
	failed    atomic.Int64
	recovered atomic.Bool
	served    atomic.Int64
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.served.Add(1)
	since := time.Since(f.start)
	if since >= f.healthyFor && !f.recovered.Load() {
		if since < f.healthyFor+f.outage || f.failed.Load() < f.minFails {
			f.failed.Add(1)
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		f.recovered.Store(true)
	}
	fmt.Fprintln(w, `{"price": 42}`)
}

// errStatus is returned for a 5xx answer.
type errStatus int

func (e errStatus) Error() string { return fmt.Sprintf("server answered %d", int(e)) }

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("circuitbreaker", flag.ContinueOnError)
	fs.SetOutput(w)
	outage := fs.Duration("outage", 500*time.Millisecond, "how long the server fails")
	interval := fs.Duration("interval", 5*time.Millisecond, "time between calls")
	openTimeout := fs.Duration("open", 100*time.Millisecond, "how long the breaker stays open after a trip")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *outage <= 0 || *interval <= 0 || *openTimeout <= 0 {
		return errors.New("-outage, -interval and -open must be positive")
	}

	// The flaky server, on a loopback port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	server := &flaky{healthyFor: 100 * time.Millisecond, outage: *outage, minFails: 5, start: time.Now()}
	srv := &http.Server{Handler: server, ReadHeaderTimeout: time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		wg.Wait()
	}()
	url := "http://" + ln.Addr().String() + "/price"
	client := &http.Client{Timeout: time.Second}

	// The breaker. The hook runs on the calling goroutine, after the
	// change, outside any lock of the breaker.
	start := time.Now()
	var out sync.Mutex
	printf := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(w, format, a...)
	}
	b, err := circuitbreaker.New(circuitbreaker.Config{
		Name:           "price-service",
		FailureRate:    0.5,
		WindowCalls:    10,
		MinCalls:       5,
		OpenTimeout:    *openTimeout,
		MaxOpenTimeout: 4 * *openTimeout,
		HalfOpenProbes: 1,
		OnStateChange: func(tr circuitbreaker.Transition) {
			printf("%6s  %-9s -> %-9s  %s\n", tr.At.Sub(start).Round(time.Millisecond), tr.From, tr.To, tr.Reason)
		},
	})
	if err != nil {
		return err
	}

	get := func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode >= 500 {
			return "", errStatus(resp.StatusCode)
		}
		return string(body), nil
	}

	printf("calling %s every %v; the server fails for %v after 100ms\n", url, *interval, *outage)
	var ok, failed, fast, okAfterRecovery int
	deadline := time.After(20**outage + 10*time.Second)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for okAfterRecovery < 20 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("the breaker did not close again after the outage (state %v)", b.State())
		case <-tick.C:
		}
		_, err := circuitbreaker.Call(ctx, b, get)
		switch {
		case err == nil:
			ok++
			if server.recovered.Load() {
				okAfterRecovery++
			}
		case errors.Is(err, circuitbreaker.ErrOpen), errors.Is(err, circuitbreaker.ErrTooManyProbes):
			fast++
		default:
			failed++
		}
	}
	s := b.Snapshot()
	printf("%d calls: %d succeeded, %d failed at the server, %d failed fast without reaching it\n",
		ok+failed+fast, ok, failed, fast)
	printf("the server saw %d requests; the breaker tripped %d times and is %s\n", server.served.Load(), s.Trips, s.State)
	return nil
}
