package saga_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distkit/distkit/saga"
)

func TestBarrier(t *testing.T) {
	ctx := context.Background()
	act := saga.Key{SagaID: "s1", Step: "car", Kind: saga.Action}
	comp := saga.Key{SagaID: "s1", Step: "car", Kind: saga.Compensation}
	counting := func(n *int, out string) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { *n++; return []byte(out), nil }
	}
	undoing := func(n *int) func(context.Context) error {
		return func(context.Context) error { *n++; return nil }
	}

	t.Run("ActionOnceReturnsTheFirstOutput", func(t *testing.T) {
		var b saga.MemoryBarrier
		n := 0
		for i := range 3 {
			out, err := b.Action(ctx, act, counting(&n, fmt.Sprint("booking-", i)))
			if err != nil || string(out) != "booking-0" {
				t.Fatalf("delivery %d = %q, %v; want the first output", i, out, err)
			}
		}
		if n != 1 {
			t.Errorf("the action ran %d times", n)
		}
	})

	t.Run("FailedActionIsNotMarked", func(t *testing.T) {
		var b saga.MemoryBarrier
		_, err := b.Action(ctx, act, func(context.Context) ([]byte, error) { return nil, errors.New("db down") })
		if err == nil {
			t.Fatal("error swallowed")
		}
		n := 0
		if out, err := b.Action(ctx, act, counting(&n, "ok")); err != nil || string(out) != "ok" || n != 1 {
			t.Errorf("retry after a failure = %q, %v, ran %d", out, err, n)
		}
	})

	t.Run("CompensationAfterActionUndoesOnce", func(t *testing.T) {
		var b saga.MemoryBarrier
		n, u := 0, 0
		_, _ = b.Action(ctx, act, counting(&n, "x"))
		for range 3 {
			applied, err := b.Compensate(ctx, comp, undoing(&u))
			if err != nil {
				t.Fatal(err)
			}
			_ = applied
		}
		if u != 1 {
			t.Errorf("undo ran %d times", u)
		}
		// An action retried after its compensation is refused.
		_, err := b.Action(ctx, act, counting(&n, "x"))
		if !errors.Is(err, saga.ErrLateAction) || !errors.Is(err, saga.ErrFailed) || n != 1 {
			t.Errorf("action after compensation = %v (ran %d)", err, n)
		}
	})

	t.Run("NullCompensationThenLateActionIsRefused", func(t *testing.T) {
		var b saga.MemoryBarrier
		u, n := 0, 0
		applied, err := b.Compensate(ctx, comp, undoing(&u))
		if err != nil || applied || u != 0 {
			t.Fatalf("compensation of an action never applied = %v, %v, undo ran %d; want a recorded no-op", applied, err, u)
		}
		_, err = b.Action(ctx, act, counting(&n, "late"))
		if !errors.Is(err, saga.ErrLateAction) || n != 0 {
			t.Errorf("late action = %v, ran %d; want refused", err, n)
		}
		if saga.DefaultClassify(err) != saga.Failure {
			t.Errorf("a refused late action must be a business failure")
		}
	})

	t.Run("WrongKinds", func(t *testing.T) {
		var b saga.MemoryBarrier
		if _, err := b.Action(ctx, comp, counting(new(int), "")); !errors.Is(err, saga.ErrInvalidKey) {
			t.Errorf("Action with a compensation key: %v", err)
		}
		if _, err := b.Compensate(ctx, act, undoing(new(int))); !errors.Is(err, saga.ErrInvalidKey) {
			t.Errorf("Compensate with an action key: %v", err)
		}
		if _, err := saga.BarrierAction(ctx, nil, saga.Key{Kind: saga.Action}, nil); !errors.Is(err, saga.ErrInvalidKey) {
			t.Errorf("empty key: %v", err)
		}
	})

	t.Run("ForgetAllowsTheKeysAgain", func(t *testing.T) {
		var b saga.MemoryBarrier
		n := 0
		_, _ = b.Action(ctx, act, counting(&n, "x"))
		b.Forget("s1")
		_, _ = b.Action(ctx, act, counting(&n, "x"))
		if n != 2 {
			t.Errorf("after Forget the action ran %d times in all, want 2", n)
		}
	})

	t.Run("ConcurrentDeliveriesApplyOnce", func(t *testing.T) {
		var b saga.MemoryBarrier
		var acts, undos atomic.Int32
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				if i%2 == 0 {
					_, _ = b.Action(ctx, act, func(context.Context) ([]byte, error) { acts.Add(1); return nil, nil })
				} else {
					_, _ = b.Compensate(ctx, comp, func(context.Context) error { undos.Add(1); return nil })
				}
			})
		}
		wg.Wait()
		// Either the action won the race (applied, then undone once) or
		// the compensation did (a no-op, and every action refused).
		if a, u := acts.Load(), undos.Load(); a > 1 || a != u {
			t.Errorf("actions %d, undos %d; want equal and at most 1", a, u)
		}
	})
}

// mapTx is a BarrierTx over a map, as a service's table would be.
type mapTx map[saga.Key][]byte

func (m mapTx) Mark(_ context.Context, k saga.Key) ([]byte, bool, error) {
	v, ok := m[k]
	return v, ok, nil
}

func (m mapTx) SetMark(_ context.Context, k saga.Key, out []byte) error {
	m[k] = out
	return nil
}

func TestBarrierOverAServiceTable(t *testing.T) {
	ctx := context.Background()
	tx := mapTx{}
	act := saga.Key{SagaID: "s", Step: "pay", Kind: saga.Action}
	comp := saga.Key{SagaID: "s", Step: "pay", Kind: saga.Compensation}
	balance := 100
	out, err := saga.BarrierAction(ctx, tx, act, func(context.Context) ([]byte, error) { balance -= 30; return []byte("charged"), nil })
	if err != nil || string(out) != "charged" {
		t.Fatal(out, err)
	}
	_, _ = saga.BarrierAction(ctx, tx, act, func(context.Context) ([]byte, error) { balance -= 30; return nil, nil })
	applied, err := saga.BarrierCompensation(ctx, tx, comp, func(context.Context) error { balance += 30; return nil })
	if err != nil || !applied {
		t.Fatal(applied, err)
	}
	_, _ = saga.BarrierCompensation(ctx, tx, comp, func(context.Context) error { balance += 30; return nil })
	if balance != 100 || len(tx) != 2 {
		t.Errorf("balance %d, %d marks; want 100 and 2", balance, len(tx))
	}
	failing := errors.New("tx failed")
	tx2 := mapTx{}
	if _, err := saga.BarrierCompensation(ctx, tx2, comp, func(context.Context) error { return failing }); err != nil {
		t.Fatal("undo must not run for an action never applied:", err)
	}
	tx3 := mapTx{act: nil}
	if _, err := saga.BarrierCompensation(ctx, tx3, comp, func(context.Context) error { return failing }); !errors.Is(err, failing) {
		t.Errorf("undo error = %v", err)
	}
	if _, marked := tx3[comp]; marked {
		t.Error("a failed undo was marked")
	}
}
