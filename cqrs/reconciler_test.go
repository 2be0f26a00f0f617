package cqrs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
)

// lossyTotals is a totals table that drops the events of counters whose
// name starts with "lost" while *lossy is true: drift to repair.
func lossyTotals(lossy *atomic.Bool) *cqrs.Table[int] {
	return cqrs.NewTable(func(tx *cqrs.TableTx[int], ev eventsource.Event) error {
		if lossy.Load() && strings.HasPrefix(ev.StreamID, "counter-lost") {
			return nil
		}
		return applyTotals(tx, ev)
	})
}

func expectedTotals(t *testing.T, s eventsource.Store) map[string]int {
	t.Helper()
	want := map[string]int{}
	for ev, err := range s.ReadAll(context.Background(), 0, eventsource.Filter{}) {
		require.NoError(t, err)
		var a Added
		require.NoError(t, json.Unmarshal(ev.Data, &a))
		want[strings.TrimPrefix(ev.StreamID, "counter-")] += a.N
	}
	return want
}

func TestReconcilerRepairsDrift(t *testing.T) {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	var lossy atomic.Bool
	lossy.Store(true)
	rm, err := cqrs.NewReadModel(ctx, store, lossyTotals(&lossy), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "totals", New: newTotals})
	require.NoError(t, err)
	runModel(t, rm)
	var last uint64
	for i := range 3000 {
		name := fmt.Sprint("c", i%600)
		if i%250 == 0 {
			name = fmt.Sprint("lost", i)
		}
		last = appendRaw(t, store, name, 1+i%3)
	}
	require.NoError(t, rm.WaitFor(ctx, cqrs.Token(last)))
	lossy.Store(false)
	tok := cqrs.Token(appendRaw(t, store, "lost0", 5)) // a later event of a drifted row
	require.NoError(t, rm.WaitFor(ctx, tok))

	rec, err := cqrs.NewReconciler(rm, cqrs.ReconcilerConfig{MaxRows: 60})
	require.NoError(t, err)
	var repaired []string
	var cursor string
	passes := 0
	for {
		rep, err := rec.Pass(ctx)
		require.NoError(t, err)
		passes++
		assert.Equal(t, cursor, rep.Cursor)
		cursor = rep.Next
		assert.Less(t, rep.Compared, 60+30, "pass %d did far more work than MaxRows", passes)
		assert.GreaterOrEqual(t, rep.Checkpoint, uint64(tok))
		repaired = append(repaired, rep.Repaired...)
		if rep.SweepDone {
			break
		}
	}
	assert.Greater(t, passes, 5, "a sweep in a single pass: work per pass is not bounded")
	want := []string{}
	for i := 0; i < 3000; i += 250 {
		want = append(want, fmt.Sprint("lost", i))
	}
	assert.ElementsMatch(t, want, repaired)
	got, _ := rowsOf(rm.Current())
	assert.Equal(t, expectedTotals(t, store), got)
	st := rec.Stats()
	assert.Equal(t, uint64(passes), st.Passes)
	assert.Equal(t, uint64(len(want)), st.Repaired)
	assert.Equal(t, uint64(1), st.Sweeps)
	assert.Zero(t, st.Failures)

	// A second sweep finds nothing; the scratch copy is fed incrementally.
	for range passes {
		appendRaw(t, store, "c1", 1)
		rep, err := rec.Pass(ctx)
		require.NoError(t, err)
		assert.Empty(t, rep.Repaired)
	}
}

func TestReconcilerRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		store := eventsource.NewMemoryStore()
		var lossy atomic.Bool
		lossy.Store(true)
		rm, err := cqrs.NewReadModel(ctx, store, lossyTotals(&lossy), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "totals", New: newTotals})
		require.NoError(t, err)
		appendRaw(t, store, "lost1", 4)
		appendRaw(t, store, "ok", 1)
		p, err := eventsource.NewProjector(store, rm, eventsource.ProjectorConfig{})
		require.NoError(t, err)
		_, err = p.CatchUp(ctx)
		require.NoError(t, err)

		var reports []cqrs.Report
		var at []time.Duration
		start := time.Now()
		rec, err := cqrs.NewReconciler(rm, cqrs.ReconcilerConfig{Interval: time.Minute, OnPass: func(r cqrs.Report) {
			reports = append(reports, r)
			at = append(at, time.Since(start))
		}})
		require.NoError(t, err)
		done := make(chan error)
		go func() { done <- rec.Run(ctx) }()
		time.Sleep(150 * time.Second)
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		assert.Equal(t, []time.Duration{time.Minute, 2 * time.Minute}, at)
		require.Len(t, reports, 2)
		assert.Equal(t, []string{"lost1"}, reports[0].Repaired)
		assert.Empty(t, reports[1].Repaired)
		v, _ := rm.Current().Get("lost1")
		assert.Equal(t, 4, v)
	})
}

func TestReconcilerStoreFailure(t *testing.T) {
	ctx := context.Background()
	mem := eventsource.NewMemoryStore()
	for i := range 200 {
		appendRaw(t, mem, fmt.Sprint(i%10), 1)
	}
	var fail atomic.Bool
	store := &faultyStore{Store: mem, failAt: func() int {
		if fail.Load() {
			return 5
		}
		return -1
	}}
	rm, err := cqrs.NewReadModel(ctx, store, newTotals(), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "totals", New: newTotals, BatchSize: 10})
	require.NoError(t, err)
	p, _ := eventsource.NewProjector(mem, rm, eventsource.ProjectorConfig{})
	_, err = p.CatchUp(ctx)
	require.NoError(t, err)
	rec, err := cqrs.NewReconciler(rm, cqrs.ReconcilerConfig{})
	require.NoError(t, err)
	fail.Store(true)
	_, err = rec.Pass(ctx)
	require.ErrorIs(t, err, errInjected)
	assert.Contains(t, err.Error(), `reconcile "totals"`)
	fail.Store(false)
	rep, err := rec.Pass(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Repaired, "a scratch copy left half-fed by the failure was reused")
	assert.Equal(t, cqrs.ReconcilerStats{Passes: 1, Failures: 1, Compared: 10, Sweeps: 1}, rec.Stats())
}

func TestReconcilerConfigErrors(t *testing.T) {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	noNew, err := cqrs.NewReadModel(ctx, store, newTotals(), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "x"})
	require.NoError(t, err)
	ok, err := cqrs.NewReadModel(ctx, store, newTotals(), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "x", New: newTotals})
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		rm  *cqrs.ReadModel[*cqrs.Table[int]]
		cfg cqrs.ReconcilerConfig
	}{
		"nil read model":    {nil, cqrs.ReconcilerConfig{}},
		"no New":            {noNew, cqrs.ReconcilerConfig{}},
		"negative rows":     {ok, cqrs.ReconcilerConfig{MaxRows: -1}},
		"negative interval": {ok, cqrs.ReconcilerConfig{Interval: -time.Second}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cqrs.NewReconciler(tc.rm, tc.cfg)
			require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
		})
	}
}
