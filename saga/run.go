package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"
)

// run drives one saga instance.
type run struct {
	c    *Coordinator
	def  *Definition
	pol  []Policy
	id   string
	slot *slot // preempted when an operator takes the saga over

	mu      sync.Mutex
	status  *Status
	dead    error    // set once a write failed: the run writes nothing more
	cause   error    // why the saga turned back or was parked, as it happened here
	outputs [][]byte // step outputs, written before any dependent starts
}

func (c *Coordinator) newRun(cd *compiled, id string, sl *slot, st *Status) *run {
	if st == nil {
		st = &Status{ID: id, Steps: make([]StepStatus, len(cd.def.steps))}
		for i := range cd.def.steps {
			st.Steps[i].Name = cd.def.steps[i].Name
		}
	}
	r := &run{c: c, def: cd.def, pol: cd.pol, id: id, slot: sl, status: st, outputs: make([][]byte, len(cd.def.steps))}
	for i := range st.Steps {
		r.outputs[i] = st.Steps[i].Output
	}
	return r
}

// write applies rec to the status and appends it to the log. After a
// failed append the run is dead: every later write fails.
func (r *run) write(ctx context.Context, rec Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead != nil {
		return r.dead
	}
	expected := r.status.Version
	rec.Version = expected + 1
	rec.Time = time.Now()
	if err := r.status.apply(r.def, &rec); err != nil {
		r.dead = err
		return err
	}
	if _, err := r.c.store.Append(ctx, r.id, expected, rec); err != nil {
		if cause := r.slot.stopped(); cause != nil {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
		r.dead = err
		return err
	}
	return nil
}

func (r *run) snapshot() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.Clone()
}

func (r *run) step(i int) StepStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.Steps[i]
}

func (r *run) logAttrs(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	r.c.logAttrs(ctx, level, msg, r.id, r.def.name, attrs...)
}

// drive runs the saga from its current state until it ends, is parked or
// is interrupted.
func (r *run) drive(ctx context.Context) (Status, error) {
	// Writes must outlive the caller's cancellation (the compensation
	// they record must happen), but not a preemption.
	io, cancelIO := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelIO(nil)
	r.slot.onStop(cancelIO)
	for {
		var err error
		switch r.status.State {
		case Running:
			err = r.forward(ctx, io)
		case Compensating:
			err = r.compensate(ctx, io)
		default:
			st := r.snapshot()
			err := st.Err()
			if e, ok := err.(*Error); ok && r.cause != nil && st.State != Aborted {
				e.Cause = r.cause
			}
			return st, err
		}
		if err != nil {
			r.logAttrs(ctx, slog.LevelWarn, "saga: interrupted", slog.Any("err", err))
			return r.snapshot(), fmt.Errorf("saga %q interrupted: %w", r.id, err)
		}
	}
}

// outcome of one step's attempts.
type result struct {
	i        int
	kind     resultKind
	err      error // the step's last error, or the write error
	panicked any
	stack    []byte
}

type resultKind uint8

const (
	resultOK          resultKind = iota
	resultFailed                 // business failure
	resultStuck                  // attempts exhausted with an unknown outcome, or compensation impossible
	resultInterrupted            // the context ended between attempts
	resultWriteFailed            // the log could not be written: abandon the run
	resultPanicked
)

// forward runs the steps whose dependencies have succeeded until every
// step has succeeded, one has failed, one is stuck, or ctx ends.
func (r *run) forward(ctx, io context.Context) error {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.slot.onStop(cancel)

	n := len(r.def.steps)
	launched := make([]bool, n)
	results := make(chan result)
	inflight := 0
	failed, stuck := -1, -1
	var stuckErr, failedErr error
	var bad *result // a write failure or a panic
	r.mu.Lock()
	for i := range r.status.Steps {
		if r.status.Steps[i].State == StepFailed && failed < 0 {
			failed = i // recorded by a coordinator that stopped before turning back
		}
	}
	r.mu.Unlock()
	var ready []int
	for {
		ready = ready[:0]
		if bad == nil && failed < 0 && stuck < 0 && fctx.Err() == nil {
			for i := range n {
				if launched[i] || !r.ready(i) {
					continue
				}
				st := r.step(i)
				if st.Attempts-st.actBase >= r.pol[i].MaxAttempts {
					stuck, stuckErr = i, fmt.Errorf("outcome still unknown after %d attempts: %s", st.Attempts-st.actBase, st.Error)
					break
				}
				ready = append(ready, i)
			}
		}
		var res result
		switch {
		case stuck < 0 && inflight == 0 && len(ready) == 1:
			// One step to run and nothing else running (a chain of
			// steps): run it here, without a goroutine.
			launched[ready[0]] = true
			res = r.action(fctx, io, ready[0])
		default:
			if stuck < 0 {
				for _, i := range ready {
					launched[i] = true
					inflight++
					go func() { results <- r.action(fctx, io, i) }()
				}
			}
			if inflight == 0 {
				return r.endForward(ctx, io, bad, failed, failedErr, stuck, stuckErr)
			}
			res = <-results
			inflight--
		}
		switch res.kind {
		case resultFailed:
			if failed < 0 {
				failed, failedErr = res.i, res.err
			}
		case resultStuck:
			if stuck < 0 {
				stuck, stuckErr = res.i, res.err
			}
		case resultWriteFailed, resultPanicked:
			if bad == nil {
				b := res
				bad = &b
				cancel(errAbandoned)
			}
		}
	}
}

var errAbandoned = errors.New("saga: run abandoned")

// ready reports whether step i has not succeeded or failed and all its
// dependencies have succeeded.
func (r *run) ready(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status.Steps[i].State
	if s != StepPending && s != StepRunning {
		return false
	}
	for _, j := range r.def.deps[i] {
		if r.status.Steps[j].State != StepSucceeded {
			return false
		}
	}
	return true
}

// endForward records how the forward phase ended, once no step runs.
func (r *run) endForward(ctx, io context.Context, bad *result, failed int, failedErr error, stuck int, stuckErr error) error {
	if bad != nil {
		return r.abandon(bad)
	}
	switch {
	case stuck >= 0:
		return r.park(ctx, io, stuck, stuckErr)
	case failed >= 0:
		st := r.step(failed)
		r.logAttrs(ctx, slog.LevelInfo, "saga: step failed, compensating", slog.String("step", st.Name), slog.String("err", st.Error))
		r.cause = failedErr
		return r.write(io, Record{Type: RecordCompensating, Step: st.Name, Error: st.Error})
	case ctx.Err() != nil || r.slot.stopped() != nil:
		if cause := r.slot.stopped(); cause != nil {
			return cause
		}
		reason := "cancelled: " + context.Cause(ctx).Error()
		r.cause = fmt.Errorf("cancelled: %w", context.Cause(ctx))
		r.logAttrs(ctx, slog.LevelInfo, "saga: cancelled, compensating", slog.String("reason", reason))
		return r.write(io, Record{Type: RecordCompensating, Error: reason})
	}
	r.mu.Lock()
	done := true
	for i := range r.status.Steps {
		done = done && r.status.Steps[i].State == StepSucceeded
	}
	r.mu.Unlock()
	if !done {
		return fmt.Errorf("%w: saga %q: no step can run", ErrCorruptLog, r.id)
	}
	if err := r.write(io, Record{Type: RecordCompleted}); err != nil {
		return err
	}
	r.logAttrs(ctx, slog.LevelInfo, "saga: completed")
	return nil
}

// abandon ends a run whose log could not be written or whose step
// panicked. A panic is re-raised in the driving goroutine.
func (r *run) abandon(bad *result) error {
	if bad.kind == resultPanicked {
		r.logAttrs(context.Background(), slog.LevelError, "saga: step panicked",
			slog.String("step", r.def.steps[bad.i].Name), slog.Any("panic", bad.panicked), slog.String("stack", string(bad.stack)))
		panic(bad.panicked)
	}
	return bad.err
}

func (r *run) park(ctx, io context.Context, i int, cause error) error {
	name := r.def.steps[i].Name
	r.logAttrs(ctx, slog.LevelError, "saga: stuck, waiting for an operator", slog.String("step", name), slog.Any("err", cause))
	r.cause = cause
	return r.write(io, Record{Type: RecordStuck, Step: name, Error: cause.Error()})
}

// action runs the attempts of step i's action.
func (r *run) action(fctx, io context.Context, i int) result {
	s, pol := &r.def.steps[i], r.pol[i]
	for {
		st := r.step(i)
		attempt := st.Attempts + 1
		if err := r.write(io, Record{Type: RecordStepStarted, Step: s.Name, Attempt: attempt}); err != nil {
			return result{i: i, kind: resultWriteFailed, err: err}
		}
		r.logAttrs(fctx, slog.LevelDebug, "saga: action", slog.String("step", s.Name), slog.Int("attempt", attempt))
		call := &Call{SagaID: r.id, Saga: r.def.name, Step: s.Name, Kind: Action, Attempt: attempt, Input: r.status.Input, r: r, i: i}
		out, pv, stack, err := invoke(fctx, pol.Timeout, func(ctx context.Context) ([]byte, error) { return s.Action(ctx, call) })
		if pv != nil {
			_ = r.write(io, Record{Type: RecordStepUnknown, Step: s.Name, Attempt: attempt, Error: fmt.Sprintf("panic: %v", pv)})
			return result{i: i, kind: resultPanicked, panicked: pv, stack: stack}
		}
		outcome := Success
		if err != nil {
			outcome = pol.Classify(err)
		}
		switch outcome {
		case Success:
			r.outputs[i] = out // before the write makes the step ready for its dependents
			if err := r.write(io, Record{Type: RecordStepSucceeded, Step: s.Name, Attempt: attempt, Data: out}); err != nil {
				return result{i: i, kind: resultWriteFailed, err: err}
			}
			return result{i: i, kind: resultOK}
		case Failure:
			if err := r.write(io, Record{Type: RecordStepFailed, Step: s.Name, Attempt: attempt, Error: err.Error()}); err != nil {
				return result{i: i, kind: resultWriteFailed, err: err}
			}
			return result{i: i, kind: resultFailed, err: err}
		}
		if werr := r.write(io, Record{Type: RecordStepUnknown, Step: s.Name, Attempt: attempt, Error: err.Error()}); werr != nil {
			return result{i: i, kind: resultWriteFailed, err: werr}
		}
		r.logAttrs(fctx, slog.LevelWarn, "saga: action outcome unknown", slog.String("step", s.Name), slog.Int("attempt", attempt), slog.Any("err", err))
		if attempt-st.actBase >= pol.MaxAttempts {
			return result{i: i, kind: resultStuck, err: fmt.Errorf("outcome still unknown after %d attempts: %w", attempt-st.actBase, err)}
		}
		if !sleep(fctx, pol.Backoff.delay(attempt-st.actBase, rand.Float64())) {
			return result{i: i, kind: resultInterrupted, err: err}
		}
	}
}

// compensate undoes, in reverse dependency order, every step whose action
// may have taken effect, then records the saga compensated; or parks it.
func (r *run) compensate(ctx, io context.Context) error {
	cctx, cancel := context.WithTimeoutCause(io, r.c.cfg.CompensationTimeout,
		fmt.Errorf("compensation timeout of %v reached", r.c.cfg.CompensationTimeout))
	defer cancel()
	n := len(r.def.steps)
	launched := make([]bool, n)
	results := make(chan result)
	inflight := 0
	stuck := -1
	var stuckErr error
	var bad *result
	for {
		if bad == nil && stuck < 0 {
			r.mu.Lock()
			var ready []int
			for i := range n {
				if launched[i] || !r.status.needsCompensation(r.def, i) {
					continue
				}
				blocked := false
				for k := range n {
					if r.def.ancestors[k][i] && r.status.needsCompensation(r.def, k) {
						blocked = true // a step that depends on i is not compensated yet
						break
					}
				}
				if !blocked {
					ready = append(ready, i)
				}
			}
			r.mu.Unlock()
			for _, i := range ready {
				launched[i] = true
				inflight++
				go func() { results <- r.undo(cctx, io, i) }()
			}
		}
		if inflight == 0 {
			break
		}
		res := <-results
		inflight--
		switch res.kind {
		case resultStuck:
			if stuck < 0 {
				stuck, stuckErr = res.i, res.err
			}
		case resultWriteFailed, resultPanicked:
			if bad == nil {
				b := res
				bad = &b
			}
		}
	}
	if bad != nil {
		return r.abandon(bad)
	}
	if stuck >= 0 {
		return r.park(ctx, io, stuck, stuckErr)
	}
	r.mu.Lock()
	for i := range n {
		if r.status.needsCompensation(r.def, i) {
			r.mu.Unlock()
			return fmt.Errorf("%w: saga %q: step %q cannot be compensated", ErrCorruptLog, r.id, r.def.steps[i].Name)
		}
	}
	r.mu.Unlock()
	if err := r.write(io, Record{Type: RecordCompensated}); err != nil {
		return err
	}
	r.logAttrs(ctx, slog.LevelInfo, "saga: compensated")
	return nil
}

// undo runs the attempts of step i's compensation.
func (r *run) undo(cctx, io context.Context, i int) result {
	s, pol := &r.def.steps[i], r.pol[i]
	for {
		st := r.step(i)
		attempt := st.CompensationAttempts + 1
		if attempt-st.compBase > pol.CompensationAttempts {
			return result{i: i, kind: resultStuck, err: fmt.Errorf("compensation failed %d times: %s", attempt-1-st.compBase, st.Error)}
		}
		if err := cctx.Err(); err != nil {
			return result{i: i, kind: resultStuck, err: fmt.Errorf("compensation not finished: %w", context.Cause(cctx))}
		}
		if err := r.write(io, Record{Type: RecordCompStarted, Step: s.Name, Attempt: attempt}); err != nil {
			return result{i: i, kind: resultWriteFailed, err: err}
		}
		r.logAttrs(cctx, slog.LevelDebug, "saga: compensation", slog.String("step", s.Name), slog.Int("attempt", attempt))
		call := &Call{SagaID: r.id, Saga: r.def.name, Step: s.Name, Kind: Compensation, Attempt: attempt, Input: r.status.Input, Output: st.Output, r: r, i: i}
		_, pv, stack, err := invoke(cctx, pol.Timeout, func(ctx context.Context) ([]byte, error) { return nil, s.Compensate(ctx, call) })
		if pv != nil {
			_ = r.write(io, Record{Type: RecordCompFailed, Step: s.Name, Attempt: attempt, Error: fmt.Sprintf("panic: %v", pv)})
			return result{i: i, kind: resultPanicked, panicked: pv, stack: stack}
		}
		if err == nil {
			if err := r.write(io, Record{Type: RecordCompSucceeded, Step: s.Name, Attempt: attempt}); err != nil {
				return result{i: i, kind: resultWriteFailed, err: err}
			}
			return result{i: i, kind: resultOK}
		}
		if werr := r.write(io, Record{Type: RecordCompFailed, Step: s.Name, Attempt: attempt, Error: err.Error()}); werr != nil {
			return result{i: i, kind: resultWriteFailed, err: werr}
		}
		r.logAttrs(cctx, slog.LevelWarn, "saga: compensation failed", slog.String("step", s.Name), slog.Int("attempt", attempt), slog.Any("err", err))
		switch {
		case err != nil && pol.Classify(err) == Failure:
			return result{i: i, kind: resultStuck, err: fmt.Errorf("cannot be compensated: %w", err)}
		case attempt-st.compBase >= pol.CompensationAttempts:
			return result{i: i, kind: resultStuck, err: fmt.Errorf("compensation failed %d times: %w", attempt-st.compBase, err)}
		}
		if !sleep(cctx, pol.Backoff.delay(attempt-st.compBase, rand.Float64())) {
			return result{i: i, kind: resultStuck, err: fmt.Errorf("compensation not finished (%w): %w", context.Cause(cctx), err)}
		}
	}
}

// invoke calls fn with a context bounded by timeout (none if negative),
// recovering a panic.
func invoke(ctx context.Context, timeout time.Duration, fn func(context.Context) ([]byte, error)) (out []byte, panicked any, stack []byte, err error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	defer func() {
		if v := recover(); v != nil {
			panicked, stack = v, debug.Stack()
		}
	}()
	out, err = fn(ctx)
	return out, nil, nil, err
}

// sleep waits for d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
