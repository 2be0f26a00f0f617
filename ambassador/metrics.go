package ambassador

import (
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

// Metrics receives what a [Transport] observes. [PrometheusMetrics] is a
// ready implementation; write your own to feed another metrics system.
//
// The methods are called synchronously on the goroutine that made the
// attempt or the request, never while the transport holds a lock. They
// must be safe for concurrent use and should return quickly: they sit on
// the request path. The events are passed by value and hold no reference
// to the request, so an implementation may keep them.
type Metrics interface {
	// ObserveAttempt is called after every attempt, including the ones
	// rejected by a breaker or a bulkhead.
	ObserveAttempt(AttemptEvent)
	// ObserveRequest is called once per request, when its response
	// headers (or its error) are returned to the caller.
	ObserveRequest(RequestEvent)
	// ObserveBreaker is called after each state change of a host's
	// breaker.
	ObserveBreaker(BreakerEvent)
}

// Outcome classifies how an attempt or a request ended.
type Outcome uint8

const (
	// OutcomeResponse: the upstream answered; the status says how.
	OutcomeResponse Outcome = iota
	// OutcomeError: the transport failed (connection refused or reset,
	// malformed response, body too large).
	OutcomeError
	// OutcomeTimeout: the attempt or the request ran out of time
	// ([ErrAttemptTimeout], [ErrTimeout] or the context's deadline).
	OutcomeTimeout
	// OutcomeBreakerOpen: the host's breaker rejected the attempt.
	OutcomeBreakerOpen
	// OutcomeBulkheadFull: the host's bulkhead rejected the attempt.
	OutcomeBulkheadFull
	// OutcomeCanceled: the caller cancelled, or a hedge lost the race.
	OutcomeCanceled
)

var outcomeNames = [...]string{"response", "error", "timeout", "breaker_open", "bulkhead_full", "canceled"}

// String returns "response", "error", "timeout", "breaker_open",
// "bulkhead_full" or "canceled".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// AttemptEvent describes one attempt.
type AttemptEvent struct {
	Name   string // [Config.Name]
	Host   string // the upstream's host:port
	Method string // the request's HTTP method
	// Attempt is the attempt's number, from 1; hedged copies share the
	// number of the attempt they hedge.
	Attempt int
	// Hedge is 0 for the attempt itself and k for its k-th hedged copy.
	Hedge   int
	Outcome Outcome // how the attempt ended
	Status  int     // the response status, or 0
	Err     error   // the error, or nil
	// Duration is the time until the response headers or the error.
	Duration time.Duration
	// Retry says whether the transport will retry after this attempt.
	Retry bool
}

// RequestEvent describes one request, all attempts included.
type RequestEvent struct {
	Name    string  // [Config.Name]
	Host    string  // the upstream's host:port
	Method  string  // the request's HTTP method
	Outcome Outcome // how the request ended
	Status  int     // the final status, or 0
	Err     error   // the final error, or nil
	// Attempts counts the attempts made, hedged copies excluded.
	Attempts int
	// Hedges counts the hedged copies sent.
	Hedges int
	// RetryDenied says whether the retry budget refused a retry (or a
	// hedge) that the request would otherwise have made.
	RetryDenied bool
	// Duration is the time until the response headers or the error were
	// returned.
	Duration time.Duration
}

// BreakerEvent describes a state change of a host's circuit breaker.
type BreakerEvent struct {
	Name   string               // [Config.Name]
	Host   string               // the upstream host:port the breaker guards
	From   circuitbreaker.State // the state before the change
	To     circuitbreaker.State // the state after it
	Reason string               // why, as in [circuitbreaker.Transition]
	At     time.Time            // when the breaker changed state
}
