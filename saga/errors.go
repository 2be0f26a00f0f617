package saga

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidDefinition is returned (inside a [*DefinitionError]) by
	// [NewDefinition] for a saga definition it cannot run.
	ErrInvalidDefinition = errors.New("saga: invalid definition")

	// ErrInvalidConfig is returned by [New] and the other constructors for
	// a config they cannot use; the message names the field.
	ErrInvalidConfig = errors.New("saga: invalid config")

	// ErrFailed marks a business failure: the step's local transaction did
	// not take effect and will not, so the saga compensates. Make such
	// errors with [Fail]. A saga that ended compensated returns a
	// [*Error] that matches ErrFailed when a step failed this way.
	ErrFailed = errors.New("saga: step failed")

	// ErrCompensated is matched by the error of a saga that failed and
	// whose completed steps were all compensated (state [Compensated]).
	ErrCompensated = errors.New("saga: compensated")

	// ErrStuck is matched by the error of a saga parked for an operator
	// (state [Stuck]): a step's outcome stayed unknown after its last
	// attempt, or a compensation could not be completed.
	ErrStuck = errors.New("saga: stuck")

	// ErrAborted is matched by the error of a saga an operator aborted
	// (state [Aborted]).
	ErrAborted = errors.New("saga: aborted")

	// ErrNotFound is returned when no saga has the given ID.
	ErrNotFound = errors.New("saga: not found")

	// ErrExists is returned by [Coordinator.Execute] when a saga with the
	// given ID was already started. Nothing is written; use
	// [Coordinator.Status] to see it.
	ErrExists = errors.New("saga: already exists")

	// ErrConflict is returned (inside a [*ConflictError]) by [Store.Append]
	// when the saga's log is not at the expected version: another
	// coordinator wrote to it first. A coordinator that meets it stops
	// driving the saga and leaves it to the writer that won.
	ErrConflict = errors.New("saga: concurrent write to the saga log")

	// ErrInvalidAppend is returned by [Store.Append] for a malformed
	// append: an empty saga ID or no records.
	ErrInvalidAppend = errors.New("saga: invalid append")

	// ErrUnknownSaga is returned when the log names a saga definition the
	// coordinator was not given.
	ErrUnknownSaga = errors.New("saga: unknown saga definition")

	// ErrCorruptLog is returned when a saga's log cannot be replayed: a
	// record out of place, or a step the definition does not have.
	ErrCorruptLog = errors.New("saga: corrupt saga log")

	// ErrFinished is returned by the operator methods for a saga that has
	// already ended ([Completed], [Compensated] or [Aborted]).
	ErrFinished = errors.New("saga: already finished")

	// ErrNotStuck is returned by [Coordinator.Retry] for a saga that is not
	// [Stuck].
	ErrNotStuck = errors.New("saga: not stuck")

	// ErrActive is returned by [Coordinator.Resume] for a saga this
	// coordinator is already driving.
	ErrActive = errors.New("saga: already being driven by this coordinator")

	// ErrPreempted is returned by the call that was driving a saga when an
	// operator method of the same coordinator took it over.
	ErrPreempted = errors.New("saga: preempted by an operator")

	// ErrLateAction is returned (as a business failure, see [Fail]) by
	// [BarrierAction] when the step's compensation has already been
	// applied: the action arrived after it and must not take effect.
	ErrLateAction = errors.New("saga: action refused: its compensation already ran")

	// ErrInvalidKey is returned by [ParseKey] and the barrier functions for
	// a malformed idempotency key, or a key of the wrong kind.
	ErrInvalidKey = errors.New("saga: invalid idempotency key")

	// ErrNoSagaID is returned (as a permanent failure) by a choreography
	// handler for a message without the [HeaderSagaID] header.
	ErrNoSagaID = errors.New("saga: message has no saga ID")
)

// Fail marks err as a business failure: the step did not take effect and
// never will, so the saga stops going forward and compensates what
// completed. The default [Policy.Classify] treats every other error as an
// unknown outcome, which is retried. Fail(nil) returns nil.
func Fail(err error) error {
	if err == nil {
		return nil
	}
	return &failure{err}
}

type failure struct{ err error }

func (f *failure) Error() string        { return f.err.Error() }
func (f *failure) Unwrap() error        { return f.err }
func (f *failure) Is(target error) bool { return target == ErrFailed }

// DefinitionError describes why a saga definition is invalid.
// errors.Is(err, ErrInvalidDefinition) reports true for it.
type DefinitionError struct {
	// Saga is the definition's name.
	Saga string
	// Step names the offending step, when there is one.
	Step string
	// Reason says what is wrong.
	Reason string
}

// Error names the saga, the step and the reason.
func (e *DefinitionError) Error() string {
	if e.Step != "" {
		return fmt.Sprintf("saga: invalid definition %q: step %q: %s", e.Saga, e.Step, e.Reason)
	}
	return fmt.Sprintf("saga: invalid definition %q: %s", e.Saga, e.Reason)
}

// Unwrap returns [ErrInvalidDefinition].
func (e *DefinitionError) Unwrap() error { return ErrInvalidDefinition }

// ConflictError reports that a saga's log was not at the version an append
// expected. errors.Is(err, ErrConflict) reports true for it.
type ConflictError struct {
	// SagaID names the saga.
	SagaID string
	// Expected is the version the append expected; Actual is the log's.
	Expected, Actual uint64
}

// Error names the saga and both versions.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("saga: concurrent write to the log of saga %q: expected version %d, actual %d",
		e.SagaID, e.Expected, e.Actual)
}

// Unwrap returns [ErrConflict].
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Error is the error of a saga that ended without completing, or was
// parked: it names the saga, its state and the step at fault, and wraps
// the state's sentinel ([ErrCompensated], [ErrStuck], [ErrAborted]) and
// the cause, so both errors.Is(err, ErrCompensated) and
// errors.Is(err, ErrFailed) work on the error of a saga compensated after
// a business failure.
type Error struct {
	// SagaID names the saga.
	SagaID string
	// State is the saga's state: Compensated, Stuck or Aborted.
	State State
	// Step is the step whose failure decided the outcome, if any.
	Step string
	// Cause is why the saga did not complete: the step's error (a
	// business failure, or the last unknown outcome), the cancellation,
	// or the operator's reason. After recovery by another coordinator it
	// holds the text recorded in the log; a business failure still matches
	// ErrFailed.
	Cause error
}

// Error names the saga, its state, the step and the cause.
func (e *Error) Error() string {
	s := fmt.Sprintf("saga %q %s", e.SagaID, e.State)
	if e.Step != "" {
		s += fmt.Sprintf(" at step %q", e.Step)
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the state's sentinel and the cause.
func (e *Error) Unwrap() []error {
	var sentinel error
	switch e.State {
	case Compensated:
		sentinel = ErrCompensated
	case Stuck:
		sentinel = ErrStuck
	case Aborted:
		sentinel = ErrAborted
	}
	out := make([]error, 0, 2)
	if sentinel != nil {
		out = append(out, sentinel)
	}
	if e.Cause != nil {
		out = append(out, e.Cause)
	}
	return out
}
