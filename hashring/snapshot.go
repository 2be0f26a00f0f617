package hashring

import (
	"math/bits"
	"slices"
)

// golden is the SplitMix64 increment, 2^64 divided by the golden ratio.
const golden = 0x9E3779B97F4A7C15

// maxProbes bounds Config.Probes so that lookups keep their cursors on the
// stack.
const maxProbes = 8

// mix is the SplitMix64 output function: a bijection on 64-bit integers with
// full avalanche.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// probe returns the ring position of probe j of a key whose xxhash64 is h:
// h itself for probe 0, then the outputs of SplitMix64 seeded with h.
func probe(h uint64, j int) uint64 {
	if j == 0 {
		return h
	}
	return mix(h + uint64(j)*golden)
}

// pointPos returns the ring position of point i (from 0) of a node whose
// name hashes to h: output i+1 of SplitMix64 seeded with h, that is
// mix(h + (i+1)*golden).
func pointPos(h uint64, i int) uint64 {
	return mix(h + uint64(i+1)*golden)
}

// node is one member as a snapshot stores it.
type node struct {
	name   string
	weight float64
	points int
}

// point is one virtual node: a ring position and the index of its node.
// Keeping both in one 16-byte entry costs one cache miss per lookup where
// parallel slices would cost two.
type point struct {
	pos   uint64
	owner uint32
}

func pointLess(a, b point) bool {
	return a.pos < b.pos || (a.pos == b.pos && a.owner < b.owner)
}

// snapshot is an immutable ring. Readers use it without locks.
//
// pts holds every point in ascending order of position; ties (two nodes on
// the same position) are ordered by node index, and nodes are sorted by
// name, so ties resolve to the lexicographically smaller name.
//
// tbl is a direct-mapped index over the top bits of a position: tbl[t] is the
// number of points whose position>>shift is below t, and the last entry is
// len(pts). It replaces the binary search of a classic ring with one table
// load and a scan of a bucket that holds two points on average.
type snapshot struct {
	probes int
	nodes  []node
	byName map[string]uint32
	pts    []point
	tbl    []uint32
	shift  uint
}

// succ returns the first point at or after position x, wrapping to the
// first point past the last. The snapshot must have at least one point.
func (s *snapshot) succ(x uint64) (int, point) {
	t := x >> s.shift
	i, e := int(s.tbl[t]), int(s.tbl[t+1])
	for ; i < e; i++ {
		if s.pts[i].pos >= x {
			return i, s.pts[i]
		}
	}
	if i == len(s.pts) {
		i = 0
	}
	return i, s.pts[i]
}

// locate returns the index of the node owning a key whose xxhash64 is h: the
// node whose nearest point clockwise of any probe is closest, ties going to
// the smaller node index. The snapshot must have at least one point.
func (s *snapshot) locate(h uint64) uint32 {
	if s.probes == 2 {
		return s.locate2(h)
	}
	_, p := s.succ(h)
	best, bestD := p.owner, p.pos-h
	for j := 1; j < s.probes; j++ {
		x := probe(h, j)
		_, p := s.succ(x)
		if d := p.pos - x; d < bestD || (d == bestD && p.owner < best) {
			best, bestD = p.owner, d
		}
	}
	return best
}

// locate2 is locate for two probes, written so that the memory loads of
// both probes are issued before either is scanned and their cache misses
// overlap.
func (s *snapshot) locate2(h uint64) uint32 {
	x0, x1 := h, mix(h+golden)
	pts, tbl := s.pts, s.tbl
	t0, t1 := x0>>s.shift, x1>>s.shift
	i0, e0 := tbl[t0], tbl[t0+1]
	i1, e1 := tbl[t1], tbl[t1+1]
	for i0 < e0 && pts[i0].pos < x0 {
		i0++
	}
	for i1 < e1 && pts[i1].pos < x1 {
		i1++
	}
	if int(i0) == len(pts) {
		i0 = 0
	}
	if int(i1) == len(pts) {
		i1 = 0
	}
	p0, p1 := pts[i0], pts[i1]
	d0, d1 := p0.pos-x0, p1.pos-x1
	if d1 < d0 || (d1 == d0 && p1.owner < p0.owner) {
		return p1.owner
	}
	return p0.owner
}

// walk calls emit with the owners of the points met while walking clockwise
// from every probe of h at once, in order of increasing (distance, node
// index), until emit returns false or every point has been met once from
// each probe. A node can be emitted several times.
func (s *snapshot) walk(h uint64, emit func(uint32) bool) {
	var cur [maxProbes]int
	var pos [maxProbes]uint64
	var steps [maxProbes]int
	n := len(s.pts)
	for j := 0; j < s.probes; j++ {
		pos[j] = probe(h, j)
		cur[j], _ = s.succ(pos[j])
	}
	for {
		bj := -1
		var bd uint64
		var bo uint32
		for j := 0; j < s.probes; j++ {
			if steps[j] >= n {
				continue
			}
			p := s.pts[cur[j]]
			if d := p.pos - pos[j]; bj < 0 || d < bd || (d == bd && p.owner < bo) {
				bj, bd, bo = j, d, p.owner
			}
		}
		if bj < 0 || !emit(bo) {
			return
		}
		steps[bj]++
		cur[bj]++
		if cur[bj] == n {
			cur[bj] = 0
		}
	}
}

// tableBits returns the number of index bits for n points: about two points
// per bucket, at least 1 bit.
func tableBits(n int) uint {
	if n < 4 {
		return 1
	}
	return min(uint(bits.Len(uint(n)))-1, 30)
}

// index fills s.tbl and s.shift from s.pts.
func (s *snapshot) index() {
	b := tableBits(len(s.pts))
	s.shift = 64 - b
	s.tbl = bucketStarts(s.pts, s.shift, 1<<b)
}

// bucketStarts returns the prefix sums of the number of points in each of
// the size buckets selected by pos>>shift: entry t is the number of points
// in buckets before t, and the last entry is len(pts).
func bucketStarts(pts []point, shift uint, size int) []uint32 {
	tbl := make([]uint32, size+1)
	for _, p := range pts {
		tbl[(p.pos>>shift)+1]++
	}
	for t := 1; t < len(tbl); t++ {
		tbl[t] += tbl[t-1]
	}
	return tbl
}

// sortPoints orders points by (position, owner) and returns them with the
// bucket table of [snapshot.index] for b index bits. It is a two-level
// most-significant-digit radix sort (top 8 bits, then the remaining b-8
// bits, each pass writing into few enough streams to stay in cache) followed
// by a small sort inside each bucket: linear time for hashed positions,
// n log n at worst. in is reordered.
func sortPoints(in []point, b uint) ([]point, []uint32) {
	n := len(in)
	size := 1 << b
	tbl := make([]uint32, size+1)
	out := make([]point, n)
	hiBits := min(b, 8)
	loBits := b - hiBits
	hiShift := 64 - hiBits
	// Pass 1: by the top hiBits bits into out.
	var hiCount [257]uint32
	for _, p := range in {
		hiCount[(p.pos>>hiShift)+1]++
	}
	for h := 1; h < len(hiCount); h++ {
		hiCount[h] += hiCount[h-1]
	}
	next := hiCount
	for _, p := range in {
		h := p.pos >> hiShift
		out[next[h]] = p
		next[h]++
	}
	// Pass 2: each top bucket by the next loBits bits back into in.
	shift := 64 - b
	mask := uint64(1)<<loBits - 1
	loCount := make([]uint32, (1<<loBits)+1)
	for h := 0; h < 1<<hiBits; h++ {
		lo, hi := hiCount[h], hiCount[h+1]
		clear(loCount)
		for _, p := range out[lo:hi] {
			loCount[((p.pos>>shift)&mask)+1]++
		}
		base := h << loBits
		acc := lo
		for t := 0; t < 1<<loBits; t++ {
			tbl[base+t] = acc
			acc += loCount[t+1]
			loCount[t+1] = tbl[base+t]
		}
		for _, p := range out[lo:hi] {
			t := (p.pos >> shift) & mask
			k := loCount[t+1]
			loCount[t+1]++
			// Insertion into the bucket filled so far; buckets hold two
			// points on average.
			start := tbl[base+int(t)]
			for k > start && pointLess(p, in[k-1]) {
				in[k] = in[k-1]
				k--
				if k-start > 16 {
					break
				}
			}
			in[k] = p
		}
	}
	tbl[size] = uint32(n)
	for t := 0; t < size; t++ {
		if tbl[t+1]-tbl[t] > 16 {
			// A crowded bucket (only with adversarial names) may have been
			// left partly unsorted above.
			sortBucket(in[tbl[t]:tbl[t+1]])
		}
	}
	return in, tbl
}

// sortBucket sorts one bucket: insertion sort for the usual handful of
// points, pattern-defeating quicksort for a crowded one.
func sortBucket(b []point) {
	if len(b) <= 12 {
		for i := 1; i < len(b); i++ {
			for j := i; j > 0 && pointLess(b[j], b[j-1]); j-- {
				b[j], b[j-1] = b[j-1], b[j]
			}
		}
		return
	}
	slices.SortFunc(b, func(x, y point) int {
		if pointLess(x, y) {
			return -1
		}
		if pointLess(y, x) {
			return 1
		}
		return 0
	})
}
