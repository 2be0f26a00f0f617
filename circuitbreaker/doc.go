// Package circuitbreaker stops a service from repeatedly calling a
// dependency that is failing, so that the dependency gets room to recover
// and callers fail fast instead of piling up behind timeouts.
//
// A [Breaker] sits between a caller and one dependency and moves between
// three states:
//
//   - Closed: calls go through and their outcomes are counted. When a trip
//     policy says the dependency is broken, the breaker opens.
//   - Open: calls are rejected at once with [ErrOpen], without touching
//     the dependency, for [Config.OpenTimeout] (growing with exponential
//     backoff on repeated trips if [Config.MaxOpenTimeout] is set).
//   - Half-open: once the open period is over, up to
//     [Config.HalfOpenProbes] calls at a time go through as probes; the
//     rest get [ErrTooManyProbes], so a recovering dependency never meets
//     a thundering herd. [Config.SuccessThreshold] successful probes close
//     the breaker; one failed probe reopens it.
//
// Use a breaker around calls that can fail for a while as a whole (a
// remote service, a database, a third-party API) and where failing fast is
// better than waiting: it caps the latency and the resources a broken
// dependency can take from you. Do not use it for errors that are about
// the request rather than the dependency (validation, not found): classify
// those as non-failures with [Config.IsFailure]. Combine it with timeouts
// at every layer, a fallback, and retries with backoff: retries outside the
// breaker make every attempt count and should stop at [ErrOpen]; retries
// inside the guarded call count once, however many attempts they made.
//
// # Trip policies
//
// Any enabled policy can trip the breaker; the zero [Config] uses the
// first:
//
//   - Consecutive failures ([Config.ConsecutiveFailures], default 5): the
//     simplest and the quickest to react to a hard outage, but blind to a
//     dependency that fails half of the time.
//   - Failure rate ([Config.FailureRate]) over a sliding window, with a
//     minimum number of calls ([Config.MinCalls]) so that two calls out
//     of two failing do not trip it. The window is either the last N calls
//     ([Config.WindowCalls], default 100), which suits steady traffic, or
//     the last T ([Config.WindowDuration], in [Config.WindowBuckets]
//     buckets), which forgets old failures even when traffic stops.
//   - Slow-call rate ([Config.SlowCallRate]): calls that take
//     [Config.SlowCallDuration] or longer count as slow, failed or not;
//     this catches a dependency that degrades into slowness before it
//     errors, which is when it hurts most.
//
// A rate policy is evaluated when a failure or a slow call is recorded: a
// successful call never trips the breaker. Rates compare as
// failures*1e6 >= round(rate*1e6)*calls, so a rate of 0.5 trips at exactly
// half.
//
// # Calls
//
// [Breaker.Do] and the generic [Call] wrap a function; [Fallback] adds a
// function that answers when the call fails or is rejected;
// [Breaker.Allow] is the two-step form for calls that cannot be wrapped
// (middleware, streams): it returns a done func to call with the outcome.
// A panic in a wrapped call counts as a failure and continues up the
// stack. By default ([DefaultIsFailure]) every error is a failure except
// [context.Canceled], since a caller giving up says nothing about the
// dependency, while [context.DeadlineExceeded] is one; a call whose
// context is already done is not made at all. Rejections are
// [*RejectedError] values that wrap [ErrOpen] or [ErrTooManyProbes] and
// carry [RejectedError.RetryAt], the time the breaker may admit a call
// again.
//
// Every probe permit is released on every path: return, error, panic,
// cancellation, and a two-step done never called, which counts as a failed
// probe once [Config.ProbeTimeout] has passed. A breaker cannot stay stuck
// half-open.
//
// # Observability
//
// [Breaker.State] and [Breaker.Snapshot] report the state, the window's
// counts and rates, the trips and the rejections. They apply transitions
// that are due, so an open breaker reports half-open as soon as its open
// period is over, with no traffic and no background goroutine.
// [Config.OnStateChange] and [Config.Logger] see every transition in
// order, with its reason; they are never called under a lock and may call
// back into the breaker, even to change its state. [Breaker.ForceOpen],
// [Breaker.ForceClosed] and [Breaker.Reset] are the manual controls.
//
// # Groups and shared state
//
// A [Group] holds one breaker per key (an upstream host, a tenant, an
// endpoint), created on first use from one config, bounded in number, with
// idle breakers evicted.
//
// A [Store] shares trips among the instances of a service: when one opens
// its breaker, the others adopt the open state within a
// [Config.SyncInterval]. The sharing runs in [Breaker.Run] or [Group.Run]
// and never on the call path: no store round trip per call, no lock held
// across a call. [MemoryStore] is the reference implementation and
// package circuitbreakertest the suite other stores must pass; see
// [Store] for the consistency guarantees.
//
// # Performance
//
// A Breaker is lock-free: its state is an immutable record replaced by
// compare-and-swap, and its counters are atomics laid out to avoid false
// sharing. In the closed state a successful call costs one atomic add
// beside the call itself, with no allocation, no lock and no clock read;
// the open state rejects a call with an atomic add and a few loads.
// Policies that need the time (time windows, slow calls, the end of the
// open period) read a coarse clock, one atomic load, refreshed by a timer
// while the breaker is in use and stopped when it is idle (a time window
// also takes a mutex once per bucket width, to advance); it follows the
// real clock to within a resolution of max(1ms, min(OpenTimeout/64,
// bucket width/4, SlowCallDuration/16)), capped at 100ms. The end of the
// open period is nonetheless exact: near it, the breaker reads the real
// clock. The package benchmarks compare each path with a bare atomic
// increment and with a mutex-and-time.Now breaker in the same run.
//
// # Testing with fake time
//
// The package uses the time package directly, so breakers work inside
// testing/synctest bubbles on fake time. Because slow calls and time
// windows use the coarse clock, a test that advances time exactly to a
// boundary should call synctest.Wait before the next call, to let the
// clock's tick at that instant run. A Breaker must not be shared between
// bubbles.
//
// # Usage
//
//	b, err := circuitbreaker.New(circuitbreaker.Config{
//		Name:        "payments",
//		FailureRate: 0.5,              // trip at 50% failures...
//		WindowCalls: 50,               // ...of the last 50 calls...
//		MinCalls:    20,               // ...once there are 20
//		OpenTimeout: 10 * time.Second, // then reject for 10s
//	})
//	if err != nil {
//		return err
//	}
//	resp, err := circuitbreaker.Call(ctx, b, func(ctx context.Context) (*http.Response, error) {
//		return client.Do(req.WithContext(ctx))
//	})
//	if errors.Is(err, circuitbreaker.ErrOpen) {
//		// fail fast: serve a cached answer, or tell the caller to retry later
//	}
//
// To tune a breaker, start from the dependency's normal error rate and
// latency: set FailureRate well above the normal rate, MinCalls high
// enough that a handful of errors cannot trip it at low traffic,
// SlowCallDuration above the normal p99 latency and below your own
// timeout, and OpenTimeout near the time the dependency takes to recover
// (with MaxOpenTimeout for dependencies whose recovery time varies).
package circuitbreaker
