package hashring_test

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/distkit/distkit/hashring"
)

// refRing is a naive model of the documented scheme, written from the
// package documentation alone: every node's points are generated afresh and
// every key is scored against every point. Tests compare Ring with it.
type refRing struct {
	vnodes, probes int
	members        []hashring.Member
}

func splitmix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// refPoints returns the positions of a node's points: output i of SplitMix64
// seeded with xxhash64(name), for i = 1 .. round(weight*vnodes).
func (m refRing) refPoints(mem hashring.Member) []uint64 {
	n := int(math.Round(mem.Weight * float64(m.vnodes)))
	seed := xxhash.Sum64String(mem.Name)
	out := make([]uint64, n)
	for i := range out {
		out[i] = splitmix(seed + uint64(i+1)*0x9E3779B97F4A7C15)
	}
	return out
}

// refProbes returns a key's probe positions: xxhash64(key), then outputs
// 1 .. probes-1 of SplitMix64 seeded with it.
func (m refRing) refProbes(key string) []uint64 {
	h := xxhash.Sum64String(key)
	out := []uint64{h}
	for j := 1; j < m.probes; j++ {
		out = append(out, splitmix(h+uint64(j)*0x9E3779B97F4A7C15))
	}
	return out
}

// preference returns every member ordered by (score, name), where a node's
// score is the smallest clockwise distance from any probe to any of its
// points.
func (m refRing) preference(key string) []string {
	type scored struct {
		name  string
		score uint64
	}
	probes := m.refProbes(key)
	var all []scored
	for _, mem := range m.members {
		best := uint64(math.MaxUint64)
		for _, p := range m.refPoints(mem) {
			for _, x := range probes {
				best = min(best, p-x)
			}
		}
		all = append(all, scored{mem.Name, best})
	}
	slices.SortFunc(all, func(a, b scored) int {
		if c := cmp.Compare(a.score, b.score); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, len(all))
	for i, s := range all {
		out[i] = s.name
	}
	return out
}
