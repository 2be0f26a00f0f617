package shard_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/shard"
)

func TestScatterBoundsConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustHash(t, shard.HashConfig{Partitions: 64}, names(8)...)
		r, err := shard.NewRouter(m, resources(names(8)...))
		require.NoError(t, err)
		var running, peak atomic.Int32
		gate := make(chan struct{})
		done := make(chan error)
		go func() {
			done <- r.Scatter(context.Background(), 3, func(_ context.Context, _ string, _ string) error {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-gate
				running.Add(-1)
				return nil
			})
		}()
		synctest.Wait()
		assert.Equal(t, int32(3), running.Load(), "limit 3 runs exactly three at a time")
		close(gate)
		require.NoError(t, <-done)
		assert.Equal(t, int32(3), peak.Load())
	})
}

func TestGatherReportsEveryFailedShard(t *testing.T) {
	m := mustHash(t, shard.HashConfig{Partitions: 64}, "a", "b", "c", "d")
	r, err := shard.NewRouter(m, resources("a", "b", "c", "d"))
	require.NoError(t, err)
	boom := errors.New("boom")
	got, err := shard.Gather(context.Background(), r, 0, func(_ context.Context, name, res string) (string, error) {
		if name == "b" || name == "d" {
			return "", boom
		}
		return res, nil
	})
	assert.Equal(t, map[string]string{"a": "res-a", "c": "res-c"}, got)
	require.ErrorIs(t, err, boom)
	var failed []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var se *shard.ShardError
		require.ErrorAs(t, e, &se)
		failed = append(failed, se.Shard)
	}
	assert.Equal(t, []string{"b", "d"}, failed)
}

func TestScatterStopsStartingShardsOnCancel(t *testing.T) {
	m := mustHash(t, shard.HashConfig{Partitions: 64}, names(6)...)
	r, err := shard.NewRouter(m, resources(names(6)...))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var called []string
	err = r.Scatter(ctx, 1, func(_ context.Context, name, _ string) error {
		mu.Lock()
		defer mu.Unlock()
		called = append(called, name)
		cancel() // the first shard cancels the whole operation
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Len(t, called, 1)
	n := len(err.(interface{ Unwrap() []error }).Unwrap())
	assert.Equal(t, 5, n, "every shard that did not run reports ctx.Err()")
}

func TestScatterCoversOldOwnersWhileResharding(t *testing.T) {
	m := mustHash(t, shard.HashConfig{Partitions: 64}, "a", "b", "c")
	r, err := shard.NewRouter(m, resources("a", "b", "c"))
	require.NoError(t, err)
	next, err := m.RemoveShards("c")
	require.NoError(t, err)
	ctx := context.Background()
	require.Error(t, r.Reshard(ctx, next, &recordingMover{failCopy: 1}, nil))
	got, err := shard.Gather(ctx, r, 0, func(_ context.Context, name, _ string) (bool, error) { return true, nil })
	require.NoError(t, err)
	assert.Len(t, got, 3, "c still holds data until the copy is done")
	require.NoError(t, r.Reshard(ctx, next, &recordingMover{}, nil))
	got, err = shard.Gather(ctx, r, 0, func(_ context.Context, name, _ string) (bool, error) { return true, nil })
	require.NoError(t, err)
	assert.Len(t, got, 2)
}
