// Package ambassador implements the Ambassador pattern: a helper placed
// beside an application that owns its outbound connectivity (retries,
// timeouts, circuit breaking, connection pooling, logging, metrics and
// tracing headers), so that application code stays simple and the
// connectivity logic lives in one place that is easy to change.
//
// It has two faces built from the same parts:
//
//   - In-process, for Go services: [Transport], an [http.RoundTripper], and
//     [NewClient], an [http.Client] that uses one. Every request made
//     through it gets the policies below.
//   - Out of process, for any language: [Proxy], an [http.Handler] that
//     forwards requests to configured upstreams through a Transport, and
//     the sidecar program ambassador/cmd/ambassador that serves it with a
//     JSON config, /healthz, /readyz, /metrics and graceful shutdown. An
//     application points its HTTP client at the sidecar on localhost.
//
// Use it for calls to dependencies that can fail or slow down for a while:
// other services, third-party APIs. It does not replace a service mesh's
// mTLS or service discovery, and retries are only safe for requests that
// can be repeated: see Idempotency below.
//
// # Policies
//
// A request passes through these policies, outermost first; each is
// configured by its own part of [Config] and can be used alone by turning
// the others off:
//
//   - Correlation and tracing. A correlation ID header
//     ([Config.CorrelationHeader], "X-Correlation-ID") is kept if the
//     request has one, else taken from the context ([WithCorrelationID]) or
//     created (128 random bits in hex). A valid W3C traceparent passes
//     through unchanged, with its tracestate; a request without one gets a
//     new sampled trace, so traces cross the ambassador.
//   - Retries ([RetryConfig]): up to 3 attempts by default, on connection
//     errors, attempt timeouts and statuses 429, 502, 503 and 504, after a
//     backoff with full jitter: before retry n, a delay drawn uniformly from
//     [0, min(MaxDelay, BaseDelay*2^(n-1))), 50ms and 2s by default. A
//     Retry-After header, in seconds or as an HTTP date, replaces the
//     backoff; one longer than MaxRetryAfter (10s) ends the retries and
//     goes back to the caller rather than being waited for or cut short. A
//     wait that would pass the context's deadline is not started. When
//     retries run out, the caller gets the last response as it is.
//   - Retry budget ([BudgetConfig], [Budget]): over the last 10s, retries
//     and hedges may be at most 20% of requests plus 10 per second. An
//     attempt limit alone still multiplies the load of a failing upstream
//     by the number of attempts; the budget keeps it near 1.2x.
//   - Overall timeout ([Config.Timeout]): bounds the time to the response
//     headers across all attempts and waits, on top of the context's
//     deadline.
//   - Hedging ([HedgeConfig], off by default): when an idempotent request
//     has had no response for Delay, a copy is sent; the first good
//     response wins and the others are cancelled. Hedges spend the budget.
//   - Bulkhead ([BulkheadConfig], [Bulkhead], off by default): at most
//     MaxConcurrent requests in flight per host, from sending until the
//     response body is closed or read to its end; others wait up to MaxWait
//     and fail with [ErrBulkheadFull].
//   - Circuit breaker ([BreakerConfig]): one breaker per host:port from a
//     [circuitbreaker.Group]; by default it opens after 5 consecutive
//     failures (connection errors, timeouts, 500, 502, 503, 504) and stays
//     open 30s. An open breaker fails attempts fast with a
//     [*circuitbreaker.RejectedError] that wraps [circuitbreaker.ErrOpen]
//     and says when to retry; the transport does not retry into it. A
//     caller cancelling its request never counts against a host.
//   - Attempt timeout ([Config.AttemptTimeout], off by default): bounds
//     each attempt until its response headers; a slow attempt is abandoned
//     with [ErrAttemptTimeout] and retried.
//   - Connection pool ([PoolConfig], [NewHTTPTransport]): an [http.Transport]
//     that keeps 128 idle connections per host instead of Go's 2, with
//     dial, TLS and idle timeouts set.
//
// Timeouts and breakers judge a response by its headers: once the headers
// are returned, reading the body is bounded only by the request's context,
// so streams and large downloads are never cut by an attempt timeout, and
// a response is never retried after it has been handed to the caller.
//
// # Idempotency
//
// Retrying a request that changed something can change it twice, so by
// default only the idempotent methods of RFC 9110 (GET, HEAD, OPTIONS,
// TRACE, PUT, DELETE) are retried and hedged, plus any request that
// carries an Idempotency-Key header ([RetryConfig.Methods],
// [RetryConfig.IdempotencyHeaders]). Other requests are retried only when
// the connection was refused, which proves nothing was sent. (Unlike
// go-retryablehttp and failsafe-go, which retry POST by default.)
//
// A body is replayed through the request's GetBody, which
// [http.NewRequest] sets for in-memory bodies; another body is buffered,
// up to [RetryConfig.MaxBodyBytes] (64 KiB, as in Linkerd), before the
// first attempt. A longer body is streamed once and its request is not
// retried, rather than buffered without bound.
//
// # Observability
//
// [Config.Logger] gets one [log/slog] record per request and one per
// retried or hedged attempt, with the method, host, path, status, attempt,
// duration, breaker state and correlation ID, and one per breaker
// transition. [Config.Metrics] gets every attempt, request and breaker
// transition through the [Metrics] interface; [PrometheusMetrics]
// implements it and serves the Prometheus text format without the
// Prometheus library.
//
// # The sidecar
//
// [Proxy] forwards by route (path prefix and host) to configured upstreams
// only: it is never an open proxy. It strips hop-by-hop headers, sets
// X-Forwarded-For, -Host and -Proto, limits request bodies (413), and
// streams bodies both ways without buffering them whole (a request body
// up to 64 KiB is buffered for replay when it may be retried). Protocol
// upgrades such as WebSocket are proxied. Requests it cannot forward get a
// JSON error: 404 for no route, 503 with Retry-After for an open breaker
// or a full bulkhead, 504 for a timeout, 502 for other upstream failures.
// Run it as a program:
//
//	go install github.com/distkit/distkit/ambassador/cmd/ambassador@latest
//	ambassador -upstream http://127.0.0.1:9000 -listen 127.0.0.1:8080
//
// # Performance
//
// On the default configuration a request costs at most three allocations
// beyond the bare [http.Transport] (the request copy with its state, and
// the header map that carries the added correlation ID and traceparent;
// BenchmarkGET counts one more allocs/op, and about 650 more bytes, than a
// direct call that sends the same headers), takes no lock on the hot path
// (the breaker and the budget use atomics) and starts no goroutine; hedged
// copies run on their timer's goroutine. Attempt and overall timeouts add
// a context and a timer each: with the bulkhead, both timeouts and metrics
// on, BenchmarkGET counts 16 more allocs/op than the direct call. The
// package benchmarks compare a loopback GET with a direct [http.Client]
// call, and the proxy with a direct call, in the same run.
//
// # Usage
//
//	metrics, _ := ambassador.NewPrometheusMetrics(ambassador.PrometheusConfig{})
//	client, err := ambassador.NewClient(ambassador.Config{
//		Name:           "payments",
//		Retry:          ambassador.RetryConfig{MaxAttempts: 4},
//		AttemptTimeout: 2 * time.Second,
//		Logger:         slog.Default(),
//		Metrics:        metrics,
//	})
//	if err != nil {
//		return err
//	}
//	http.Handle("/metrics", metrics)
//	resp, err := client.Do(req.WithContext(ambassador.WithCorrelationID(ctx, orderID)))
//	if errors.Is(err, circuitbreaker.ErrOpen) {
//		// the payments host is down: fail fast, serve a fallback
//	}
//
// To tune it, start from the upstream's latency and error profile: set
// AttemptTimeout above its p99, Hedge.Delay near its p95, the breaker's
// thresholds above its normal error rate, the budget's Ratio to the extra
// load the upstream can take when it struggles, and give each request a
// context deadline your caller can live with.
package ambassador
