package shard_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/shard"
)

// kvWorkload runs writers and readers against kv while reshard is called
// with each map in steps, and checks that no key is ever lost or hidden:
//
//   - each writer owns a set of keys, writes increasing versions and must
//     read back exactly what it wrote last (or ErrNotFound after deleting);
//   - readers read keys that are never deleted and must always find them,
//     with versions that never go back;
//   - at the end the store's content equals the writers' model and every
//     shard holds only the keys it owns.
func kvWorkload(t *testing.T, kv *shard.KV, steps []*shard.Map) {
	const nKeys, writers, readers = 3000, 3, 2
	keyOf := func(i int) string { return fmt.Sprintf("key-%04d", i) }
	// Keys with i%5 == 0 may be deleted; the others are always present.
	deletable := func(i int) bool { return i%5 == 0 }
	for i := range nKeys {
		kv.Put(keyOf(i), []byte("0"))
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers)
	models := make([]map[string]string, writers) // key -> value, "" if deleted
	var ops, opsDuring atomic.Int64
	var resharding atomic.Bool
	for w := range writers {
		models[w] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			model := models[w]
			version := 0
			for !stop.Load() {
				i := rng.IntN(nKeys/writers)*writers + w
				k := keyOf(i)
				version++
				if deletable(i) && rng.IntN(3) == 0 {
					kv.Delete(k)
					model[k] = ""
					if v, err := kv.Get(k); !errors.Is(err, shard.ErrNotFound) {
						errs <- fmt.Errorf("writer %d: %s deleted, then read %q, %v", w, k, v, err)
						return
					}
				} else {
					val := strconv.Itoa(version)
					kv.Put(k, []byte(val))
					model[k] = val
					if v, err := kv.Get(k); err != nil || string(v) != val {
						errs <- fmt.Errorf("writer %d: %s = %s written, then read %q, %v", w, k, val, v, err)
						return
					}
				}
				ops.Add(1)
				if resharding.Load() {
					opsDuring.Add(1)
				}
			}
		}()
	}
	for rd := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(rd), 10))
			seen := map[string]int{}
			for !stop.Load() {
				i := rng.IntN(nKeys)
				if deletable(i) {
					continue
				}
				k := keyOf(i)
				v, err := kv.Get(k)
				if err != nil {
					errs <- fmt.Errorf("reader %d: %s: %v", rd, k, err)
					return
				}
				n, _ := strconv.Atoi(string(v))
				if n < seen[k] {
					errs <- fmt.Errorf("reader %d: %s went back from version %d to %d", rd, k, seen[k], n)
					return
				}
				seen[k] = n
			}
		}()
	}

	ctx := context.Background()
	for _, next := range steps {
		before := ops.Load()
		resharding.Store(true)
		require.NoError(t, kv.Reshard(ctx, next))
		resharding.Store(false)
		// Let the workload run on each map for a while.
		for ops.Load() < before+200 && len(errs) == 0 {
			runtimeGosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	want := map[string][]byte{}
	for i := range nKeys {
		want[keyOf(i)] = []byte("0")
	}
	for _, model := range models {
		for k, v := range model {
			if v == "" {
				delete(want, k)
			} else {
				want[k] = []byte(v)
			}
		}
	}
	got, err := kv.Dump(ctx)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	m := kv.Router().Map()
	assert.Same(t, steps[len(steps)-1], m)
	total := 0
	for _, name := range m.Shards() {
		st, ok := kv.Router().Resource(name)
		require.True(t, ok)
		for k := range st.Snapshot(func(string) bool { return true }) {
			require.Equal(t, name, m.Locate(k), "key %s left behind on %s", k, name)
		}
		total += st.Len()
	}
	assert.Equal(t, len(want), total, "every key is stored exactly once")
	t.Logf("%d writes, %d of them during the %d reshards", ops.Load(), opsDuring.Load(), len(steps))
	assert.Positive(t, opsDuring.Load(), "the workload must overlap the reshards")
}

func TestKVKeepsEveryKeyWhileResharding(t *testing.T) {
	t.Run("hash", func(t *testing.T) {
		m := mustHash(t, shard.HashConfig{Partitions: 256}, "s0", "s1", "s2", "s3")
		kv, err := shard.NewKV(m)
		require.NoError(t, err)
		var steps []*shard.Map
		cur := m
		for _, change := range []func(*shard.Map) (*shard.Map, error){
			func(m *shard.Map) (*shard.Map, error) { return m.AddShards("s4") },
			func(m *shard.Map) (*shard.Map, error) { return m.RemoveShards("s1") },
			func(m *shard.Map) (*shard.Map, error) { return m.AddShards("s5", "s6") },
			func(m *shard.Map) (*shard.Map, error) { return m.RemoveShards("s0", "s4", "s6") },
		} {
			next, err := change(cur)
			require.NoError(t, err)
			steps = append(steps, next)
			cur = next
		}
		kvWorkload(t, kv, steps)
	})
	t.Run("range", func(t *testing.T) {
		m := mustRange(t, kr("", "key-2", "a"), kr("key-2", "", "b"))
		kv, err := shard.NewKV(m)
		require.NoError(t, err)
		var steps []*shard.Map
		cur := m
		for _, change := range []func(*shard.Map) (*shard.Map, error){
			func(m *shard.Map) (*shard.Map, error) { return m.Split("key-4", "c") },
			func(m *shard.Map) (*shard.Map, error) { return m.Split("key-1", "d") },
			func(m *shard.Map) (*shard.Map, error) { return m.Reassign("", "c") },
			func(m *shard.Map) (*shard.Map, error) { return m.Merge("key-2") },
			func(m *shard.Map) (*shard.Map, error) { return m.Merge("key-4") },
		} {
			next, err := change(cur)
			require.NoError(t, err)
			steps = append(steps, next)
			cur = next
		}
		kvWorkload(t, kv, steps)
		assert.Equal(t, []string{"c", "d"}, kv.Router().Map().Shards())
	})
}

func TestKVBasics(t *testing.T) {
	kv, err := shard.NewKV(mustHash(t, shard.HashConfig{Partitions: 16}, "a", "b"))
	require.NoError(t, err)
	_, err = kv.Get("missing")
	assert.ErrorIs(t, err, shard.ErrNotFound)
	val := []byte("v1")
	kv.Put("k", val)
	val[0] = 'X' // the store keeps its own copy
	got, err := kv.Get("k")
	require.NoError(t, err)
	assert.Equal(t, "v1", string(got))
	got[0] = 'Y'
	again, _ := kv.Get("k")
	assert.Equal(t, "v1", string(again))
	kv.Delete("k")
	_, err = kv.Get("k")
	assert.ErrorIs(t, err, shard.ErrNotFound)
	assert.True(t, strings.HasPrefix(shard.ErrNotFound.Error(), "shard: "))
}

func runtimeGosched() { runtime.Gosched() }
