package shard_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/shard"
)

func keys(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]string, n)
	for i := range out {
		// Mixed lengths and alphabets, so range maps see keys on both sides
		// of every boundary.
		b := make([]byte, 1+rng.IntN(6))
		for j := range b {
			b[j] = "abcdefghijklmnopqrstuvwxyz0123456789:"[rng.IntN(37)]
		}
		out[i] = fmt.Sprintf("%s%d", b, i)
	}
	return out
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("s%d", i)
	}
	return out
}

func mustHash(t testing.TB, cfg shard.HashConfig, shards ...string) *shard.Map {
	t.Helper()
	m, err := shard.NewHashMap(cfg, shards...)
	require.NoError(t, err)
	return m
}

func kr(start, end, owner string) shard.Assignment {
	return shard.Assignment{Range: shard.Range{Start: start, End: end}, Shard: owner}
}

func mustRange(t testing.TB, as ...shard.Assignment) *shard.Map {
	t.Helper()
	m, err := shard.NewRangeMap(as...)
	require.NoError(t, err)
	return m
}

func TestHashMapErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    shard.HashConfig
		shards []string
		want   error
	}{
		{"no shard", shard.HashConfig{}, nil, shard.ErrEmptyKeySpace},
		{"empty name", shard.HashConfig{}, []string{"a", ""}, shard.ErrEmptyName},
		{"duplicate", shard.HashConfig{}, []string{"a", "b", "a"}, shard.ErrDuplicateShard},
		{"partitions not a power of two", shard.HashConfig{Partitions: 100}, []string{"a"}, shard.ErrInvalidConfig},
		{"negative partitions", shard.HashConfig{Partitions: -4}, []string{"a"}, shard.ErrInvalidConfig},
		{"too many partitions", shard.HashConfig{Partitions: shard.MaxPartitions * 2}, []string{"a"}, shard.ErrInvalidConfig},
		{"NaN epsilon", shard.HashConfig{Epsilon: math.NaN()}, []string{"a"}, shard.ErrInvalidConfig},
		{"negative epsilon", shard.HashConfig{Epsilon: -1}, []string{"a"}, shard.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := shard.NewHashMap(tt.cfg, tt.shards...)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	m := mustHash(t, shard.HashConfig{}, "a", "b")
	_, err := m.AddShards("b")
	assert.ErrorIs(t, err, shard.ErrDuplicateShard)
	_, err = m.RemoveShards("zz")
	assert.ErrorIs(t, err, shard.ErrUnknownShard)
	_, err = m.RemoveShards("a", "b")
	assert.ErrorIs(t, err, shard.ErrEmptyKeySpace)
	_, err = m.Split("m", "c")
	assert.ErrorIs(t, err, shard.ErrStrategy)
	_, err = m.Merge("m")
	assert.ErrorIs(t, err, shard.ErrStrategy)
	_, err = m.Reassign("", "c")
	assert.ErrorIs(t, err, shard.ErrStrategy)
}

func TestRangeMapErrors(t *testing.T) {
	tests := []struct {
		name string
		as   []shard.Assignment
		want error
	}{
		{"no range", nil, shard.ErrEmptyKeySpace},
		{"overlap", []shard.Assignment{kr("", "m", "a"), kr("k", "", "b")}, shard.ErrOverlap},
		{"out of order", []shard.Assignment{kr("", "m", "a"), kr("m", "", "b"), kr("c", "", "c")}, shard.ErrOverlap},
		{"reversed", []shard.Assignment{kr("", "m", "a"), kr("m", "c", "b"), kr("c", "", "c")}, shard.ErrOverlap},
		{"hole", []shard.Assignment{kr("", "k", "a"), kr("m", "", "b")}, shard.ErrGap},
		{"does not start at the beginning", []shard.Assignment{kr("a", "", "a")}, shard.ErrGap},
		{"does not reach the end", []shard.Assignment{kr("", "m", "a")}, shard.ErrGap},
		{"unnamed shard", []shard.Assignment{kr("", "", "")}, shard.ErrEmptyName},
		{"hashed range", []shard.Assignment{{Range: shard.Range{Hashed: true, Hi: math.MaxUint64}, Shard: "a"}}, shard.ErrStrategy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := shard.NewRangeMap(tt.as...)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	m := mustRange(t, kr("", "m", "a"), kr("m", "", "b"))
	for _, tt := range []struct {
		name string
		op   func() (*shard.Map, error)
		want error
	}{
		{"split at a boundary", func() (*shard.Map, error) { return m.Split("m", "c") }, shard.ErrBadBoundary},
		{"split at the start", func() (*shard.Map, error) { return m.Split("", "c") }, shard.ErrBadBoundary},
		{"split to no one", func() (*shard.Map, error) { return m.Split("f", "") }, shard.ErrEmptyName},
		{"merge a non-boundary", func() (*shard.Map, error) { return m.Merge("f") }, shard.ErrBadBoundary},
		{"merge the start", func() (*shard.Map, error) { return m.Merge("") }, shard.ErrBadBoundary},
		{"reassign a non-boundary", func() (*shard.Map, error) { return m.Reassign("f", "c") }, shard.ErrBadBoundary},
		{"add shards", func() (*shard.Map, error) { return m.AddShards("c") }, shard.ErrStrategy},
		{"remove shards", func() (*shard.Map, error) { return m.RemoveShards("a") }, shard.ErrStrategy},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.op()
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

// checkLocateMatchesAssignments checks that the reported ranges tile the
// key space and that Locate agrees with them for every key.
func checkLocateMatchesAssignments(t *testing.T, m *shard.Map, ks []string) {
	t.Helper()
	as := m.Assignments()
	for _, k := range ks {
		var owners []string
		for _, a := range as {
			if a.Range.Contains(k) {
				owners = append(owners, a.Shard)
			}
		}
		require.Len(t, owners, 1, "key %q is in %d ranges", k, len(owners))
		require.Equal(t, owners[0], m.Locate(k), "key %q", k)
	}
}

func TestMapsLocateWhatTheyReport(t *testing.T) {
	ks := append(keys(3000, 1), "", "m", "l~", "zzzz")
	hm := mustHash(t, shard.HashConfig{Partitions: 256}, names(5)...)
	checkLocateMatchesAssignments(t, hm, ks)
	one := mustHash(t, shard.HashConfig{Partitions: 1}, "only")
	checkLocateMatchesAssignments(t, one, ks)
	rm := mustRange(t, kr("", "d", "a"), kr("d", "m", "b"), kr("m", "t", "a"), kr("t", "", "c"))
	checkLocateMatchesAssignments(t, rm, ks)
	assert.Equal(t, []string{"a", "b", "c"}, rm.Shards())
	assert.Equal(t, "a", rm.Locate(""))
	assert.Equal(t, "b", rm.Locate("d"))
	assert.Equal(t, "b", rm.Locate("l~"))
	assert.Equal(t, "a", rm.Locate("m"))
	assert.Equal(t, "c", rm.Locate("zzz"))
}

func TestEveryChangeBumpsTheEpoch(t *testing.T) {
	hm := mustHash(t, shard.HashConfig{}, "a", "b")
	assert.Equal(t, uint64(1), hm.Epoch())
	hm2, err := hm.AddShards("c")
	require.NoError(t, err)
	hm3, err := hm2.RemoveShards("a")
	require.NoError(t, err)
	assert.Equal(t, []uint64{1, 2, 3}, []uint64{hm.Epoch(), hm2.Epoch(), hm3.Epoch()})
	assert.Equal(t, []string{"a", "b"}, hm.Shards(), "the old map is unchanged")

	rm := mustRange(t, kr("", "", "a"))
	rm2, err := rm.Split("m", "b")
	require.NoError(t, err)
	rm3, err := rm2.Reassign("", "c")
	require.NoError(t, err)
	rm4, err := rm3.Merge("m")
	require.NoError(t, err)
	assert.Equal(t, []uint64{1, 2, 3, 4}, []uint64{rm.Epoch(), rm2.Epoch(), rm3.Epoch(), rm4.Epoch()})
	assert.Equal(t, []shard.Assignment{kr("", "", "c")}, rm4.Assignments())
}

func TestHashMapBalance(t *testing.T) {
	for _, n := range []int{4, 5, 16, 64} {
		t.Run(fmt.Sprint("shards=", n), func(t *testing.T) {
			cfg := shard.HashConfig{}
			if n > 16 {
				cfg.Partitions = 65536 // as HashConfig documents
			}
			m := mustHash(t, cfg, names(n)...)
			hi, lo := 0.0, 1.0
			for _, l := range m.Load() {
				hi, lo = max(hi, l*float64(n)), min(lo, l*float64(n))
			}
			t.Logf("%d shards: max/mean %.3f, min/mean %.3f", n, hi, lo)
			assert.LessOrEqual(t, hi, 1.15)
			assert.GreaterOrEqual(t, lo, 0.85)

			b := mustHash(t, shard.HashConfig{Epsilon: 0.02}, names(n)...)
			limit := math.Ceil(1.02*float64(shard.DefaultPartitions)/float64(n)) / shard.DefaultPartitions
			for s, l := range b.Load() {
				assert.LessOrEqual(t, l, limit+1e-12, s)
			}
		})
	}
}

func TestAddAndRemoveMoveOnlyTheChangedShard(t *testing.T) {
	ks := keys(20000, 2)
	m := mustHash(t, shard.HashConfig{}, names(6)...)
	added, err := m.AddShards("new")
	require.NoError(t, err)
	removed, err := m.RemoveShards("s2")
	require.NoError(t, err)
	movedIn, movedOut := 0, 0
	for _, k := range ks {
		if a, b := m.Locate(k), added.Locate(k); a != b {
			require.Equal(t, "new", b)
			movedIn++
		}
		if a, b := m.Locate(k), removed.Locate(k); a != b {
			require.Equal(t, "s2", a)
			movedOut++
		}
	}
	assert.InDelta(t, 1.0/7, float64(movedIn)/float64(len(ks)), 0.03)
	assert.InDelta(t, 1.0/6, float64(movedOut)/float64(len(ks)), 0.03)
}
