package ambassador

import (
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrInvalidConfig is wrapped by every [*ConfigError].
	ErrInvalidConfig = errors.New("ambassador: invalid config")

	// ErrBulkheadFull is returned, wrapped with the host, when a request
	// finds its host's concurrency limit reached and no slot frees up
	// within [BulkheadConfig.MaxWait]. The request was not sent.
	ErrBulkheadFull = errors.New("ambassador: bulkhead full")

	// ErrAttemptTimeout is returned, wrapped, when an attempt gets no
	// response headers within [Config.AttemptTimeout]; when it is the last
	// attempt's error, the request fails with it.
	ErrAttemptTimeout = errors.New("ambassador: attempt timed out")

	// ErrTimeout is returned, wrapped, when the response headers do not
	// arrive within [Config.Timeout], across all attempts and waits.
	ErrTimeout = errors.New("ambassador: request timed out")
)

// ConfigError reports an invalid configuration field. It wraps
// [ErrInvalidConfig].
type ConfigError struct {
	Field  string // for example "Retry.MaxAttempts"
	Reason string // for example "must not be negative"
}

// Error names the field and the reason.
func (e *ConfigError) Error() string {
	return "ambassador: invalid config: " + e.Field + " " + e.Reason
}

// Unwrap returns [ErrInvalidConfig].
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// StatusError is the outcome the [Transport] reports to a host's circuit
// breaker (through [circuitbreaker.Config.IsFailure]) for a response whose
// status is in [BreakerConfig.FailureStatuses]. The response itself still
// goes back to the caller: a status is never turned into a returned error.
type StatusError struct {
	Code int // the HTTP status code
}

// Error names the status code and its text.
func (e *StatusError) Error() string {
	return fmt.Sprintf("ambassador: upstream answered %d %s", e.Code, http.StatusText(e.Code))
}
