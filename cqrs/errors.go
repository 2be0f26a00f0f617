package cqrs

import (
	"errors"
	"fmt"
)

var (
	// ErrNoHandler is returned when a command or query has no handler: its
	// type was never registered, or (for a query) it was registered with a
	// different result type than the one asked for.
	ErrNoHandler = errors.New("cqrs: no handler")

	// ErrDuplicateHandler is returned when a second handler is registered
	// for a command or query type. The first registration stays in force.
	ErrDuplicateHandler = errors.New("cqrs: handler already registered")

	// ErrInvalidCommand is returned (inside a [*ValidationError]) when a
	// command fails validation. The handler did not run and nothing was
	// stored.
	ErrInvalidCommand = errors.New("cqrs: invalid command")

	// ErrUnauthorized is returned by the [Authorize] middleware when its
	// check refuses a command. The handler did not run.
	ErrUnauthorized = errors.New("cqrs: unauthorized")

	// ErrNotConsistent is returned (inside a [*NotConsistentError]) when a
	// read model did not catch up with a consistency token before the wait
	// for it ended.
	ErrNotConsistent = errors.New("cqrs: read model not yet consistent")

	// ErrInvalidToken is returned by [ParseToken] for text that is not a
	// token, and by queries whose token lies past the end of the event log
	// (a token from another store, or a forged one): no wait would help.
	ErrInvalidToken = errors.New("cqrs: invalid consistency token")

	// ErrRebuildInProgress is returned by [ReadModel.Rebuild] while another
	// rebuild of the same read model runs.
	ErrRebuildInProgress = errors.New("cqrs: rebuild already in progress")

	// ErrInvalidConfig is returned by constructors and registration
	// functions for arguments they cannot use; the message names the field.
	ErrInvalidConfig = errors.New("cqrs: invalid config")
)

// ValidationError reports a command refused by validation: its
// Validate method or [CommandBusConfig.Validate]. errors.Is(err,
// ErrInvalidCommand) reports true for it, and so does errors.Is(err, x)
// for any error x that the validator's error wraps.
type ValidationError struct {
	// Command names the command's type.
	Command string
	// Err is what the validator returned.
	Err error
}

// Error names the command and the validation failure.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("cqrs: invalid command %s: %v", e.Command, e.Err)
}

// Unwrap returns [ErrInvalidCommand] and the validator's error.
func (e *ValidationError) Unwrap() []error { return []error{ErrInvalidCommand, e.Err} }

// NotConsistentError reports that a read model had not reached a
// consistency token when the wait for it ended. errors.Is(err,
// ErrNotConsistent) reports true for it, and so does errors.Is(err,
// context.DeadlineExceeded) or errors.Is(err, context.Canceled) according
// to what ended the wait.
type NotConsistentError struct {
	// Model names the read model.
	Model string
	// Token is the position the query asked for.
	Token Token
	// Checkpoint is the position the read model had reached.
	Checkpoint uint64
	// Err is why the wait ended: the context's error.
	Err error
}

// Error names the read model, the token and how far the model got.
func (e *NotConsistentError) Error() string {
	return fmt.Sprintf("cqrs: read model %q not yet consistent with token %d (at position %d): %v",
		e.Model, e.Token, e.Checkpoint, e.Err)
}

// Unwrap returns [ErrNotConsistent] and the reason the wait ended.
func (e *NotConsistentError) Unwrap() []error { return []error{ErrNotConsistent, e.Err} }
