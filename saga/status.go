package saga

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// StepState is where one step of a saga instance is.
type StepState uint8

// The states of a step.
const (
	StepPending      StepState = iota // not started
	StepRunning                       // an action attempt started and its outcome is not known (yet)
	StepSucceeded                     // the action took effect
	StepFailed                        // the action failed for a business reason
	StepCompensating                  // a compensation attempt started and has not succeeded (yet)
	StepCompensated                   // the compensation took effect
)

// String returns the step state's lower-case name.
func (s StepState) String() string {
	switch s {
	case StepPending:
		return "pending"
	case StepRunning:
		return "running"
	case StepSucceeded:
		return "succeeded"
	case StepFailed:
		return "failed"
	case StepCompensating:
		return "compensating"
	case StepCompensated:
		return "compensated"
	}
	return fmt.Sprintf("StepState(%d)", int(s))
}

// Status is a saga instance as its log tells it: the result of replaying
// its records.
type Status struct {
	// ID is the saga instance's ID and Saga its definition's name.
	ID, Saga string
	// State is the saga's state.
	State State
	// Parked is, for a Stuck saga, the state it was parked from (Running
	// or Compensating), which [Coordinator.Retry] returns it to.
	Parked State
	// Version is the number of records in its log.
	Version uint64
	// Input is the saga's input.
	Input []byte
	// Steps are the steps' states, in the definition's order.
	Steps []StepStatus
	// Step and Cause say why the saga turned back or was parked: the step
	// at fault (empty for a cancellation or an operator's order) and the
	// error text.
	Step, Cause string
	// Created and Updated are the times of the first and last records.
	Created, Updated time.Time

	failure bool // the cause is a business failure
}

// StepStatus is the state of one step of a saga instance.
type StepStatus struct {
	// Name is the step's name.
	Name string
	// State is the step's state.
	State StepState
	// Attempts and CompensationAttempts count the attempts of the action
	// and of the compensation started so far.
	Attempts, CompensationAttempts int
	// Uncertain reports that at least one action attempt ended with an
	// unknown outcome, so the action may have taken effect even if a later
	// attempt failed; such a step is compensated.
	Uncertain bool
	// Output is the action's recorded output.
	Output []byte
	// Error is the last error recorded for the step.
	Error string

	actBase, compBase int // attempts before the last operator retry
}

// Err returns the error a saga in this state reports: nil while it runs
// or once it has completed, and a [*Error] otherwise.
func (s *Status) Err() error {
	switch s.State {
	case Compensated, Stuck, Aborted:
	default:
		return nil
	}
	var cause error
	if s.Cause != "" {
		cause = errors.New(s.Cause)
		if s.failure {
			cause = Fail(cause)
		}
	}
	return &Error{SagaID: s.ID, State: s.State, Step: s.Step, Cause: cause}
}

// Clone returns a deep copy of s.
func (s Status) Clone() Status {
	s.Input = slices.Clone(s.Input)
	s.Steps = slices.Clone(s.Steps)
	for i := range s.Steps {
		s.Steps[i].Output = slices.Clone(s.Steps[i].Output)
	}
	return s
}

// needsCompensation reports whether step i's action may have taken effect
// and its compensation has not.
func (s *Status) needsCompensation(d *Definition, i int) bool {
	if d.steps[i].Compensate == nil {
		return false
	}
	st := &s.Steps[i]
	switch st.State {
	case StepSucceeded, StepRunning, StepCompensating:
		return true
	case StepFailed:
		return st.Uncertain
	}
	return false
}

// replay folds a saga's records into its status, checking that each is in
// place for definition d.
func replay(d *Definition, id string, recs []Record) (*Status, error) {
	s := &Status{ID: id}
	if len(recs) > 0 && recs[0].Type == RecordStarted && recs[0].Saga != d.name {
		return nil, fmt.Errorf("%w: saga %q is a %q, not a %q", ErrCorruptLog, id, recs[0].Saga, d.name)
	}
	s.Steps = make([]StepStatus, len(d.steps))
	for i := range d.steps {
		s.Steps[i].Name = d.steps[i].Name
	}
	for i := range recs {
		if err := s.apply(d, &recs[i]); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// apply folds one record into s. It sets rec.State when it is zero and
// otherwise checks it.
func (s *Status) apply(d *Definition, rec *Record) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: saga %q record %d (%s): %s", ErrCorruptLog, s.ID, rec.Version, rec.Type, fmt.Sprintf(format, args...))
	}
	if rec.Version != s.Version+1 {
		return bad("expected version %d", s.Version+1)
	}
	var st *StepStatus
	switch rec.Type {
	case RecordStepStarted, RecordStepSucceeded, RecordStepFailed, RecordStepUnknown,
		RecordCompStarted, RecordCompSucceeded, RecordCompFailed:
		i, ok := d.index[rec.Step]
		if !ok {
			return bad("unknown step %q", rec.Step)
		}
		st = &s.Steps[i]
	}
	if rec.Type != RecordStarted && s.Version == 0 {
		return bad("the first record must be %s", RecordStarted)
	}
	want := func(states ...State) error {
		if !slices.Contains(states, s.State) {
			return bad("saga is %s", s.State)
		}
		return nil
	}
	var err error
	switch rec.Type {
	case RecordStarted:
		if s.Version != 0 {
			return bad("saga already started")
		}
		s.Saga, s.Input, s.State, s.Created = rec.Saga, rec.Data, Running, rec.Time
	case RecordStepStarted:
		if err = want(Running); err == nil {
			switch {
			case st.State != StepPending && st.State != StepRunning:
				err = bad("step %q is %s", rec.Step, st.State)
			case rec.Attempt != st.Attempts+1:
				err = bad("attempt %d after %d", rec.Attempt, st.Attempts)
			default:
				if st.State == StepRunning {
					st.Uncertain = true // the previous attempt never reported
				}
				st.State, st.Attempts = StepRunning, rec.Attempt
			}
		}
	case RecordStepSucceeded, RecordStepFailed, RecordStepUnknown:
		if err = want(Running); err == nil {
			switch {
			case st.State != StepRunning || rec.Attempt != st.Attempts:
				err = bad("step %q is %s at attempt %d", rec.Step, st.State, st.Attempts)
			case rec.Type == RecordStepSucceeded:
				st.State, st.Output = StepSucceeded, rec.Data
			case rec.Type == RecordStepFailed:
				st.State, st.Error = StepFailed, rec.Error
			default:
				st.Uncertain, st.Error = true, rec.Error
			}
		}
	case RecordCompensating:
		if err = want(Running, Stuck); err == nil {
			s.State, s.Step, s.Cause, s.failure = Compensating, rec.Step, rec.Error, false
			if i, ok := d.index[rec.Step]; ok {
				s.failure = s.Steps[i].State == StepFailed
			}
		}
	case RecordCompStarted:
		if err = want(Compensating); err == nil {
			i := d.index[rec.Step]
			switch {
			case !s.needsCompensation(d, i):
				err = bad("step %q is %s and needs no compensation", rec.Step, st.State)
			case rec.Attempt != st.CompensationAttempts+1:
				err = bad("compensation attempt %d after %d", rec.Attempt, st.CompensationAttempts)
			default:
				st.State, st.CompensationAttempts = StepCompensating, rec.Attempt
			}
		}
	case RecordCompSucceeded, RecordCompFailed:
		if err = want(Compensating); err == nil {
			switch {
			case st.State != StepCompensating || rec.Attempt != st.CompensationAttempts:
				err = bad("step %q is %s at compensation attempt %d", rec.Step, st.State, st.CompensationAttempts)
			case rec.Type == RecordCompSucceeded:
				st.State = StepCompensated
			default:
				st.Error = rec.Error
			}
		}
	case RecordCompleted:
		if err = want(Running); err == nil {
			for i := range s.Steps {
				if s.Steps[i].State != StepSucceeded {
					return bad("step %q is %s", s.Steps[i].Name, s.Steps[i].State)
				}
			}
			s.State = Completed
		}
	case RecordCompensated:
		if err = want(Compensating); err == nil {
			for i := range s.Steps {
				if s.needsCompensation(d, i) {
					return bad("step %q is %s", s.Steps[i].Name, s.Steps[i].State)
				}
			}
			s.State = Compensated
		}
	case RecordStuck:
		if err = want(Running, Compensating); err == nil {
			s.Parked, s.State, s.Step, s.Cause, s.failure = s.State, Stuck, rec.Step, rec.Error, false
		}
	case RecordRetried:
		if err = want(Stuck); err == nil {
			s.State, s.Parked = s.Parked, 0
			for i := range s.Steps {
				s.Steps[i].actBase, s.Steps[i].compBase = s.Steps[i].Attempts, s.Steps[i].CompensationAttempts
			}
			if s.State == Running {
				s.Step, s.Cause = "", ""
			}
		}
	case RecordAborted:
		if s.State.Final() {
			err = bad("saga is %s", s.State)
		} else {
			s.State, s.Cause, s.failure = Aborted, rec.Error, false
			s.Step = ""
		}
	default:
		err = bad("unknown record type")
	}
	if err != nil {
		return err
	}
	if rec.State == 0 {
		rec.State = s.State
	} else if rec.State != s.State {
		return bad("record says the saga is %s, replay says %s", rec.State, s.State)
	}
	s.Version, s.Updated = rec.Version, rec.Time
	return nil
}
