package eventsource

import (
	"errors"
	"fmt"
)

var (
	// ErrConcurrencyConflict is returned (inside a [*ConcurrencyError]) when
	// a stream's version does not match what an append expected.
	ErrConcurrencyConflict = errors.New("eventsource: concurrency conflict")

	// ErrInvalidAppend is returned when an append is malformed: an empty
	// stream ID or event type, no events, a negative schema version, an
	// invalid expected version, a stream named twice in one multi-stream
	// append, or an event ID repeated within one append.
	ErrInvalidAppend = errors.New("eventsource: invalid append")

	// ErrDuplicateEventID is returned when an append reuses event IDs that
	// are already stored but is not an exact re-send of the append that
	// stored them (same streams, same IDs in the same order). Nothing is
	// appended.
	ErrDuplicateEventID = errors.New("eventsource: event ID already stored by a different append")

	// ErrUnknownEvent is returned (inside an [*UnknownEventError]) when a
	// [Registry] meets an event type, schema version or Go type it has no
	// registration for.
	ErrUnknownEvent = errors.New("eventsource: unknown event")

	// ErrInvalidRegistry is returned when a [Registry]'s registrations or
	// upcasters are inconsistent: a name or Go type registered twice, an
	// upcaster chain with a gap, a dead end or a cycle.
	ErrInvalidRegistry = errors.New("eventsource: invalid registry")

	// ErrRegistrySealed is returned by registration after the [Registry]
	// was validated and put to use.
	ErrRegistrySealed = errors.New("eventsource: registry already in use")

	// ErrSnapshotNotFound is returned by [SnapshotStore.LoadSnapshot] when
	// the stream has no snapshot.
	ErrSnapshotNotFound = errors.New("eventsource: snapshot not found")

	// ErrProjectionNotEmpty is returned by [Rebuild] when the projection it
	// was given has already applied events.
	ErrProjectionNotEmpty = errors.New("eventsource: projection is not empty")

	// ErrInvalidConfig is returned by constructors for a config they cannot
	// use; the message names the field.
	ErrInvalidConfig = errors.New("eventsource: invalid config")
)

// ConcurrencyError reports an optimistic concurrency conflict: the stream
// was not at the version the append expected. errors.Is(err,
// ErrConcurrencyConflict) reports true for it.
type ConcurrencyError struct {
	// StreamID is the stream whose version did not match.
	StreamID string
	// Expected is what the append expected.
	Expected ExpectedVersion
	// Actual is the stream's version when the append was refused.
	Actual uint64
}

// Error names the stream and both versions.
func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("eventsource: concurrency conflict on stream %q: expected %s, actual version %d",
		e.StreamID, e.Expected, e.Actual)
}

// Unwrap returns [ErrConcurrencyConflict].
func (e *ConcurrencyError) Unwrap() error { return ErrConcurrencyConflict }

// UnknownEventError names an event a [Registry] cannot handle.
// errors.Is(err, ErrUnknownEvent) reports true for it.
type UnknownEventError struct {
	// Type and SchemaVersion identify a stored event; they are empty when
	// GoType is set.
	Type          string
	SchemaVersion int
	// GoType is the Go type of a value passed to [Registry.Encode] that was
	// never registered.
	GoType string
	// Reason says what is missing.
	Reason string
}

// Error names the event type and version, or the Go type, and what is
// missing.
func (e *UnknownEventError) Error() string {
	if e.GoType != "" {
		return fmt.Sprintf("eventsource: unknown event: Go type %s is not registered", e.GoType)
	}
	return fmt.Sprintf("eventsource: unknown event: type %q schema version %d: %s", e.Type, e.SchemaVersion, e.Reason)
}

// Unwrap returns [ErrUnknownEvent].
func (e *UnknownEventError) Unwrap() error { return ErrUnknownEvent }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidAppend}, args...)...)
}
