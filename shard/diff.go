package shard

import (
	"cmp"
	"fmt"
	"math"
)

// Move is a range of keys that changes owner between two maps.
type Move struct {
	Range Range
	From  string
	To    string
}

func (mv Move) String() string { return fmt.Sprintf("%v: %s -> %s", mv.Range, mv.From, mv.To) }

// Diff returns exactly the ranges of keys whose owner differs between old
// and new, in key-space order, with neighbouring pieces that move between
// the same two shards reported as one range. A key k moves from a to b if
// and only if some returned Move contains k with From a and To b. It
// returns an error wrapping [ErrStrategy] if old and new are of different
// strategies.
func Diff(old, new *Map) ([]Move, error) {
	if old.hashed != new.hashed {
		return nil, fmt.Errorf("%w: cannot diff a hash map against a range map", ErrStrategy)
	}
	if old.hashed {
		aStarts, aOwners := old.hashTiling()
		bStarts, bOwners := new.hashTiling()
		pieces := diffPieces(aStarts, aOwners, bStarts, bOwners)
		out := make([]Move, len(pieces))
		for i, p := range pieces {
			hi := uint64(math.MaxUint64)
			if p.hasEnd {
				hi = p.end - 1
			}
			out[i] = Move{Range: Range{Hashed: true, Lo: p.start, Hi: hi}, From: p.from, To: p.to}
		}
		return out, nil
	}
	pieces := diffPieces(old.starts, old.ownerNames(), new.starts, new.ownerNames())
	out := make([]Move, len(pieces))
	for i, p := range pieces {
		out[i] = Move{Range: Range{Start: p.start, End: p.end}, From: p.from, To: p.to}
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
