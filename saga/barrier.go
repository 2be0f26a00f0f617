package saga

import (
	"context"
	"fmt"
	"sync"
)

// A BarrierTx is the view of a step service's local transaction that
// [BarrierAction] and [BarrierCompensation] need: a table of marks, one per
// idempotency key the service has applied, stored with the service's own
// data and read and written in the same transaction as its business
// effect. In SQL:
//
//	CREATE TABLE saga_barrier (
//		saga_id TEXT NOT NULL,
//		step    TEXT NOT NULL,
//		kind    TEXT NOT NULL,  -- 'action' or 'compensation'
//		output  BYTEA,
//		PRIMARY KEY (saga_id, step, kind)
//	);
//
// Mark reads a row (SELECT ... FOR UPDATE, or at serializable isolation,
// so that two concurrent deliveries of one key serialize); SetMark inserts
// one. A [MemoryBarrier] is the in-memory form.
type BarrierTx interface {
	// Mark returns the output stored with key's mark and whether key has
	// a mark.
	Mark(ctx context.Context, key Key) (output []byte, ok bool, err error)
	// SetMark stores a mark for key with output.
	SetMark(ctx context.Context, key Key, output []byte) error
}

// BarrierAction applies a step's action exactly once, inside the service's
// local transaction tx. key is the action's idempotency key, as the
// coordinator sent it ([Call.Key]); do performs the business effect in
// the same transaction and returns the step's output.
//
//   - If the step's compensation has already been applied (it ran first,
//     as a no-op, because this action was late), do is not called, the
//     action is refused and BarrierAction returns an error matching both
//     [ErrLateAction] and [ErrFailed] (a business failure).
//   - If the action has already been applied, do is not called and the
//     output stored the first time is returned: a retry sees the original
//     result.
//   - Otherwise do runs; on success its output is marked and returned. On
//     error nothing is marked and the error is returned: the service must
//     roll back its transaction.
//
// It returns an error wrapping [ErrInvalidKey] when key is not an action
// key.
func BarrierAction(ctx context.Context, tx BarrierTx, key Key, do func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if key.Kind != Action || key.SagaID == "" || key.Step == "" {
		return nil, fmt.Errorf("%w: %q is not an action key", ErrInvalidKey, key)
	}
	comp := Key{SagaID: key.SagaID, Step: key.Step, Kind: Compensation}
	if _, done, err := tx.Mark(ctx, comp); err != nil {
		return nil, err
	} else if done {
		return nil, Fail(fmt.Errorf("%w: %s", ErrLateAction, key))
	}
	if out, done, err := tx.Mark(ctx, key); err != nil || done {
		return out, err
	}
	out, err := do(ctx)
	if err != nil {
		return nil, err
	}
	if err := tx.SetMark(ctx, key, out); err != nil {
		return nil, err
	}
	return out, nil
}

// BarrierCompensation applies a step's compensation exactly once, inside
// the service's local transaction tx. key is the compensation's
// idempotency key; undo performs the compensating effect in the same
// transaction.
//
//   - If the compensation has already been applied, undo is not called.
//   - If the action was never applied (its request was lost, or has not
//     arrived yet), undo is not called but the compensation is marked: a
//     recorded no-op, which also makes [BarrierAction] refuse the action
//     if it arrives later.
//   - Otherwise undo runs and, on success, the compensation is marked.
//
// It reports whether undo ran. It returns an error wrapping
// [ErrInvalidKey] when key is not a compensation key, and undo's error
// (nothing marked: the service must roll back).
func BarrierCompensation(ctx context.Context, tx BarrierTx, key Key, undo func(ctx context.Context) error) (applied bool, err error) {
	if key.Kind != Compensation || key.SagaID == "" || key.Step == "" {
		return false, fmt.Errorf("%w: %q is not a compensation key", ErrInvalidKey, key)
	}
	if _, done, err := tx.Mark(ctx, key); err != nil || done {
		return false, err
	}
	action := Key{SagaID: key.SagaID, Step: key.Step, Kind: Action}
	_, acted, err := tx.Mark(ctx, action)
	if err != nil {
		return false, err
	}
	if acted {
		if err := undo(ctx); err != nil {
			return false, err
		}
	}
	if err := tx.SetMark(ctx, key, nil); err != nil {
		return false, err
	}
	return acted, nil
}

// MemoryBarrier is the barrier of a service that keeps its state in
// memory: it serializes the invocations of each saga step and applies
// [BarrierAction] and [BarrierCompensation] to an in-memory table. The
// business effect passed to it must be the service's in-memory change
// itself, so that effect and mark are applied together.
//
// It remembers every key it has seen; [MemoryBarrier.Forget] drops a
// finished saga's marks. The zero value is ready to use. It is safe for
// concurrent use; do and undo run while the step's lock is held, so they
// must not call the barrier for the same step.
type MemoryBarrier struct {
	mu    sync.Mutex
	steps map[stepKey]*barrierEntry
}

type stepKey struct{ saga, step string }

type barrierEntry struct {
	mu    sync.Mutex
	marks [2]struct {
		set    bool
		output []byte
	}
}

// Mark implements [BarrierTx] for one step's entry.
func (e *barrierEntry) Mark(_ context.Context, key Key) ([]byte, bool, error) {
	m := e.marks[key.Kind-1]
	return m.output, m.set, nil
}

// SetMark implements [BarrierTx] for one step's entry.
func (e *barrierEntry) SetMark(_ context.Context, key Key, output []byte) error {
	m := &e.marks[key.Kind-1]
	m.set, m.output = true, output
	return nil
}

func (b *MemoryBarrier) entry(key Key) *barrierEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.steps == nil {
		b.steps = make(map[stepKey]*barrierEntry)
	}
	k := stepKey{key.SagaID, key.Step}
	e := b.steps[k]
	if e == nil {
		e = new(barrierEntry)
		b.steps[k] = e
	}
	return e
}

// Action applies an action exactly once; see [BarrierAction].
func (b *MemoryBarrier) Action(ctx context.Context, key Key, do func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if key.Kind != Action {
		return nil, fmt.Errorf("%w: %q is not an action key", ErrInvalidKey, key)
	}
	e := b.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	return BarrierAction(ctx, e, key, do)
}

// Compensate applies a compensation exactly once; see
// [BarrierCompensation].
func (b *MemoryBarrier) Compensate(ctx context.Context, key Key, undo func(ctx context.Context) error) (bool, error) {
	if key.Kind != Compensation {
		return false, fmt.Errorf("%w: %q is not a compensation key", ErrInvalidKey, key)
	}
	e := b.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	return BarrierCompensation(ctx, e, key, undo)
}

// Forget drops the marks of every step of saga sagaID. Call it only once
// no delivery for the saga can arrive any more: a forgotten action that
// arrives late takes effect.
func (b *MemoryBarrier) Forget(sagaID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.steps {
		if k.saga == sagaID {
			delete(b.steps, k)
		}
	}
}
