package pubsub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"
)

// Recover returns middleware that turns a handler's panic into a
// [*PanicError] holding the panic value and stack. The panic is not
// swallowed: the message is redelivered like any failure and, when its
// attempts run out, reaches the dead-letter topic with the panic in its
// headers; a [Router] also logs it. Without Recover a panicking handler
// crashes the process, as in any goroutine.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return next(ctx, m)
		}
	}
}

// Timeout returns middleware that cancels the handler's context after d.
// A handler that then returns the context's error gets the message
// redelivered on the subscription's schedule. A non-positive d disables
// the timeout.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		if d <= 0 {
			return next
		}
		return func(ctx context.Context, m *Message) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, m)
		}
	}
}

// RetryConfig configures the [Retry] middleware. Zero (or negative)
// fields mean the defaults.
type RetryConfig struct {
	// MaxAttempts is the number of calls per delivery, the first
	// included (default 3).
	MaxAttempts int
	// InitialInterval is the wait before the second call (default 100ms).
	InitialInterval time.Duration
	// MaxInterval caps the wait between calls (default 10s).
	MaxInterval time.Duration
	// Multiplier grows the wait after each call (default 2).
	Multiplier float64
	// Jitter randomizes each wait by up to ±Jitter of itself, in [0, 1]
	// (default 0: no jitter), so that many consumers retrying together
	// spread out.
	Jitter float64
}

// Retry returns middleware that calls the handler again, in the same
// delivery, after a failure: up to MaxAttempts calls with exponential
// backoff between them. Permanent errors ([Permanent]) are not retried,
// and the wait ends early when the context does, returning the last
// error. What Retry cannot fix goes back to the broker, whose redelivery
// schedule and dead-letter topic take over; Retry suits brief glitches
// that are cheaper to retry in place than to redeliver.
func Retry(cfg RetryConfig) Middleware {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.InitialInterval <= 0 {
		cfg.InitialInterval = 100 * time.Millisecond
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = 10 * time.Second
	}
	if cfg.Multiplier <= 0 {
		cfg.Multiplier = 2
	}
	cfg.Jitter = min(max(cfg.Jitter, 0), 1)
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			wait := cfg.InitialInterval
			for attempt := 1; ; attempt++ {
				err := next(ctx, m)
				if err == nil || attempt >= cfg.MaxAttempts || errors.Is(err, ErrPermanent) {
					return err
				}
				d := wait
				if cfg.Jitter > 0 {
					d = time.Duration(float64(d) * (1 + cfg.Jitter*(2*rand.Float64()-1)))
				}
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return err
				}
				wait = min(time.Duration(float64(wait)*cfg.Multiplier), cfg.MaxInterval)
			}
		}
	}
}

// Correlation returns middleware that gives every handled message a
// correlation ID: when the message carries none, its own ID becomes the
// correlation ID of the handler's context, so everything the handler
// publishes is correlated with it. Messages that carry one keep it
// without this middleware too.
func Correlation() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			if CorrelationID(ctx) == "" {
				ctx = ContextWithCorrelationID(ctx, m.ID)
			}
			return next(ctx, m)
		}
	}
}

// Breaker is the circuit breaker used by the [CircuitBreaker] middleware,
// in the two-step form of sony/gobreaker: Allow asks whether a call may
// proceed and, if so, returns done, which must be called once with the
// call's outcome. A *circuitbreaker.Breaker from this module satisfies it.
type Breaker interface {
	// Allow returns done, to be called once with the call's outcome,
	// or an error (and no done) if the call may not proceed.
	Allow() (done func(err error), err error)
}

// CircuitBreaker returns middleware that guards the handler with b: while
// b refuses calls, messages are not handled but nacked with b's error, so
// they are redelivered on the subscription's backoff schedule (and count
// as delivery attempts). Handler errors are reported to b, except
// permanent ones ([Permanent]), which are the message's fault rather than
// the downstream's. A panic is reported to b as a failure and re-raised.
func CircuitBreaker(b Breaker) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			done, err := b.Allow()
			if err != nil {
				return fmt.Errorf("pubsub: circuit breaker refused message %s: %w", m.ID, err)
			}
			reported := false
			defer func() {
				if !reported {
					done(fmt.Errorf("pubsub: handler panicked"))
				}
			}()
			err = next(ctx, m)
			reported = true
			if errors.Is(err, ErrPermanent) {
				done(nil)
			} else {
				done(err)
			}
			return err
		}
	}
}
