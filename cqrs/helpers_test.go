package cqrs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
)

// The test domain: counters that commands add to, and a read model of
// their totals.

var (
	errNoCounter   = errors.New("counter is empty")
	errNotPositive = errors.New("n must be positive")
	errTooBig      = errors.New("total would pass 1000")
)

type Add struct {
	Counter string
	N       int
}

func (a Add) Validate() error {
	switch {
	case a.Counter == "":
		return errNoCounter
	case a.N <= 0:
		return errNotPositive
	}
	return nil
}

type Added struct{ N int }

type Counter struct{ Total int }

func (c *Counter) Apply(e any) error {
	if a, ok := e.(Added); ok {
		c.Total += a.N
	}
	return nil
}

// TotalOf asks for a counter's total.
type TotalOf struct{ Counter string }

// Total is the answer: the total and the checkpoint it was read at.
type Total struct {
	Total      int
	Checkpoint uint64
}

func applyTotals(tx *cqrs.TableTx[int], ev eventsource.Event) error {
	if ev.Type != "counter.added" {
		return nil
	}
	var a Added
	if err := json.Unmarshal(ev.Data, &a); err != nil {
		return err
	}
	id := strings.TrimPrefix(ev.StreamID, "counter-")
	n, _ := tx.Get(id)
	tx.Put(id, n+a.N)
	return nil
}

func newTotals() *cqrs.Table[int] { return cqrs.NewTable(applyTotals) }

func readTotal(_ context.Context, t *cqrs.Table[int], q TotalOf) (Total, error) {
	var ans Total
	t.Read(func(get func(string) (int, bool), _ func(func(string, int) bool), cp uint64) {
		ans.Total, _ = get(q.Counter)
		ans.Checkpoint = cp
	})
	return ans, nil
}

type fixture struct {
	store   *eventsource.MemoryStore
	repo    *eventsource.Repository[*Counter]
	cmds    *cqrs.CommandBus
	totals  *cqrs.ReadModel[*cqrs.Table[int]]
	queries *cqrs.QueryBus
}

func decideAdd(_ context.Context, c Add, s *Counter) ([]any, error) {
	if s.Total+c.N > 1000 {
		return nil, errTooBig
	}
	return []any{Added{N: c.N}}, nil
}

func newFixture(t testing.TB, rmCfg cqrs.ReadModelConfig[*cqrs.Table[int]]) *fixture {
	t.Helper()
	f := &fixture{store: eventsource.NewMemoryStore()}
	reg := eventsource.NewRegistry(nil)
	require.NoError(t, eventsource.Register[Added](reg, "counter.added", 1))
	var err error
	f.repo, err = eventsource.NewRepository(f.store, reg, eventsource.RepositoryConfig[*Counter]{Type: "counter"})
	require.NoError(t, err)
	f.cmds, err = cqrs.NewCommandBus(cqrs.CommandBusConfig{})
	require.NoError(t, err)
	require.NoError(t, cqrs.HandleCommand(f.cmds, cqrs.OnAggregate(f.repo, func(c Add) string { return c.Counter }, decideAdd)))
	if rmCfg.Name == "" {
		rmCfg.Name = "totals"
	}
	if rmCfg.New == nil {
		rmCfg.New = newTotals
	}
	f.totals, err = cqrs.NewReadModel(context.Background(), f.store, newTotals(), rmCfg)
	require.NoError(t, err)
	f.queries, err = cqrs.NewQueryBus(cqrs.QueryBusConfig{})
	require.NoError(t, err)
	require.NoError(t, cqrs.HandleQuery(f.queries, f.totals, readTotal))
	return f
}

// add dispatches Add and marks the test failed on error. It may be
// called from any goroutine.
func (f *fixture) add(t testing.TB, ctx context.Context, counter string, n int) cqrs.Result {
	t.Helper()
	res, err := f.cmds.Dispatch(ctx, Add{Counter: counter, N: n})
	assert.NoError(t, err)
	return res
}

// appendRaw appends an Added event straight to the store.
func appendRaw(t testing.TB, s eventsource.Store, counter string, n int) uint64 {
	t.Helper()
	data, _ := json.Marshal(Added{N: n})
	res, err := s.Append(context.Background(), "counter-"+counter, eventsource.Any,
		eventsource.EventData{Type: "counter.added", Data: data})
	require.NoError(t, err)
	return res.Position
}
