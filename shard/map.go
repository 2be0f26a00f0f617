package shard

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/distkit/distkit/hashring"
)

// DefaultPartitions is the number of hash partitions of a hash map when
// HashConfig.Partitions is zero.
const DefaultPartitions = 16384

// MaxPartitions is the largest accepted HashConfig.Partitions.
const MaxPartitions = 1 << 20

// HashConfig configures the consistent-hashing strategy of [NewHashMap].
// The zero value is the documented default.
type HashConfig struct {
	// Partitions is the number of equal hash ranges the key space is cut
	// into; each is owned by one shard and moves as a unit. It must be a
	// power of two. Zero means DefaultPartitions (16384, as in Redis
	// Cluster): a 64 KB table that spreads keys within about 10% of the
	// mean up to 16 shards. The spread grows as the square root of
	// shards/Partitions: raise Partitions (65536 for 64 shards) or set
	// Epsilon for more shards.
	Partitions int
	// Ring configures the hashring that assigns partitions to shards. The
	// zero value is hashring's default.
	Ring hashring.Config
	// Epsilon, when positive, assigns partitions with bounded loads
	// ([hashring.Ring.Assign]): no shard owns more than
	// ceil((1+Epsilon) * Partitions / shards) partitions, at the price of
	// some extra movement when shards change. Zero means plain consistent
	// hashing: minimal movement, balance within a few percent.
	Epsilon float64
}

func (c HashConfig) withDefaults() (HashConfig, error) {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions || c.Partitions&(c.Partitions-1) != 0 {
		return c, fmt.Errorf("%w: Partitions %d is not a power of two between 1 and %d", ErrInvalidConfig, c.Partitions, MaxPartitions)
	}
	if !(c.Epsilon >= 0) || math.IsInf(c.Epsilon, 0) {
		return c, fmt.Errorf("%w: Epsilon %v must be finite and not negative", ErrInvalidConfig, c.Epsilon)
	}
	return c, nil
}

// Range is a part of the key space. A hash map's ranges are ranges of
// key hashes (Hashed true, Lo and Hi set); a range map's are ranges of keys
// in byte order (Start and End set). Use [Range.Contains] to test a key.
type Range struct {
	// Hashed reports which of the two forms the range takes.
	Hashed bool
	// Lo and Hi bound a hashed range: keys whose [Hash] h has
	// Lo <= h <= Hi.
	Lo, Hi uint64
	// Start and End bound a key range: keys k with Start <= k and, unless
	// End is "" (no upper bound), k < End.
	Start, End string
}

// Contains reports whether key falls in r.
func (r Range) Contains(key string) bool {
	if r.Hashed {
		h := Hash(key)
		return r.Lo <= h && h <= r.Hi
	}
	return r.Start <= key && (r.End == "" || key < r.End)
}

// String formats r as [0x..., 0x...] for hashes or ["a", "m") for keys.
func (r Range) String() string {
	if r.Hashed {
		return fmt.Sprintf("hash[%#016x, %#016x]", r.Lo, r.Hi)
	}
	if r.End == "" {
		return fmt.Sprintf("[%q, end)", r.Start)
	}
	return fmt.Sprintf("[%q, %q)", r.Start, r.End)
}

// Hash returns the 64-bit hash of key that a hash map routes by: its
// xxhash64. Stores that must copy or delete a hashed [Range] can keep it
// beside each key.
func Hash(key string) uint64 { return xxhash.Sum64String(key) }

// Assignment is a range with its owning shard.
type Assignment struct {
	Range Range  // the keys assigned
	Shard string // the shard that owns them
}

// Map is an immutable, versioned assignment of the whole key space to
// shards. Every change returns a new Map whose epoch is one higher, so the
// epoch orders maps and can serve as a fencing token: a store that records
// the highest epoch it has seen can refuse writes routed by an older map.
//
// A Map comes from one of two strategies:
//
//   - [NewHashMap]: consistent hashing. Keys hash into a fixed number of
//     partitions, which a [hashring.Ring] over the shard names assigns to
//     shards; adding or removing a shard moves only the partitions it
//     gains or loses.
//   - [NewRangeMap]: key ranges over sorted boundaries (as in Vitess or
//     Bigtable), for stores that need range scans; ranges are split,
//     merged and reassigned explicitly.
//
// A Map is safe for concurrent use.
type Map struct {
	epoch  uint64
	hashed bool
	shards []string // sorted, distinct

	// Hash strategy.
	hcfg  HashConfig
	shift uint     // 64 - log2(partitions)
	parts []uint32 // partition -> index in shards

	// Range strategy.
	starts []string // starts[0] == ""; range i is [starts[i], starts[i+1])
	owners []uint32 // range -> index in shards
}

// NewHashMap returns a hash map over shards at epoch 1. It returns an error
// wrapping [ErrEmptyKeySpace] for no shard, [ErrEmptyName] or
// [ErrDuplicateShard] for a bad name, [ErrInvalidConfig] for a bad cfg.
func NewHashMap(cfg HashConfig, shards ...string) (*Map, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return buildHash(cfg, 1, shards)
}

func buildHash(cfg HashConfig, epoch uint64, shards []string) (*Map, error) {
	if len(shards) == 0 {
		return nil, fmt.Errorf("%w: no shard", ErrEmptyKeySpace)
	}
	names, err := sortedNames(shards)
	if err != nil {
		return nil, err
	}
	ring, err := hashring.New(cfg.Ring)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := ring.Add(names...); err != nil {
		return nil, err
	}
	// Partition p is placed as the key "partition-<p>".
	var owners []string
	if cfg.Epsilon > 0 {
		keys := make([]string, cfg.Partitions)
		for p := range keys {
			keys[p] = "partition-" + strconv.Itoa(p)
		}
		if owners, err = ring.Assign(keys, cfg.Epsilon); err != nil {
			return nil, err
		}
	} else {
		owners = make([]string, cfg.Partitions)
		buf := append(make([]byte, 0, 32), "partition-"...)
		for p := range owners {
			if owners[p], err = ring.LocateBytes(strconv.AppendInt(buf[:10], int64(p), 10)); err != nil {
				return nil, err
			}
		}
	}
	m := &Map{
		epoch:  epoch,
		hashed: true,
		shards: names,
		hcfg:   cfg,
		shift:  uint(64 - bits.TrailingZeros(uint(cfg.Partitions))),
		parts:  make([]uint32, cfg.Partitions),
	}
	for p, o := range owners {
		i, _ := slices.BinarySearch(names, o)
		m.parts[p] = uint32(i)
	}
	return m, nil
}

func sortedNames(shards []string) ([]string, error) {
	names := slices.Clone(shards)
	slices.Sort(names)
	for i, n := range names {
		if n == "" {
			return nil, ErrEmptyName
		}
		if i > 0 && names[i-1] == n {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateShard, n)
		}
	}
	return names, nil
}

// NewRangeMap returns a range map at epoch 1 from assignments of key
// ranges (Range.Hashed false) that must be in order and tile the key space
// exactly: the first starts at "", each ends where the next starts, and the
// last ends at "" (no upper bound). It returns an error wrapping
// [ErrEmptyKeySpace] for no assignment, [ErrOverlap] for ranges that overlap
// or are out of order, [ErrGap] for a hole, [ErrEmptyName] for an unnamed
// shard, and [ErrStrategy] for a hashed range.
func NewRangeMap(assignments ...Assignment) (*Map, error) {
	if len(assignments) == 0 {
		return nil, fmt.Errorf("%w: no range", ErrEmptyKeySpace)
	}
	starts := make([]string, len(assignments))
	names := make([]string, len(assignments))
	for i, a := range assignments {
		r := a.Range
		switch {
		case r.Hashed:
			return nil, fmt.Errorf("%w: hashed range %v in a range map", ErrStrategy, r)
		case a.Shard == "":
			return nil, fmt.Errorf("%w: range %v", ErrEmptyName, r)
		case r.End != "" && r.End <= r.Start:
			return nil, fmt.Errorf("%w: range %v is empty or reversed", ErrOverlap, r)
		case i == 0 && r.Start != "":
			return nil, fmt.Errorf("%w: keys before %q have no owner", ErrGap, r.Start)
		case i > 0:
			prev := assignments[i-1].Range
			if prev.End == "" || r.Start < prev.End {
				return nil, fmt.Errorf("%w: %v and %v", ErrOverlap, prev, r)
			}
			if r.Start > prev.End {
				return nil, fmt.Errorf("%w: between %v and %v", ErrGap, prev, r)
			}
		}
		starts[i], names[i] = r.Start, a.Shard
	}
	if last := assignments[len(assignments)-1].Range; last.End != "" {
		return nil, fmt.Errorf("%w: keys from %q on have no owner", ErrGap, last.End)
	}
	return buildRange(1, starts, names), nil
}

func buildRange(epoch uint64, starts, owners []string) *Map {
	names := slices.Clone(owners)
	slices.Sort(names)
	names = slices.Compact(names)
	m := &Map{epoch: epoch, shards: names, starts: starts, owners: make([]uint32, len(owners))}
	for i, o := range owners {
		j, _ := slices.BinarySearch(names, o)
		m.owners[i] = uint32(j)
	}
	return m
}

// Epoch returns the map's version: 1 for a new map, one more for each
// change.
func (m *Map) Epoch() uint64 { return m.epoch }

// Hashed reports whether m is a hash map (from [NewHashMap]).
func (m *Map) Hashed() bool { return m.hashed }

// Shards returns the names of the shards that own part of the key space,
// sorted.
func (m *Map) Shards() []string { return slices.Clone(m.shards) }

// Has reports whether shard owns part of the key space.
func (m *Map) Has(shard string) bool {
	_, ok := slices.BinarySearch(m.shards, shard)
	return ok
}

// Locate returns the shard that owns key.
func (m *Map) Locate(key string) string { return m.shards[m.locate(key)] }

// locate returns the index in m.shards of key's owner.
func (m *Map) locate(key string) uint32 {
	if m.hashed {
		return m.parts[Hash(key)>>m.shift]
	}
	// The last range whose start is <= key; starts[0] is "".
	i := sort.SearchStrings(m.starts, key)
	if i == len(m.starts) || m.starts[i] != key {
		i--
	}
	return m.owners[i]
}

// Assignments returns the whole key space as ordered ranges with their
// owners. For a hash map, neighbouring partitions with the same owner are
// reported as one range.
func (m *Map) Assignments() []Assignment {
	var out []Assignment
	if m.hashed {
		width := uint64(1) << m.shift
		for p := 0; p < len(m.parts); {
			q := p + 1
			for q < len(m.parts) && m.parts[q] == m.parts[p] {
				q++
			}
			out = append(out, Assignment{
				Range: Range{Hashed: true, Lo: uint64(p) * width, Hi: uint64(q)*width - 1},
				Shard: m.shards[m.parts[p]],
			})
			p = q
		}
		if m.shift == 64 { // a single partition: width overflowed
			out[0].Range.Lo, out[0].Range.Hi = 0, math.MaxUint64
		}
		return out
	}
	for i, s := range m.starts {
		r := Range{Start: s}
		if i+1 < len(m.starts) {
			r.End = m.starts[i+1]
		}
		out = append(out, Assignment{Range: r, Shard: m.shards[m.owners[i]]})
	}
	return out
}

// Load returns the fraction of the key space each shard owns: for a hash
// map its share of the hash space (the expected share of keys), for a range
// map its number of ranges over the total.
func (m *Map) Load() map[string]float64 {
	out := make(map[string]float64, len(m.shards))
	if m.hashed {
		for _, o := range m.parts {
			out[m.shards[o]] += 1 / float64(len(m.parts))
		}
		return out
	}
	for _, o := range m.owners {
		out[m.shards[o]] += 1 / float64(len(m.owners))
	}
	return out
}

// AddShards returns a hash map with shards added, at the next epoch. Only
// partitions that move to the new shards change owner (with Epsilon 0). It
// returns an error wrapping [ErrDuplicateShard] or [ErrEmptyName] for a bad
// name and [ErrStrategy] on a range map (use [Map.Split]).
func (m *Map) AddShards(shards ...string) (*Map, error) {
	if !m.hashed {
		return nil, fmt.Errorf("%w: AddShards on a range map; use Split or Reassign", ErrStrategy)
	}
	for _, s := range shards {
		if m.Has(s) {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateShard, s)
		}
	}
	return buildHash(m.hcfg, m.epoch+1, append(slices.Clone(m.shards), shards...))
}

// RemoveShards returns a hash map without shards, at the next epoch; only
// their partitions change owner (with Epsilon 0). It returns an error
// wrapping [ErrUnknownShard] for a shard not in the map,
// [ErrEmptyKeySpace] when no shard would remain and [ErrStrategy] on a
// range map (use [Map.Reassign] or [Map.Merge]).
func (m *Map) RemoveShards(shards ...string) (*Map, error) {
	if !m.hashed {
		return nil, fmt.Errorf("%w: RemoveShards on a range map; use Reassign or Merge", ErrStrategy)
	}
	keep := slices.Clone(m.shards)
	for _, s := range shards {
		i, ok := slices.BinarySearch(keep, s)
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnknownShard, s)
		}
		keep = slices.Delete(keep, i, i+1)
	}
	return buildHash(m.hcfg, m.epoch+1, keep)
}

// Split returns a range map, at the next epoch, in which the range holding
// at is cut in two at at, and keys from at to the old range's end belong to
// shard (new or existing). It returns an error wrapping [ErrBadBoundary] if
// at is "" or already a boundary, [ErrEmptyName] for an empty shard, and
// [ErrStrategy] on a hash map.
func (m *Map) Split(at, shard string) (*Map, error) {
	if m.hashed {
		return nil, fmt.Errorf("%w: Split on a hash map; use AddShards", ErrStrategy)
	}
	if shard == "" {
		return nil, ErrEmptyName
	}
	i := sort.SearchStrings(m.starts, at)
	if at == "" || (i < len(m.starts) && m.starts[i] == at) {
		return nil, fmt.Errorf("%w: %q is already a boundary", ErrBadBoundary, at)
	}
	starts := slices.Insert(slices.Clone(m.starts), i, at)
	owners := m.ownerNames()
	owners = slices.Insert(owners, i, shard)
	return buildRange(m.epoch+1, starts, owners), nil
}

// Merge returns a range map, at the next epoch, in which the range starting
// at at is joined to the range before it and owned by that range's shard.
// It returns an error wrapping [ErrBadBoundary] if at is not a boundary
// other than "", and [ErrStrategy] on a hash map.
func (m *Map) Merge(at string) (*Map, error) {
	if m.hashed {
		return nil, fmt.Errorf("%w: Merge on a hash map; use RemoveShards", ErrStrategy)
	}
	i, ok := slices.BinarySearch(m.starts, at)
	if !ok || i == 0 {
		return nil, fmt.Errorf("%w: %q is not a boundary", ErrBadBoundary, at)
	}
	starts := slices.Delete(slices.Clone(m.starts), i, i+1)
	owners := slices.Delete(m.ownerNames(), i, i+1)
	return buildRange(m.epoch+1, starts, owners), nil
}

// Reassign returns a range map, at the next epoch, in which the range
// starting at start belongs to shard. It returns an error wrapping
// [ErrBadBoundary] if no range starts at start, [ErrEmptyName] for an empty
// shard, and [ErrStrategy] on a hash map.
func (m *Map) Reassign(start, shard string) (*Map, error) {
	if m.hashed {
		return nil, fmt.Errorf("%w: Reassign on a hash map", ErrStrategy)
	}
	if shard == "" {
		return nil, ErrEmptyName
	}
	i, ok := slices.BinarySearch(m.starts, start)
	if !ok {
		return nil, fmt.Errorf("%w: no range starts at %q", ErrBadBoundary, start)
	}
	owners := m.ownerNames()
	owners[i] = shard
	return buildRange(m.epoch+1, slices.Clone(m.starts), owners), nil
}

func (m *Map) ownerNames() []string {
	out := make([]string, len(m.owners))
	for i, o := range m.owners {
		out[i] = m.shards[o]
	}
	return out
}
