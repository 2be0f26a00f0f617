package saga

import (
	"context"
	"strconv"
	"time"
)

// Store is the durable saga log: for each saga instance, an append-only
// sequence of [Record]s, each written before the transition it describes
// takes effect. [MemoryStore] is the reference implementation and
// [EventStore] keeps each saga as a stream of an eventsource.Store; every
// implementation must pass the conformance suite in package sagatest.
//
// Implementations are safe for concurrent use. Every method honours ctx:
// when it is done, the method returns an error wrapping ctx.Err() and the
// log is unchanged.
type Store interface {
	// Append adds records to the end of saga sagaID's log if the log is at
	// version expected (the number of records it holds; 0 for a saga not
	// yet started). The records get versions expected+1, expected+2, ...
	// (whatever Version they carry is ignored) and become visible together.
	// It returns the log's new version.
	//
	// It returns a [*ConflictError] (errors.Is ErrConflict) with the
	// actual version when the log is not at expected, and an error
	// wrapping [ErrInvalidAppend] for an empty sagaID or no records; in
	// both cases nothing is stored. Of several appends racing for the same
	// version exactly one succeeds: this is what keeps one writer per saga.
	Append(ctx context.Context, sagaID string, expected uint64, records ...Record) (uint64, error)

	// Load returns every record of saga sagaID's log in version order, or
	// [ErrNotFound] when it has none. The records are copies the caller may
	// keep and modify.
	Load(ctx context.Context, sagaID string) ([]Record, error)

	// List returns a summary of each saga selected by q, ordered by saga
	// ID. A saga's state and name come from its records: the name from the
	// first, the state from the last.
	List(ctx context.Context, q Query) ([]Summary, error)
}

// Query selects sagas for [Store.List]. The zero value selects every saga.
type Query struct {
	// States selects sagas in one of these states; empty means any.
	States []State
	// After skips sagas whose ID is not greater than After (for paging:
	// pass the last ID of the previous page).
	After string
	// Limit bounds the number of summaries returned; 0 means no limit.
	Limit int
}

// Summary describes one saga in a [Store.List] result.
type Summary struct {
	// ID is the saga instance's ID.
	ID string
	// Name is the saga definition's name (the first record's Saga).
	Name string
	// State is the saga's current state (the last record's State).
	State State
	// Version is the number of records in the saga's log.
	Version uint64
	// Created and Updated are the times of the first and last records.
	Created, Updated time.Time
}

// Record is one entry of a saga's log. The coordinator writes a record
// before the transition it describes takes effect: a step's intent before
// its action or compensation runs, its result after.
type Record struct {
	// Version is the record's number in the saga's log, from 1, assigned
	// by [Store.Append].
	Version uint64
	// Type says what happened.
	Type RecordType
	// State is the saga's state once this record is applied; stores index
	// it to answer [Store.List].
	State State
	// Saga is the definition's name; set on the first record.
	Saga string
	// Step names the step a step or compensation record is about.
	Step string
	// Attempt is the attempt number, from 1, of an action or compensation
	// record.
	Attempt int
	// Data is the saga's input ([RecordStarted]) or a step's output
	// ([RecordStepSucceeded]).
	Data []byte
	// Error is the error text of a failure, or the reason given for a
	// transition (a cancellation, an operator's reason).
	Error string
	// Time is when the coordinator wrote the record.
	Time time.Time
}

// RecordType names the kind of a [Record].
type RecordType string

// The record types a coordinator writes.
const (
	RecordStarted       RecordType = "saga.started"      // the saga was accepted; Data is its input
	RecordStepStarted   RecordType = "step.started"      // intent: attempt Attempt of Step's action is about to run
	RecordStepSucceeded RecordType = "step.succeeded"    // the action succeeded; Data is its output
	RecordStepFailed    RecordType = "step.failed"       // the action failed for a business reason: it did not take effect
	RecordStepUnknown   RecordType = "step.unknown"      // the attempt's outcome is unknown (error, timeout, panic)
	RecordCompensating  RecordType = "saga.compensating" // the saga turned back; Error says why
	RecordCompStarted   RecordType = "compensation.started"
	RecordCompSucceeded RecordType = "compensation.succeeded"
	RecordCompFailed    RecordType = "compensation.failed"
	RecordCompleted     RecordType = "saga.completed"
	RecordCompensated   RecordType = "saga.compensated"
	RecordStuck         RecordType = "saga.stuck"   // parked for an operator; Step and Error say why
	RecordRetried       RecordType = "saga.retried" // an operator resumed a stuck saga with fresh attempts
	RecordAborted       RecordType = "saga.aborted" // an operator ended the saga; Error is the reason
)

// State is where a saga instance is in its life.
type State uint8

// The states of a saga. Running and Compensating sagas are unfinished:
// [Coordinator.Recover] resumes them. Stuck sagas wait for an operator.
// Completed, Compensated and Aborted are final.
const (
	Running      State = iota + 1 // going forward
	Compensating                  // undoing completed steps after a failure, a cancellation or an operator's order
	Completed                     // every step succeeded
	Compensated                   // failed, and every completed step was compensated
	Stuck                         // parked: a step's outcome stayed unknown, or a compensation kept failing
	Aborted                       // ended by an operator, without further actions or compensations
)

// String returns the state's lower-case name.
func (s State) String() string {
	switch s {
	case Running:
		return "running"
	case Compensating:
		return "compensating"
	case Completed:
		return "completed"
	case Compensated:
		return "compensated"
	case Stuck:
		return "stuck"
	case Aborted:
		return "aborted"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Final reports whether s is a final state: Completed, Compensated or
// Aborted.
func (s State) Final() bool { return s == Completed || s == Compensated || s == Aborted }

func timeFromUnixNano(n int64) time.Time { return time.Unix(0, n) }
