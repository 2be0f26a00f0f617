package election_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/stretchr/testify/require"
)

func TestFence(t *testing.T) {
	var f election.Fence
	require.ErrorIs(t, f.Check(0), election.ErrInvalidToken)
	require.NoError(t, f.Check(5))
	require.NoError(t, f.Check(5), "the same leader writes again")
	err := f.Check(4)
	var se *election.StaleTokenError
	require.ErrorAs(t, err, &se)
	require.Equal(t, uint64(4), se.Token)
	require.Equal(t, uint64(5), se.Highest)
	called := false
	require.ErrorIs(t, f.Do(3, func() error { called = true; return nil }), election.ErrStaleToken)
	require.False(t, called, "a stale write must not run")
	require.NoError(t, f.Do(7, func() error { called = true; return nil }))
	require.True(t, called)
	require.Equal(t, uint64(7), f.Highest())
	require.Equal(t, election.FenceStats{Accepted: 3, Rejected: 3}, f.Stats())
}

// TestCancelledCampaignLeavesNoLease guards "no lease outlives a
// cancelled Campaign": the sequence candidate's entry is deleted.
func TestCancelledCampaignLeavesNoLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := election.NewMemoryStore()
		ctx := context.Background()
		holder, err := election.NewLease(store, election.LeaseConfig{ID: "holder", Key: "q/"})
		require.NoError(t, err)
		go holder.Run(ctx)
		_, err = holder.Campaign(ctx)
		require.NoError(t, err)
		el, err := election.NewSequence(store, election.LeaseConfig{ID: "c"})
		require.NoError(t, err)
		go el.Run(ctx)
		other, _ := election.NewSequence(store, election.LeaseConfig{ID: "first"})
		go other.Run(ctx)
		_, err = other.Campaign(ctx)
		require.NoError(t, err)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = el.Campaign(cctx)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		time.Sleep(time.Second)
		synctest.Wait()
		ls, err := store.List(ctx, election.DefaultSequencePrefix)
		require.NoError(t, err)
		require.Len(t, ls, 1, "only the leader's entry remains: %+v", ls)
		require.NoError(t, other.Close())
		require.NoError(t, el.Close())
		require.NoError(t, holder.Close())
		ls, _ = store.List(ctx, "")
		require.Empty(t, ls, "Close released every lease: %+v", ls)
	})
}

// TestLeaseLostEndsTermPromptly: when another holder takes the lease
// (the store lost it), the leader's term ends at its next renewal with
// ErrLeaseLost, long before its deadline.
func TestLeaseLostEndsTermPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := election.NewMemoryStore()
		ctx := context.Background()
		el, err := election.NewLease(store, election.LeaseConfig{ID: "a"})
		require.NoError(t, err)
		go el.Run(ctx)
		defer el.Close()
		term, err := el.Campaign(ctx)
		require.NoError(t, err)
		require.NoError(t, store.Release(ctx, election.DefaultLeaseKey, term.Token())) // behind its back
		start := time.Now()
		<-term.Done()
		require.ErrorIs(t, context.Cause(term.Context()), election.ErrLeaseLost)
		require.LessOrEqual(t, time.Since(start), election.DefaultRetryPeriod)
	})
}

// TestTermEndsBeforeLeaseExpires: a leader cut off from its store (every
// call fails, its release too) ends its term RenewDeadline after its
// last successful renewal, while the store still holds its lease, and a
// rival that reaches the store is granted the lease only when it expires
// there, at least LeaseDuration - RenewDeadline (the documented safety
// margin) after the cut-off leader stopped.
//
// It used to read the store after the term ended while the leader's own
// best-effort Release went through, racing with it; now the cut-off
// leader cannot release, as a real partition would have it.
func TestTermEndsBeforeLeaseExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := election.NewMemoryStore()
		store := &cutStore{MemoryStore: mem}
		ctx := context.Background()
		a, err := election.NewLease(store, election.LeaseConfig{ID: "a"})
		require.NoError(t, err)
		go a.Run(ctx)
		defer a.Close()
		term, err := a.Campaign(ctx)
		require.NoError(t, err)

		b, err := election.NewLease(mem, election.LeaseConfig{ID: "b"})
		require.NoError(t, err)
		go b.Run(ctx)
		defer b.Close()
		bTerm := make(chan *election.Term, 1)
		go func() {
			bt, err := b.Campaign(ctx)
			if err == nil {
				bTerm <- bt
			}
		}()

		// A few renewals go through, then the store becomes unreachable.
		time.Sleep(2*election.DefaultRetryPeriod + election.DefaultRetryPeriod/2)
		lastRenewal := store.cut()
		require.Equal(t, term.Started().Add(2*election.DefaultRetryPeriod), lastRenewal, "a renewed every RetryPeriod")

		select {
		case <-term.Done():
		case bt := <-bTerm:
			t.Fatalf("b granted token %d at %v while a's term %d is live", bt.Token(), bt.Started(), term.Token())
		}
		ended := time.Now()
		require.ErrorIs(t, context.Cause(term.Context()), election.ErrLeadershipLost)
		require.LessOrEqual(t, ended.Sub(lastRenewal), election.DefaultRenewDeadline,
			"the term outlived RenewDeadline after the last successful renewal")
		l, err := mem.Get(ctx, election.DefaultLeaseKey)
		require.NoError(t, err, "the term ended while the store still held the lease")
		require.Equal(t, term.Token(), l.Epoch)

		bt := <-bTerm
		require.Greater(t, bt.Token(), term.Token())
		require.GreaterOrEqual(t, bt.Started().Sub(ended), election.DefaultLeaseDuration-election.DefaultRenewDeadline,
			"b was granted the lease within the safety margin of a's term ending")
	})
}

func TestObservationSkipsOldestNotLatest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := election.NewMemoryStore()
		ctx := context.Background()
		el, _ := election.NewLease(store, election.LeaseConfig{ID: "a", ObserveBuffer: 2})
		go el.Run(ctx)
		defer el.Close()
		obs := el.Observe()
		for range 5 {
			term, err := el.Campaign(ctx)
			require.NoError(t, err)
			require.NoError(t, el.Resign(ctx))
			<-term.Done()
		}
		synctest.Wait()
		first, err := obs.Next(ctx)
		require.NoError(t, err)
		require.Positive(t, first.Skipped)
		last, err := obs.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, "", last.Leader.ID, "the latest state, no leader, is kept")
		require.NoError(t, obs.Close())
		_, err = obs.Next(ctx)
		require.ErrorIs(t, err, election.ErrClosed)
	})
}

func TestConfigValidation(t *testing.T) {
	s := election.NewMemoryStore()
	for name, cfg := range map[string]election.LeaseConfig{
		"no ID":           {},
		"renew >= lease":  {ID: "a", LeaseDuration: time.Second, RenewDeadline: time.Second},
		"retry too long":  {ID: "a", RenewDeadline: time.Second, RetryPeriod: time.Second},
		"negative":        {ID: "a", RetryPeriod: -1},
		"negative buffer": {ID: "a", ObserveBuffer: -1},
	} {
		_, err := election.NewLease(s, cfg)
		require.ErrorIs(t, err, election.ErrInvalidConfig, name)
	}
	_, err := election.NewLease(nil, election.LeaseConfig{ID: "a"})
	require.ErrorIs(t, err, election.ErrInvalidConfig)
	tr := listenUDP(t)
	defer tr.Close()
	for name, cfg := range map[string]election.RaftConfig{
		"no peers":      {ID: "a"},
		"dup peer":      {ID: "a", Peers: []election.Peer{{ID: "b", Addr: "x"}, {ID: "b", Addr: "y"}}},
		"self as peer":  {ID: "a", Peers: []election.Peer{{ID: "a", Addr: "x"}}},
		"lease >= elec": {ID: "a", Peers: []election.Peer{{ID: "b", Addr: "x"}}, ElectionTimeout: time.Second, LeaseTimeout: time.Second},
		"no addr":       {ID: "a", Peers: []election.Peer{{ID: "b"}}},
	} {
		_, err := election.NewRaft(tr, cfg)
		require.ErrorIs(t, err, election.ErrInvalidConfig, name)
	}
}

func TestClosedElector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		el, _ := election.NewLease(election.NewMemoryStore(), election.LeaseConfig{ID: "a"})
		ctx := context.Background()
		done := make(chan error, 1)
		go func() { _, err := el.Campaign(ctx); done <- err }()
		synctest.Wait()
		require.NoError(t, el.Close())
		require.NoError(t, el.Close())
		require.ErrorIs(t, <-done, election.ErrClosed)
		require.ErrorIs(t, el.Run(ctx), election.ErrClosed)
		_, err := el.Campaign(ctx)
		require.ErrorIs(t, err, election.ErrClosed)
	})
}

// cutStore is a MemoryStore that its elector can reach until cut: from
// then on every call fails, as in a partition from the store.
type cutStore struct {
	*election.MemoryStore
	mu      sync.Mutex
	isCut   bool
	renewed time.Time // start of the latest successful Renew
}

var errUnreachable = errors.New("store unreachable")

// cut makes the store unreachable and returns when the latest
// successful renewal started.
func (s *cutStore) cut() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.isCut = true
	return s.renewed
}

func (s *cutStore) down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isCut
}

func (s *cutStore) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (election.Lease, error) {
	if s.down() {
		return election.Lease{}, errUnreachable
	}
	return s.MemoryStore.Acquire(ctx, key, holder, ttl)
}

func (s *cutStore) Renew(ctx context.Context, key string, epoch uint64, ttl time.Duration) (election.Lease, error) {
	start := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isCut {
		return election.Lease{}, errUnreachable
	}
	l, err := s.MemoryStore.Renew(ctx, key, epoch, ttl)
	if err == nil {
		s.renewed = start
	}
	return l, err
}

func (s *cutStore) Release(ctx context.Context, key string, epoch uint64) error {
	if s.down() {
		return errUnreachable
	}
	return s.MemoryStore.Release(ctx, key, epoch)
}

func (s *cutStore) Get(ctx context.Context, key string) (election.Lease, error) {
	if s.down() {
		return election.Lease{}, errUnreachable
	}
	return s.MemoryStore.Get(ctx, key)
}

func (s *cutStore) Watch(ctx context.Context, key string, epoch uint64) error {
	if s.down() {
		return errUnreachable
	}
	return s.MemoryStore.Watch(ctx, key, epoch)
}
