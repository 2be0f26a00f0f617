package shard_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/shard"
)

// checkDiff compares Diff with brute force over ks: a key changes owner
// exactly when one move contains it, with matching From and To, and each
// move's ranges are ordered, disjoint and maximal.
func checkDiff(t *testing.T, old, new *shard.Map, ks []string) []shard.Move {
	t.Helper()
	moves, err := shard.Diff(old, new)
	require.NoError(t, err)
	for i, k := range ks {
		from, to := old.Locate(k), new.Locate(k)
		var in []shard.Move
		for _, mv := range moves {
			if mv.Contains(k) {
				in = append(in, mv)
			}
			if i >= 100 {
				continue // the linear cross-check below is slow with thousands of ranges
			}
			n := 0
			for _, r := range mv.Ranges {
				if r.Contains(k) {
					n++
				}
			}
			require.Equal(t, n > 0, mv.Contains(k), "Move.Contains(%q) disagrees with its ranges", k)
		}
		if from == to {
			require.Empty(t, in, "key %q stays on %s but is in a move", k, from)
			continue
		}
		require.Len(t, in, 1, "key %q moves %s -> %s", k, from, to)
		require.Equal(t, from, in[0].From, "key %q", k)
		require.Equal(t, to, in[0].To, "key %q", k)
	}
	for i, mv := range moves {
		require.NotEqual(t, mv.From, mv.To)
		require.NotEmpty(t, mv.Ranges)
		if i > 0 {
			require.True(t, moves[i-1].From < mv.From || (moves[i-1].From == mv.From && moves[i-1].To < mv.To), "moves out of order")
		}
		for j := 1; j < len(mv.Ranges); j++ {
			a, b := mv.Ranges[j-1], mv.Ranges[j]
			if a.Hashed {
				require.Less(t, a.Hi+1, b.Lo, "ranges %v and %v overlap or touch", a, b)
			} else {
				require.NotEmpty(t, a.End)
				require.Less(t, a.End, b.Start, "ranges %v and %v overlap or touch", a, b)
			}
		}
	}
	return moves
}

func TestDiffHashMaps(t *testing.T) {
	ks := keys(6000, 3)
	for _, cfg := range []shard.HashConfig{{Partitions: 1024}, {Partitions: 64, Epsilon: 0.1}, {}} {
		t.Run(fmt.Sprintf("partitions=%d,eps=%v", cfg.Partitions, cfg.Epsilon), func(t *testing.T) {
			m := mustHash(t, cfg, names(4)...)
			added, err := m.AddShards("s4")
			require.NoError(t, err)
			moves := checkDiff(t, m, added, ks)
			require.NotEmpty(t, moves)
			if cfg.Epsilon == 0 {
				for _, mv := range moves {
					assert.Equal(t, "s4", mv.To)
				}
			}
			removed, err := added.RemoveShards("s1", "s2")
			require.NoError(t, err)
			checkDiff(t, added, removed, ks)
			checkDiff(t, removed, m, ks)
			same := checkDiff(t, m, m, ks)
			assert.Empty(t, same)
		})
	}
}

func TestDiffRangeMaps(t *testing.T) {
	ks := append(keys(5000, 4), "", "m", "t", "m\x00")
	m := mustRange(t, kr("", "g", "a"), kr("g", "m", "b"), kr("m", "t", "c"), kr("t", "", "a"))
	split, err := m.Split("p", "d")
	require.NoError(t, err)
	moves := checkDiff(t, m, split, ks)
	assert.Equal(t, []shard.Move{{From: "c", To: "d", Ranges: []shard.Range{{Start: "p", End: "t"}}}}, moves)

	merged, err := split.Merge("m")
	require.NoError(t, err)
	moves = checkDiff(t, split, merged, ks)
	assert.Equal(t, []shard.Move{{From: "c", To: "b", Ranges: []shard.Range{{Start: "m", End: "p"}}}}, moves)

	reassigned, err := merged.Reassign("t", "z")
	require.NoError(t, err)
	moves = checkDiff(t, merged, reassigned, ks)
	assert.Equal(t, []shard.Move{{From: "a", To: "z", Ranges: []shard.Range{{Start: "t"}}}}, moves)
}

func TestDiffRejectsMixedStrategies(t *testing.T) {
	_, err := shard.Diff(mustHash(t, shard.HashConfig{}, "a"), mustRange(t, kr("", "", "a")))
	assert.ErrorIs(t, err, shard.ErrStrategy)
}

// randomRangeMap builds a range map from random boundaries and owners.
func randomRangeMap(rng *rand.Rand) *shard.Map {
	bounds := map[string]bool{}
	for range rng.IntN(8) {
		bounds[string(rune('a'+rng.IntN(26)))+string(rune('a'+rng.IntN(3)))] = true
	}
	starts := []string{""}
	for b := range bounds {
		starts = append(starts, b)
	}
	slices.Sort(starts)
	var as []shard.Assignment
	for i, s := range starts {
		end := ""
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		as = append(as, kr(s, end, fmt.Sprint("s", rng.IntN(4))))
	}
	m, err := shard.NewRangeMap(as...)
	if err != nil {
		panic(err)
	}
	return m
}

func FuzzDiffRangeMaps(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(7), uint64(7))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		old := randomRangeMap(rand.New(rand.NewPCG(a, 0)))
		new := randomRangeMap(rand.New(rand.NewPCG(b, 1)))
		ks := []string{"", "a", "aa", "ab", "b", "m", "ma", "mz", "z", "zz", "zzz"}
		for c := 'a'; c <= 'z'; c++ {
			ks = append(ks, string(c)+"a", string(c)+"b", string(c)+"c", string(c)+"a\x00")
		}
		checkDiff(t, old, new, ks)
	})
}

// TestMoveStringWithoutRanges: a Move made by hand with no ranges prints,
// rather than panicking on the missing first range.
func TestMoveStringWithoutRanges(t *testing.T) {
	assert.Equal(t, "a -> b: no ranges", shard.Move{From: "a", To: "b"}.String())
}
