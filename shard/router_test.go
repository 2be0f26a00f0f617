package shard_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/shard"
)

// recordingMover records calls and fails on demand.
type recordingMover struct {
	mu          sync.Mutex
	copies      []shard.Move
	cleanups    []shard.Move
	failCopy    int // fail this many Copy calls
	failCleanup int
}

func (m *recordingMover) Copy(_ context.Context, mv shard.Move) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failCopy > 0 {
		m.failCopy--
		return errors.New("copy failed")
	}
	m.copies = append(m.copies, mv)
	return nil
}

func (m *recordingMover) Cleanup(_ context.Context, mv shard.Move) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failCleanup > 0 {
		m.failCleanup--
		return errors.New("cleanup failed")
	}
	m.cleanups = append(m.cleanups, mv)
	return nil
}

func (m *recordingMover) counts() (int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.copies), len(m.cleanups)
}

func resources(names ...string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		out[n] = "res-" + n
	}
	return out
}

func TestNewRouterNeedsEveryShard(t *testing.T) {
	m := mustHash(t, shard.HashConfig{Partitions: 64}, "a", "b")
	_, err := shard.NewRouter(m, resources("a"))
	assert.ErrorIs(t, err, shard.ErrUnknownShard)
	r, err := shard.NewRouter(m, resources("a", "b", "spare"))
	require.NoError(t, err)
	rt := r.Route("k")
	assert.Equal(t, "res-"+rt.Shard, rt.Res)
	assert.Equal(t, uint64(1), rt.Epoch)
	assert.Empty(t, rt.Fallback)
}

func TestReshardErrors(t *testing.T) {
	ctx := context.Background()
	m := mustHash(t, shard.HashConfig{Partitions: 64}, "a", "b")
	next, err := m.AddShards("c")
	require.NoError(t, err)
	other, err := m.AddShards("d")
	require.NoError(t, err)

	r, err := shard.NewRouter(m, resources("a", "b"))
	require.NoError(t, err)
	assert.ErrorIs(t, r.Reshard(ctx, m, &recordingMover{}, nil), shard.ErrStaleEpoch)
	assert.ErrorIs(t, r.Reshard(ctx, mustRange(t, kr("", "", "a")), &recordingMover{}, nil), shard.ErrStaleEpoch)
	rangeNext, err := mustRange(t, kr("", "", "a")).Split("m", "b")
	require.NoError(t, err)
	assert.ErrorIs(t, r.Reshard(ctx, rangeNext, &recordingMover{}, nil), shard.ErrStrategy)
	assert.ErrorIs(t, r.Reshard(ctx, next, &recordingMover{}, nil), shard.ErrUnknownShard)
	assert.Error(t, r.Reshard(ctx, next, nil, resources("c")))
	assert.Same(t, m, r.Map(), "failed validation changes nothing")
	assert.False(t, r.Resharding())

	// A failed copy leaves the reshard in progress with fallback routing.
	mv := &recordingMover{failCopy: 1}
	err = r.Reshard(ctx, next, mv, resources("c"))
	var se *shard.ShardError
	require.ErrorAs(t, err, &se)
	assert.True(t, r.Resharding())
	assert.Same(t, next, r.Map())
	assert.ErrorIs(t, r.Reshard(ctx, other, mv, resources("d")), shard.ErrReshardInProgress)
	moving := 0
	for _, k := range keys(500, 1) {
		if rt := r.Route(k); rt.Fallback != "" {
			moving++
			assert.Equal(t, "c", rt.Shard)
			assert.Equal(t, m.Locate(k), rt.Fallback)
			assert.Equal(t, "res-"+rt.Fallback, rt.FallbackRes)
		}
	}
	assert.Positive(t, moving)

	// Calling again with the same map resumes and finishes it.
	require.NoError(t, r.Reshard(ctx, next, nil, nil))
	assert.False(t, r.Resharding())
	copies, cleanups := mv.counts()
	assert.Equal(t, 2, copies, "a moves to c and b moves to c")
	assert.Equal(t, 2, cleanups)
	for _, k := range keys(500, 1) {
		assert.Empty(t, r.Route(k).Fallback)
	}
}

func TestCleanupFailureResumesAndForgetsRemovedShards(t *testing.T) {
	ctx := context.Background()
	m := mustHash(t, shard.HashConfig{Partitions: 64}, "a", "b", "c")
	next, err := m.RemoveShards("b")
	require.NoError(t, err)
	r, err := shard.NewRouter(m, resources("a", "b", "c"))
	require.NoError(t, err)
	mv := &recordingMover{failCleanup: 1}
	err = r.Reshard(ctx, next, mv, nil)
	var se *shard.ShardError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "b", se.Shard)
	assert.True(t, r.Resharding())
	_, ok := r.Resource("b")
	assert.True(t, ok, "b is kept until its data is cleaned up")
	for _, k := range keys(300, 2) {
		assert.Empty(t, r.Route(k).Fallback, "the copy is done: no fallback while cleaning up")
	}
	require.NoError(t, r.Reshard(ctx, next, nil, nil))
	_, ok = r.Resource("b")
	assert.False(t, ok)
	copies, cleanups := mv.counts()
	assert.Equal(t, 2, copies)
	assert.Equal(t, 2, cleanups)
}

// TestReshardWaitsForOperationsRoutedByTheOldMap guards the step that keeps
// a write routed by the old map from landing on the old owner after its
// range was copied.
func TestReshardWaitsForOperationsRoutedByTheOldMap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustHash(t, shard.HashConfig{Partitions: 64}, "a", "b")
		next, err := m.AddShards("c")
		require.NoError(t, err)
		r, err := shard.NewRouter(m, resources("a", "b"))
		require.NoError(t, err)

		release := make(chan struct{})
		inFlight := make(chan shard.Route[string])
		go func() {
			_ = r.Do("key", func(rt shard.Route[string]) error {
				inFlight <- rt
				<-release
				return nil
			})
		}()
		old := <-inFlight
		assert.Equal(t, uint64(1), old.Epoch)

		mv := &recordingMover{}
		done := make(chan error)
		go func() { done <- r.Reshard(context.Background(), next, mv, resources("c")) }()
		synctest.Wait()
		copies, _ := mv.counts()
		assert.Zero(t, copies, "copied while an operation routed by epoch 1 was running")
		assert.Equal(t, uint64(2), r.Route("key").Epoch, "new operations already use the new map")

		close(release)
		require.NoError(t, <-done)
		copies, cleanups := mv.counts()
		assert.Equal(t, 2, copies)
		assert.Equal(t, 2, cleanups)
	})
}

func TestReshardCancelledWhileWaitingResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustRange(t, kr("", "", "a"))
		next, err := m.Split("m", "b")
		require.NoError(t, err)
		r, err := shard.NewRouter(m, resources("a"))
		require.NoError(t, err)

		release := make(chan struct{})
		held := make(chan struct{})
		go func() {
			_ = r.Do("x", func(shard.Route[string]) error {
				close(held)
				<-release
				return nil
			})
		}()
		<-held
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		mv := &recordingMover{}
		err = r.Reshard(ctx, next, mv, resources("b"))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.True(t, r.Resharding())
		rt := r.Route("x")
		assert.Equal(t, "b", rt.Shard)
		assert.Equal(t, "a", rt.Fallback)

		close(release)
		require.NoError(t, r.Reshard(context.Background(), next, mv, nil))
		assert.False(t, r.Resharding())
		assert.Equal(t, []shard.Move{{From: "a", To: "b", Ranges: []shard.Range{{Start: "m"}}}}, mv.copies)
	})
}

// gatedMover blocks each Copy until gate is closed.
type gatedMover struct {
	recordingMover
	gate chan struct{}
}

func (m *gatedMover) Copy(ctx context.Context, mv shard.Move) error {
	<-m.gate
	return m.recordingMover.Copy(ctx, mv)
}

// TestCleanupWaitsForReadersThatMayFallBack guards the step that keeps a
// read which missed on the new owner before the copy from finding the old
// owner already cleaned up.
func TestCleanupWaitsForReadersThatMayFallBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustRange(t, kr("", "", "a"))
		next, err := m.Split("m", "b")
		require.NoError(t, err)
		r, err := shard.NewRouter(m, resources("a"))
		require.NoError(t, err)
		mv := &gatedMover{gate: make(chan struct{})}
		done := make(chan error)
		go func() { done <- r.Reshard(context.Background(), next, mv, resources("b")) }()
		synctest.Wait() // Reshard now waits in Copy, in the moving state

		release := make(chan struct{})
		reading := make(chan shard.Route[string])
		go func() {
			_ = r.Do("x", func(rt shard.Route[string]) error {
				reading <- rt // read the new owner, found nothing...
				<-release     // ...and only now read the fallback
				return nil
			})
		}()
		rt := <-reading
		assert.Equal(t, "a", rt.Fallback)
		close(mv.gate)
		synctest.Wait()
		_, cleanups := mv.counts()
		assert.Zero(t, cleanups, "cleaned up the fallback while a reader could still need it")
		close(release)
		require.NoError(t, <-done)
		_, cleanups = mv.counts()
		assert.Equal(t, 1, cleanups)
	})
}
