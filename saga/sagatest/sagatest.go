// Package sagatest is the conformance suite for implementations of
// saga.Store. Every store, saga.MemoryStore and saga.EventStore included,
// must pass it:
//
//	func TestStore(t *testing.T) {
//		sagatest.Run(t, func(t *testing.T) saga.Store { return newMyStore(t) })
//	}
//
// Each subtest gets a fresh, empty store from newStore.
package sagatest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/saga"
)

// Run checks that the stores made by newStore behave as saga.Store
// documents: versions, optimistic concurrency with exactly one winner per
// version, copies, listing by state with paging, errors and cancellation.
func Run(t *testing.T, newStore func(t *testing.T) saga.Store) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := func(typ saga.RecordType, st saga.State, d time.Duration) saga.Record {
		return saga.Record{Type: typ, State: st, Time: t0.Add(d)}
	}
	started := func(name string) saga.Record {
		r := rec(saga.RecordStarted, saga.Running, 0)
		r.Saga, r.Data = name, []byte(`{"in":1}`)
		return r
	}

	t.Run("LoadMissing", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Load(ctx, "nope")
		if !errors.Is(err, saga.ErrNotFound) {
			t.Fatalf("Load of a missing saga: got %v, want ErrNotFound", err)
		}
	})

	t.Run("AppendAndLoad", func(t *testing.T) {
		s := newStore(t)
		r2 := saga.Record{Type: saga.RecordStepStarted, State: saga.Running, Step: "flight", Attempt: 1, Time: t0.Add(time.Second)}
		r3 := saga.Record{Type: saga.RecordStepSucceeded, State: saga.Running, Step: "flight", Attempt: 1, Data: []byte("out"), Error: "", Time: t0.Add(2 * time.Second)}
		v, err := s.Append(ctx, "trip-1", 0, started("trip"))
		if err != nil || v != 1 {
			t.Fatalf("first Append = %d, %v; want 1, nil", v, err)
		}
		r2.Version = 99 // ignored
		v, err = s.Append(ctx, "trip-1", 1, r2, r3)
		if err != nil || v != 3 {
			t.Fatalf("second Append = %d, %v; want 3, nil", v, err)
		}
		got, err := s.Load(ctx, "trip-1")
		if err != nil {
			t.Fatal(err)
		}
		want := []saga.Record{started("trip"), r2, r3}
		for i := range want {
			want[i].Version = uint64(i + 1)
		}
		checkRecords(t, got, want)
	})

	t.Run("AllFieldsRoundTrip", func(t *testing.T) {
		s := newStore(t)
		r := saga.Record{Type: saga.RecordStuck, State: saga.Stuck, Saga: "x", Step: "s", Attempt: 7,
			Data: []byte{0, 1, 2, 255}, Error: "boom \u00e9\n", Time: t0.Add(123456789 * time.Nanosecond)}
		if _, err := s.Append(ctx, "id/with:odd-chars", 0, r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx, "id/with:odd-chars")
		if err != nil {
			t.Fatal(err)
		}
		r.Version = 1
		checkRecords(t, got, []saga.Record{r})
	})

	t.Run("Conflict", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Append(ctx, "a", 0, started("trip")); err != nil {
			t.Fatal(err)
		}
		for _, expected := range []uint64{0, 2, 5} {
			_, err := s.Append(ctx, "a", expected, rec(saga.RecordCompleted, saga.Completed, time.Second))
			var ce *saga.ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, saga.ErrConflict) {
				t.Fatalf("Append expecting %d on a log at 1: got %v, want a *ConflictError", expected, err)
			}
			if ce.SagaID != "a" || ce.Expected != expected || ce.Actual != 1 {
				t.Errorf("ConflictError = %+v, want saga a, expected %d, actual 1", *ce, expected)
			}
		}
		_, err := s.Append(ctx, "b", 3, started("trip"))
		if !errors.Is(err, saga.ErrConflict) {
			t.Errorf("Append expecting 3 to a new saga: got %v, want ErrConflict", err)
		}
		got, _ := s.Load(ctx, "a")
		if len(got) != 1 {
			t.Errorf("after refused appends the log has %d records, want 1", len(got))
		}
		if _, err := s.Load(ctx, "b"); !errors.Is(err, saga.ErrNotFound) {
			t.Errorf("a refused first append created the saga: Load = %v", err)
		}
	})

	t.Run("InvalidAppend", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Append(ctx, "", 0, started("trip")); !errors.Is(err, saga.ErrInvalidAppend) {
			t.Errorf("empty saga ID: got %v, want ErrInvalidAppend", err)
		}
		if _, err := s.Append(ctx, "a", 0); !errors.Is(err, saga.ErrInvalidAppend) {
			t.Errorf("no records: got %v, want ErrInvalidAppend", err)
		}
		if _, err := s.Load(ctx, "a"); !errors.Is(err, saga.ErrNotFound) {
			t.Errorf("an invalid append stored something: Load = %v", err)
		}
	})

	t.Run("OneWinnerPerVersion", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Append(ctx, "race", 0, started("trip")); err != nil {
			t.Fatal(err)
		}
		const writers, rounds = 8, 20
		for round := range rounds {
			var wg sync.WaitGroup
			wins := make(chan int, writers)
			for w := range writers {
				wg.Go(func() {
					r := saga.Record{Type: saga.RecordStepUnknown, State: saga.Running, Step: fmt.Sprint(w), Attempt: round}
					_, err := s.Append(ctx, "race", uint64(round+1), r)
					switch {
					case err == nil:
						wins <- w
					case !errors.Is(err, saga.ErrConflict):
						t.Errorf("racing Append: %v", err)
					}
				})
			}
			wg.Wait()
			close(wins)
			n := 0
			for range wins {
				n++
			}
			if n != 1 {
				t.Fatalf("round %d: %d appends won version %d, want exactly 1", round, n, round+2)
			}
		}
		got, err := s.Load(ctx, "race")
		if err != nil || len(got) != rounds+1 {
			t.Fatalf("Load = %d records, %v; want %d", len(got), err, rounds+1)
		}
		for i, r := range got {
			if r.Version != uint64(i+1) {
				t.Fatalf("record %d has version %d", i, r.Version)
			}
		}
	})

	t.Run("Copies", func(t *testing.T) {
		s := newStore(t)
		r := started("trip")
		if _, err := s.Append(ctx, "c", 0, r); err != nil {
			t.Fatal(err)
		}
		r.Data[0] = 'X' // the caller reuses its buffer
		got, _ := s.Load(ctx, "c")
		if string(got[0].Data) != `{"in":1}` {
			t.Fatalf("the store kept the caller's buffer: %q", got[0].Data)
		}
		got[0].Data[0] = 'Y'
		again, _ := s.Load(ctx, "c")
		if string(again[0].Data) != `{"in":1}` {
			t.Fatalf("Load returned the store's own buffer: %q", again[0].Data)
		}
	})

	t.Run("List", func(t *testing.T) {
		s := newStore(t)
		if got, err := s.List(ctx, saga.Query{}); err != nil || len(got) != 0 {
			t.Fatalf("List of an empty store = %v, %v", got, err)
		}
		states := map[string]saga.State{"s3": saga.Running, "s1": saga.Completed, "s2": saga.Stuck, "s5": saga.Compensating, "s4": saga.Running}
		for id, st := range states {
			if _, err := s.Append(ctx, id, 0, started("trip")); err != nil {
				t.Fatal(err)
			}
			if st != saga.Running {
				if _, err := s.Append(ctx, id, 1, rec(saga.RecordStepStarted, saga.Running, time.Second), rec("x", st, 2*time.Second)); err != nil {
					t.Fatal(err)
				}
			}
		}
		all, err := s.List(ctx, saga.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if ids := idsOf(all); fmt.Sprint(ids) != "[s1 s2 s3 s4 s5]" {
			t.Fatalf("List = %v, want every saga ordered by ID", ids)
		}
		for _, sum := range all {
			wantVersion, wantUpdated := uint64(3), t0.Add(2*time.Second)
			if states[sum.ID] == saga.Running {
				wantVersion, wantUpdated = 1, t0
			}
			if sum.Name != "trip" || sum.State != states[sum.ID] || sum.Version != wantVersion ||
				!sum.Created.Equal(t0) || !sum.Updated.Equal(wantUpdated) {
				t.Errorf("summary %+v: want name trip, state %s, version %d, created %v, updated %v",
					sum, states[sum.ID], wantVersion, t0, wantUpdated)
			}
		}
		unfinished, _ := s.List(ctx, saga.Query{States: []saga.State{saga.Running, saga.Compensating}})
		if ids := idsOf(unfinished); fmt.Sprint(ids) != "[s3 s4 s5]" {
			t.Errorf("List of running and compensating = %v, want [s3 s4 s5]", ids)
		}
		page, _ := s.List(ctx, saga.Query{Limit: 2})
		if ids := idsOf(page); fmt.Sprint(ids) != "[s1 s2]" {
			t.Errorf("first page = %v, want [s1 s2]", ids)
		}
		page, _ = s.List(ctx, saga.Query{After: "s2", Limit: 2})
		if ids := idsOf(page); fmt.Sprint(ids) != "[s3 s4]" {
			t.Errorf("second page = %v, want [s3 s4]", ids)
		}
		page, _ = s.List(ctx, saga.Query{After: "s4", States: []saga.State{saga.Running}})
		if len(page) != 0 {
			t.Errorf("page after s4 of running sagas = %v, want none", idsOf(page))
		}
		// A later append changes the state List reports.
		if _, err := s.Append(ctx, "s3", 1, rec(saga.RecordCompleted, saga.Completed, time.Minute)); err != nil {
			t.Fatal(err)
		}
		done, _ := s.List(ctx, saga.Query{States: []saga.State{saga.Completed}})
		if ids := idsOf(done); fmt.Sprint(ids) != "[s1 s3]" {
			t.Errorf("completed after an update = %v, want [s1 s3]", ids)
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Append(ctx, "k", 0, started("trip")); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Append(cctx, "k", 1, rec(saga.RecordCompleted, saga.Completed, time.Second)); !errors.Is(err, context.Canceled) {
			t.Errorf("Append with a cancelled context: got %v, want context.Canceled", err)
		}
		if _, err := s.Load(cctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("Load with a cancelled context: got %v, want context.Canceled", err)
		}
		if _, err := s.List(cctx, saga.Query{}); !errors.Is(err, context.Canceled) {
			t.Errorf("List with a cancelled context: got %v, want context.Canceled", err)
		}
		got, err := s.Load(ctx, "k")
		if err != nil || len(got) != 1 {
			t.Errorf("a cancelled Append changed the log: %d records, %v", len(got), err)
		}
	})
}

func idsOf(sums []saga.Summary) []string {
	ids := make([]string, len(sums))
	for i, s := range sums {
		ids[i] = s.ID
	}
	return ids
}

func checkRecords(t *testing.T, got, want []saga.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Version != w.Version || g.Type != w.Type || g.State != w.State || g.Saga != w.Saga || g.Step != w.Step ||
			g.Attempt != w.Attempt || string(g.Data) != string(w.Data) || g.Error != w.Error || !g.Time.Equal(w.Time) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}
