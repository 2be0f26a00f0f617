// Command ambassador is a sidecar proxy: run it next to an application,
// point the application's HTTP client at it, and every call to the
// configured upstreams gets retries with backoff under a retry budget,
// timeouts, a circuit breaker per upstream host, an optional bulkhead and
// hedging, pooled connections, structured logs, a correlation ID and a W3C
// traceparent, and Prometheus metrics, whatever language the application
// is written in.
//
// Install and run it:
//
//	go install github.com/distkit/distkit/ambassador/cmd/ambassador@latest
//	ambassador -upstream http://127.0.0.1:9000            # one catch-all route
//	ambassador -config ambassador.json                     # routes and policies
//
// It serves the proxy on -listen (default 127.0.0.1:8080) and, on -admin
// (default 127.0.0.1:9901), /healthz (200 while the process runs),
// /readyz (200 while serving, 503 once draining, with each route's
// breaker state) and /metrics (Prometheus text format). On SIGINT or
// SIGTERM it stops accepting connections, reports not ready, lets
// in-flight requests finish within shutdown_timeout, then exits.
//
// The configuration file is JSON; unknown fields and invalid values are
// rejected at start-up with the field and the reason. A minimal one:
//
//	{
//	  "routes": [
//	    {"name": "users", "path_prefix": "/users", "upstream": "http://127.0.0.1:9000"},
//	    {"name": "search", "host": "search.local", "upstream": "http://127.0.0.1:9100"}
//	  ],
//	  "retry": {"max_attempts": 3, "base_delay": "50ms"},
//	  "breaker": {"consecutive_failures": 5, "open_timeout": "30s"},
//	  "timeout": "10s"
//	}
//
// See fileConfig in config.go for every field and its default; flags
// given on the command line override the file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distkit/distkit/ambassador"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stderr, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ambassador:", err)
		os.Exit(1)
	}
}

// loadSettings reads the flags and the config file they name.
func loadSettings(w io.Writer, args []string) (*settings, error) {
	fs := flag.NewFlagSet("ambassador", flag.ContinueOnError)
	fs.SetOutput(w)
	configPath := fs.String("config", "", "JSON configuration file")
	listen := fs.String("listen", "", "proxy listen address (default 127.0.0.1:8080)")
	admin := fs.String("admin", "", "admin listen address for /healthz, /readyz and /metrics (default 127.0.0.1:9901)")
	upstream := fs.String("upstream", "", "forward every request to this URL (adds a catch-all route)")
	level := fs.String("log-level", "", "log level: debug, info, warn or error (default info)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	fc := &fileConfig{}
	if *configPath != "" {
		f, err := os.Open(*configPath)
		if err != nil {
			return nil, err
		}
		fc, err = parseConfig(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", *configPath, err)
		}
	}
	if *listen != "" {
		fc.Listen = *listen
	}
	if *admin != "" {
		fc.AdminListen = *admin
	}
	if *level != "" {
		fc.Log.Level = *level
	}
	if *upstream != "" {
		fc.Routes = append(fc.Routes, routeConfig{Name: "default", Upstream: *upstream})
	}
	s, err := fc.build()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// sidecar is the proxy plus its admin endpoints.
type sidecar struct {
	proxy    *ambassador.Proxy
	metrics  *ambassador.PrometheusMetrics
	draining atomic.Bool
	logger   *slog.Logger
}

// newSidecar builds the proxy and the metrics for s.
func newSidecar(s *settings, logger *slog.Logger) (*sidecar, error) {
	m, err := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
	if err != nil {
		return nil, err
	}
	pc := s.proxy
	pc.Client.Logger, pc.Client.Metrics, pc.Logger = logger, m, logger
	p, err := ambassador.NewProxy(pc)
	if err != nil {
		return nil, configError(err)
	}
	return &sidecar{proxy: p, metrics: m, logger: logger}, nil
}

// admin returns the handler for /healthz, /readyz and /metrics.
func (sc *sidecar) admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		body := struct {
			Ready  bool                     `json:"ready"`
			Routes []ambassador.RouteStatus `json:"routes"`
		}{Ready: !sc.draining.Load(), Routes: sc.proxy.Routes()}
		w.Header().Set("Content-Type", "application/json")
		if !body.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
	mux.Handle("GET /metrics", sc.metrics)
	return mux
}

func run(ctx context.Context, w io.Writer, args []string) error {
	s, err := loadSettings(w, args)
	if err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: s.level}
	var logger *slog.Logger
	if s.jsonLogs {
		logger = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		logger = slog.New(slog.NewTextHandler(w, opts))
	}
	sc, err := newSidecar(s, logger)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	pl, err := lc.Listen(ctx, "tcp", s.listen)
	if err != nil {
		return err
	}
	al, err := lc.Listen(ctx, "tcp", s.admin)
	if err != nil {
		pl.Close()
		return err
	}
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	proxySrv := &http.Server{
		Handler:           sc.proxy,
		ReadHeaderTimeout: s.readHeaderTimeout,
		ReadTimeout:       s.readTimeout,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    s.maxHeaderBytes,
		ErrorLog:          errorLog,
	}
	adminSrv := &http.Server{
		Handler:           sc.admin(),
		ReadHeaderTimeout: s.readHeaderTimeout,
		IdleTimeout:       s.idleTimeout,
		ErrorLog:          errorLog,
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- proxySrv.Serve(pl) }()
	go func() { serveErr <- adminSrv.Serve(al) }()
	logger.Info("ambassador: listening", slog.String("proxy", pl.Addr().String()), slog.String("admin", al.Addr().String()),
		slog.Int("routes", len(s.proxy.Routes)))

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-serveErr:
	}

	// Drain: report not ready, stop accepting, let in-flight requests
	// finish within the shutdown timeout.
	sc.draining.Store(true)
	logger.Info("ambassador: shutting down", slog.Duration("timeout", s.shutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	start := time.Now()
	err = proxySrv.Shutdown(sctx)
	if err != nil {
		proxySrv.Close()
		err = fmt.Errorf("in-flight requests did not finish within %v: %w", s.shutdownTimeout, err)
	}
	_ = adminSrv.Shutdown(sctx)
	adminSrv.Close()
	sc.proxy.CloseIdleConnections()
	// Both Serve calls have returned (ErrServerClosed, or the failure).
	for range 2 - btoi(failed != nil) {
		<-serveErr
	}
	logger.Info("ambassador: stopped", slog.Duration("drained_in", time.Since(start).Round(time.Millisecond)))
	if failed != nil && !errors.Is(failed, http.ErrServerClosed) {
		return errors.Join(failed, err)
	}
	return err
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
