package circuitbreaker_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/circuitbreaker"
)

func newGroup(t *testing.T, cfg circuitbreaker.GroupConfig) *circuitbreaker.Group {
	t.Helper()
	g, err := circuitbreaker.NewGroup(cfg)
	require.NoError(t, err)
	return g
}

func keys(g *circuitbreaker.Group) []string {
	var ks []string
	g.Range(func(k string, _ *circuitbreaker.Breaker) bool {
		ks = append(ks, k)
		return true
	})
	sort.Strings(ks)
	return ks
}

func TestGroupKeysAreIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var names []string
		g := newGroup(t, circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{
			Name: "upstream", ConsecutiveFailures: 1,
			OnStateChange: func(tr circuitbreaker.Transition) { names = append(names, tr.Name+" "+tr.Key) },
		}})
		require.Same(t, g.Get("a"), g.Get("a"))
		require.ErrorIs(t, g.Do(context.Background(), "a", fail), errBoom)
		require.Equal(t, circuitbreaker.StateOpen, g.Get("a").State())
		require.Equal(t, circuitbreaker.StateClosed, g.Get("b").State())
		done, err := g.Allow("b")
		require.NoError(t, err)
		done(nil)
		_, err = g.Allow("a")
		require.ErrorIs(t, err, circuitbreaker.ErrOpen)
		assert.Equal(t, "upstream/a", g.Get("a").Name())
		assert.Equal(t, []string{"upstream/a a"}, names)
		assert.Equal(t, []string{"a", "b"}, keys(g))
		g.Remove("a")
		assert.Equal(t, 1, g.Len())
		require.Equal(t, circuitbreaker.StateClosed, g.Get("a").State(), "a fresh breaker after Remove")
	})
}

func TestGroupIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t, circuitbreaker.GroupConfig{
			MaxBreakers: 3, IdleTimeout: time.Hour,
			Breaker: circuitbreaker.Config{ConsecutiveFailures: 1, OpenTimeout: time.Hour},
		})
		for _, k := range []string{"open1", "old", "open2"} {
			g.Get(k)
			time.Sleep(time.Second) // distinct last-use times
		}
		require.Error(t, g.Do(context.Background(), "open1", fail))
		require.Error(t, g.Do(context.Background(), "open2", fail))
		g.Get("new")
		require.Equal(t, 3, g.Len())
		assert.Equal(t, []string{"new", "open1", "open2"}, keys(g), "the closed breaker goes first")

		time.Sleep(time.Second)
		g.Get("newer") // only "new" is closed: it goes, though newer than the open ones
		assert.Equal(t, []string{"newer", "open1", "open2"}, keys(g))

		require.Error(t, g.Do(context.Background(), "newer", fail))
		time.Sleep(time.Second)
		g.Get("open1") // touch
		g.Get("last")  // all open: the least recently used goes
		assert.Equal(t, []string{"last", "newer", "open1"}, keys(g))
	})
}

func TestGroupEvictsIdleBreakers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t, circuitbreaker.GroupConfig{
			IdleTimeout: time.Minute,
			Breaker:     circuitbreaker.Config{ConsecutiveFailures: 1, OpenTimeout: time.Hour},
		})
		g.Get("idle")
		require.Error(t, g.Do(context.Background(), "tripped", fail))
		g.Get("busy")
		for range 4 {
			time.Sleep(20 * time.Second)
			g.Get("busy")
		}
		g.Get("fresh")
		assert.Equal(t, []string{"busy", "fresh", "tripped"}, keys(g), "idle closed breakers are swept, open ones kept")
	})
}

func TestGroupConcurrentGet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t, circuitbreaker.GroupConfig{MaxBreakers: 64})
		var mu sync.Mutex
		seen := map[string]*circuitbreaker.Breaker{}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range 200 {
					k := fmt.Sprint((i * (w + 1)) % 50)
					b := g.Get(k)
					_ = b.Do(context.Background(), succeed)
					mu.Lock()
					if prev, ok := seen[k]; ok && prev != b {
						t.Errorf("two breakers for key %s", k)
					}
					seen[k] = b
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Equal(t, 50, g.Len())
	})
}

func TestGroupSharesTripsThroughTheStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := circuitbreaker.NewMemoryStore()
		cfg := circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{
			Name: "hosts", ConsecutiveFailures: 1, OpenTimeout: time.Minute, Store: store, SyncInterval: time.Second,
		}}
		g1, g2 := newGroup(t, cfg), newGroup(t, cfg)
		run(t, g1)
		run(t, g2)
		g2.Get("db") // g2 syncs the keys it holds
		require.Error(t, g1.Do(context.Background(), "db", fail))
		synctest.Wait()
		st, err := store.Load(context.Background(), "hosts/db")
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Version)
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, circuitbreaker.StateOpen, g2.Get("db").State())
		require.Equal(t, circuitbreaker.StateClosed, g2.Get("cache").State())
	})
}

func TestGroupConfigErrors(t *testing.T) {
	for name, cfg := range map[string]circuitbreaker.GroupConfig{
		"MaxBreakers": {MaxBreakers: -1},
		"IdleTimeout": {IdleTimeout: -1},
		"FailureRate": {Breaker: circuitbreaker.Config{FailureRate: 2}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := circuitbreaker.NewGroup(cfg)
			var ce *circuitbreaker.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, name, ce.Field)
			require.ErrorIs(t, err, circuitbreaker.ErrInvalidConfig)
		})
	}
}
