package election_test

import (
	"context"
	"errors"
	"sync/atomic"
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

// TestTermEndsBeforeLeaseExpires: a leader cut off from its store stops
// at RenewDeadline, before the store lets anyone else in.
func TestTermEndsBeforeLeaseExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &failingStore{MemoryStore: election.NewMemoryStore()}
		ctx := context.Background()
		el, _ := election.NewLease(store, election.LeaseConfig{ID: "a"})
		go el.Run(ctx)
		defer el.Close()
		term, err := el.Campaign(ctx)
		require.NoError(t, err)
		store.fail.Store(true)
		<-term.Done()
		ended := time.Since(term.Started())
		require.ErrorIs(t, context.Cause(term.Context()), election.ErrLeadershipLost)
		require.LessOrEqual(t, ended, election.DefaultRenewDeadline+election.DefaultRetryPeriod)
		_, err = store.MemoryStore.Get(ctx, election.DefaultLeaseKey)
		require.NoError(t, err, "the term ended while the store still held the lease")
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

type failingStore struct {
	*election.MemoryStore
	fail atomic.Bool
}

func (f *failingStore) Renew(ctx context.Context, key string, epoch uint64, ttl time.Duration) (election.Lease, error) {
	if f.fail.Load() {
		return election.Lease{}, errors.New("store unreachable")
	}
	return f.MemoryStore.Renew(ctx, key, epoch, ttl)
}
