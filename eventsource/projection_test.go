package eventsource_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/eventsource"
)

// balances is a read model: balance per account stream, plus how often
// each event was applied (to catch double application).
type balances struct {
	Balance map[string]int64
	Applied map[string]int // event ID -> times applied
}

func newBalances(reg *eventsource.Registry) *eventsource.MemoryProjection[balances] {
	return eventsource.NewMemoryProjection(balances{Balance: map[string]int64{}, Applied: map[string]int{}},
		func(b *balances, ev eventsource.Event) error {
			v, err := reg.Decode(ev)
			if err != nil {
				return err
			}
			switch e := v.(type) {
			case Deposited:
				b.Balance[ev.StreamID] += e.Amount
			case Withdrawn:
				b.Balance[ev.StreamID] -= e.Amount
			}
			b.Applied[ev.ID]++
			return nil
		})
}

func snapshotOf(p *eventsource.MemoryProjection[balances]) (map[string]int64, map[string]int, uint64) {
	var bal map[string]int64
	var applied map[string]int
	var cp uint64
	p.Read(func(b balances, c uint64) {
		bal, applied, cp = maps.Clone(b.Balance), maps.Clone(b.Applied), c
	})
	return bal, applied, cp
}

func seedAccounts(t *testing.T, s eventsource.Store, accounts, deposits int) map[string]int64 {
	t.Helper()
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{})
	want := map[string]int64{}
	for i := range deposits {
		id := fmt.Sprint(i % accounts)
		_, err := repo.Execute(context.Background(), id, deposit(int64(i)))
		require.NoError(t, err)
		want[repo.StreamID(id)] += int64(i)
	}
	return want
}

func TestProjectorCatchUp(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	want := seedAccounts(t, s, 3, 30)
	p := newBalances(accountRegistry(t))
	pr, err := eventsource.NewProjector(s, p, eventsource.ProjectorConfig{BatchSize: 7})
	require.NoError(t, err)
	cp, err := pr.CatchUp(ctx)
	require.NoError(t, err)
	head, _ := s.Head(ctx)
	assert.Equal(t, head, cp)
	bal, applied, pcp := snapshotOf(p)
	assert.Equal(t, want, bal)
	assert.Equal(t, head, pcp)
	for id, n := range applied {
		require.Equal(t, 1, n, "event %s applied %d times", id, n)
	}
	// Again: nothing new, nothing re-applied.
	cp, err = pr.CatchUp(ctx)
	require.NoError(t, err)
	assert.Equal(t, head, cp)
	_, applied, _ = snapshotOf(p)
	assert.Len(t, applied, int(head), "every event once")
}

// The checkpoint advances past events the filter skips, so a reader can
// tell the projection has caught up with any position.
func TestProjectorFilterAdvancesCheckpoint(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	seedAccounts(t, s, 2, 4)
	_, err := s.Append(ctx, "audit-1", eventsource.Any, eventsource.EventData{Type: "audit.seen"}, eventsource.EventData{Type: "audit.seen"})
	require.NoError(t, err)
	p := newBalances(accountRegistry(t))
	pr, err := eventsource.NewProjector(s, p, eventsource.ProjectorConfig{Filter: eventsource.Filter{Categories: []string{"account"}}})
	require.NoError(t, err)
	cp, err := pr.CatchUp(ctx)
	require.NoError(t, err)
	head, _ := s.Head(ctx)
	assert.Equal(t, head, cp)
	_, _, pcp := snapshotOf(p)
	assert.Equal(t, head, pcp)
}

func TestProjectorRunFollowsLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		s := eventsource.NewMemoryStore()
		want := seedAccounts(t, s, 2, 10)
		p := newBalances(accountRegistry(t))
		pr, err := eventsource.NewProjector(s, p, eventsource.ProjectorConfig{})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- pr.Run(ctx) }()
		synctest.Wait()
		bal, _, _ := snapshotOf(p)
		assert.Equal(t, want, bal, "caught up")

		repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{})
		_, err = repo.Execute(ctx, "0", deposit(1000))
		require.NoError(t, err)
		synctest.Wait()
		bal, _, cp := snapshotOf(p)
		assert.Equal(t, want["account-0"]+1000, bal["account-0"], "live event applied")
		head, _ := s.Head(ctx)
		assert.Equal(t, head, cp)

		cancel()
		err = <-done
		require.ErrorIs(t, err, context.Canceled)
	})
}

// flakyProjection fails Apply once at a chosen position, after applying
// nothing of that batch: a crash in the middle of projecting.
type flakyProjection struct {
	*eventsource.MemoryProjection[balances]
	mu     sync.Mutex
	failAt uint64
}

func (f *flakyProjection) Apply(ctx context.Context, events []eventsource.Event, cp uint64) error {
	f.mu.Lock()
	fail := f.failAt
	f.mu.Unlock()
	for _, e := range events {
		if e.Position == fail {
			f.mu.Lock()
			f.failAt = 0
			f.mu.Unlock()
			return errors.New("crash")
		}
	}
	return f.MemoryProjection.Apply(ctx, events, cp)
}

func TestProjectorCrashAndResumeAppliesEachEventOnce(t *testing.T) {
	ctx := context.Background()
	for _, failAt := range []uint64{1, 2, 17, 40} {
		t.Run(fmt.Sprint("FailAt", failAt), func(t *testing.T) {
			s := eventsource.NewMemoryStore()
			want := seedAccounts(t, s, 4, 36)
			p := &flakyProjection{MemoryProjection: newBalances(accountRegistry(t)), failAt: failAt}
			pr, err := eventsource.NewProjector(s, p, eventsource.ProjectorConfig{BatchSize: 5})
			require.NoError(t, err)
			_, err = pr.CatchUp(ctx)
			require.ErrorContains(t, err, "crash")
			_, _, cp := snapshotOf(p.MemoryProjection)
			assert.Less(t, cp, failAt, "the checkpoint stops before the failed batch")

			// A new projector (after the "restart") resumes from the checkpoint.
			pr, err = eventsource.NewProjector(s, p, eventsource.ProjectorConfig{BatchSize: 5})
			require.NoError(t, err)
			_, err = pr.CatchUp(ctx)
			require.NoError(t, err)
			bal, applied, _ := snapshotOf(p.MemoryProjection)
			assert.Equal(t, want, bal)
			for id, n := range applied {
				require.Equal(t, 1, n, "event %s applied %d times", id, n)
			}
		})
	}
}

func TestMemoryProjectionIgnoresAppliedEvents(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	seedAccounts(t, s, 1, 3)
	var evs []eventsource.Event
	for e, err := range s.ReadAll(ctx, 0, eventsource.Filter{}) {
		require.NoError(t, err)
		evs = append(evs, e)
	}
	p := newBalances(accountRegistry(t))
	require.NoError(t, p.Apply(ctx, evs[:3], 3))
	require.NoError(t, p.Apply(ctx, evs, 4)) // overlaps: 1..3 already applied
	require.NoError(t, p.Apply(ctx, evs[:2], 2))
	bal, applied, cp := snapshotOf(p)
	assert.Equal(t, uint64(4), cp, "the checkpoint never moves back")
	assert.Equal(t, map[string]int64{"account-0": 0 + 1 + 2}, bal)
	for id, n := range applied {
		require.Equal(t, 1, n, "event %s applied %d times", id, n)
	}
}

func TestMemoryProjectionApplyErrorKeepsEarlierEvents(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	p := eventsource.NewMemoryProjection(0, func(n *int, ev eventsource.Event) error {
		if ev.Position == 3 {
			return boom
		}
		*n += int(ev.Position)
		return nil
	})
	evs := []eventsource.Event{{Position: 1}, {Position: 2}, {Position: 3}, {Position: 4}}
	err := p.Apply(ctx, evs, 4)
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "event 3")
	p.Read(func(n int, cp uint64) {
		assert.Equal(t, 3, n)
		assert.Equal(t, uint64(2), cp)
	})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, p.Apply(cctx, evs[3:], 4), context.Canceled)
}

func TestMemoryProjectionNilApplyIsAnError(t *testing.T) {
	p := eventsource.NewMemoryProjection[int](0, nil)
	err := p.Apply(context.Background(), []eventsource.Event{{Position: 1}}, 1)
	require.ErrorIs(t, err, eventsource.ErrInvalidConfig)
	p.Read(func(_ int, cp uint64) { assert.Zero(t, cp, "the checkpoint moved without applying") })
}

func TestRebuild(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	want := seedAccounts(t, s, 3, 20)
	old := newBalances(accountRegistry(t))
	_, err := eventsource.Rebuild(ctx, s, old, eventsource.ProjectorConfig{})
	require.NoError(t, err)

	fresh := newBalances(accountRegistry(t))
	cp, err := eventsource.Rebuild(ctx, s, fresh, eventsource.ProjectorConfig{BatchSize: 3})
	require.NoError(t, err)
	head, _ := s.Head(ctx)
	assert.Equal(t, head, cp)
	bal, _, _ := snapshotOf(fresh)
	assert.Equal(t, want, bal)

	_, err = eventsource.Rebuild(ctx, s, old, eventsource.ProjectorConfig{})
	require.ErrorIs(t, err, eventsource.ErrProjectionNotEmpty)
}

func TestNewProjectorConfigErrors(t *testing.T) {
	s := eventsource.NewMemoryStore()
	p := eventsource.NewMemoryProjection(0, func(*int, eventsource.Event) error { return nil })
	for name, err := range map[string]error{
		"NilStore":      errOf(eventsource.NewProjector(nil, p, eventsource.ProjectorConfig{})),
		"NilProjection": errOf(eventsource.NewProjector(s, nil, eventsource.ProjectorConfig{})),
		"NegativeBatch": errOf(eventsource.NewProjector(s, p, eventsource.ProjectorConfig{BatchSize: -1})),
	} {
		assert.ErrorIs(t, err, eventsource.ErrInvalidConfig, name)
	}
}

func TestMemoryProjectionWaitFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := eventsource.NewMemoryStore()
		p := newBalances(accountRegistry(t))
		pr, err := eventsource.NewProjector(s, p, eventsource.ProjectorConfig{})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- pr.Run(ctx) }()

		cp, err := p.WaitFor(ctx, 0)
		require.NoError(t, err)
		assert.Zero(t, cp)

		// A write's position is the token its reader waits for.
		repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{})
		res, err := repo.Execute(ctx, "1", deposit(42))
		require.NoError(t, err)
		cp, err = p.WaitFor(ctx, res.Position)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, cp, res.Position)
		bal, _, _ := snapshotOf(p)
		assert.Equal(t, int64(42), bal["account-1"])

		// A token from the future times out, in fake time.
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		defer wcancel()
		_, err = p.WaitFor(wctx, res.Position+10)
		require.ErrorIs(t, err, context.DeadlineExceeded)

		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
}
