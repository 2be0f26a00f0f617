package shard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Move is the set of key ranges that change owner from one shard to
// another between two maps.
type Move struct {
	From string // the shard that owned the ranges in the old map
	To   string // the shard that owns them in the new map
	// Ranges are disjoint, in key-space order, and never adjacent (adjacent
	// pieces are reported as one range).
	Ranges []Range
}

// Contains reports whether key falls in one of the move's ranges.
func (mv Move) Contains(key string) bool {
	if len(mv.Ranges) == 0 {
		return false
	}
	if mv.Ranges[0].Hashed {
		h := Hash(key)
		i := sort.Search(len(mv.Ranges), func(i int) bool { return mv.Ranges[i].Hi >= h })
		return i < len(mv.Ranges) && mv.Ranges[i].Lo <= h
	}
	i := sort.Search(len(mv.Ranges), func(i int) bool {
		return mv.Ranges[i].End == "" || mv.Ranges[i].End > key
	})
	return i < len(mv.Ranges) && mv.Ranges[i].Start <= key
}

// String summarises the move for logs: the shards, the number of ranges
// and the first range.
func (mv Move) String() string {
	if len(mv.Ranges) == 0 {
		return fmt.Sprintf("%s -> %s: no ranges", mv.From, mv.To)
	}
	return fmt.Sprintf("%s -> %s: %d range(s) from %v", mv.From, mv.To, len(mv.Ranges), mv.Ranges[0])
}

// Diff returns exactly the key ranges whose owner differs between old and
// new, as one Move per (From, To) pair, sorted by From then To. A key k
// moves from a to b if and only if the Move with From a and To b contains
// it. It returns an error wrapping [ErrStrategy] if old and new are of
// different strategies.
func Diff(old, new *Map) ([]Move, error) {
	if old.hashed != new.hashed {
		return nil, fmt.Errorf("%w: cannot diff a hash map against a range map", ErrStrategy)
	}
	var out []Move
	add := func(from, to string, r Range) {
		i, ok := slices.BinarySearchFunc(out, Move{From: from, To: to}, func(a, b Move) int {
			if c := strings.Compare(a.From, b.From); c != 0 {
				return c
			}
			return strings.Compare(a.To, b.To)
		})
		if !ok {
			out = slices.Insert(out, i, Move{From: from, To: to})
		}
		out[i].Ranges = append(out[i].Ranges, r)
	}
	if old.hashed {
		aStarts, aOwners := old.hashTiling()
		bStarts, bOwners := new.hashTiling()
		for _, p := range diffPieces(aStarts, aOwners, bStarts, bOwners) {
			hi := uint64(math.MaxUint64)
			if p.hasEnd {
				hi = p.end - 1
			}
			add(p.from, p.to, Range{Hashed: true, Lo: p.start, Hi: hi})
		}
		return out, nil
	}
	for _, p := range diffPieces(old.starts, old.ownerNames(), new.starts, new.ownerNames()) {
		add(p.from, p.to, Range{Start: p.start, End: p.end})
	}
	return out, nil
}

// hashTiling describes a hash map as ranges (one per run of partitions
// with the same owner) in the form diffPieces takes.
func (m *Map) hashTiling() ([]uint64, []string) {
	as := m.Assignments()
	starts, owners := make([]uint64, len(as)), make([]string, len(as))
	for i, a := range as {
		starts[i], owners[i] = a.Range.Lo, a.Shard
	}
	return starts, owners
}

type piece[P cmp.Ordered] struct {
	start, end P
	hasEnd     bool
	from, to   string
}

// diffPieces walks two tilings of the same ordered space (range i runs from
// starts[i] to starts[i+1], the last one to the end; both start at the
// zero position) and returns the pieces whose owners differ, merging
// neighbours with the same from and to.
func diffPieces[P cmp.Ordered](aStarts []P, aOwners []string, bStarts []P, bOwners []string) []piece[P] {
	var out []piece[P]
	i, j := 0, 0
	var pos P
	for {
		// The current piece runs from pos to the nearer of the next starts.
		var end P
		hasEnd := false
		if i+1 < len(aStarts) {
			end, hasEnd = aStarts[i+1], true
		}
		if j+1 < len(bStarts) && (!hasEnd || bStarts[j+1] < end) {
			end, hasEnd = bStarts[j+1], true
		}
		if from, to := aOwners[i], bOwners[j]; from != to {
			if n := len(out); n > 0 && out[n-1].hasEnd && out[n-1].end == pos && out[n-1].from == from && out[n-1].to == to {
				// Extend the previous piece.
				out[n-1].end, out[n-1].hasEnd = end, hasEnd
			} else {
				out = append(out, piece[P]{start: pos, end: end, hasEnd: hasEnd, from: from, to: to})
			}
		}
		if !hasEnd {
			return out
		}
		pos = end
		if i+1 < len(aStarts) && aStarts[i+1] == pos {
			i++
		}
		if j+1 < len(bStarts) && bStarts[j+1] == pos {
			j++
		}
	}
}
