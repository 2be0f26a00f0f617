package circuitbreaker

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrOpen is returned, wrapped in a [*RejectedError], for calls made
	// while the breaker is open or forced open.
	ErrOpen = errors.New("circuitbreaker: breaker is open")

	// ErrTooManyProbes is returned, wrapped in a [*RejectedError], for calls
	// made while the breaker is half-open and all its probe permits are in
	// use.
	ErrTooManyProbes = errors.New("circuitbreaker: too many half-open probes")

	// ErrInvalidConfig is wrapped by every [*ConfigError].
	ErrInvalidConfig = errors.New("circuitbreaker: invalid config")

	// ErrNoStore is returned by [Breaker.Run] and [Group.Run] when the
	// config has no [Store].
	ErrNoStore = errors.New("circuitbreaker: no store configured")
)

// RejectedError is the error returned for a call the breaker did not let
// through. It wraps [ErrOpen] or [ErrTooManyProbes], so callers branch
// with errors.Is and read the details with errors.As.
//
// The breaker returns shared, read-only values: do not modify one.
type RejectedError struct {
	// Name is the breaker's [Config.Name].
	Name string
	// State is the state that rejected the call.
	State State
	// RetryAt is the earliest time the breaker may admit a call again: the
	// end of the open period, or, when half-open probes are all in use, the
	// time by which the oldest probe must have finished. It is zero while
	// the breaker is forced open.
	RetryAt time.Time

	err error
}

// Error describes the rejection: the sentinel's message, the breaker's
// name and RetryAt.
func (e *RejectedError) Error() string {
	msg := e.err.Error()
	if e.Name != "" {
		msg = fmt.Sprintf("%s (breaker %q)", msg, e.Name)
	}
	if !e.RetryAt.IsZero() {
		msg += "; retry at " + e.RetryAt.Format(time.RFC3339Nano)
	}
	return msg
}

// Unwrap returns [ErrOpen] or [ErrTooManyProbes].
func (e *RejectedError) Unwrap() error { return e.err }

// ConfigError reports an invalid [Config] or [GroupConfig] field. It wraps
// [ErrInvalidConfig].
type ConfigError struct {
	Field  string // for example "FailureRate"
	Reason string // for example "must be in (0, 1]"
}

// Error names the field and the reason.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("circuitbreaker: invalid config: %s %s", e.Field, e.Reason)
}

// Unwrap returns [ErrInvalidConfig].
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }
