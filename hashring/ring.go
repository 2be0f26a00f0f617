package hashring

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Defaults and limits for [Config].
const (
	// DefaultVNodes is the number of points a node of weight 1 places on
	// the ring when Config.VNodes is zero.
	DefaultVNodes = 1024
	// DefaultProbes is the number of ring positions each key is hashed to
	// when Config.Probes is zero.
	DefaultProbes = 2
	// MaxVNodes is the largest accepted Config.VNodes.
	MaxVNodes = 1 << 16
	// MaxPointsPerNode bounds the points one node may place, that is
	// weight times VNodes rounded to the nearest integer.
	MaxPointsPerNode = 1 << 22
)

// Config configures a [Ring]. The zero value is the documented default:
// 1024 points per unit of weight and two probes per key.
type Config struct {
	// VNodes is the number of points (virtual nodes) a node of weight 1
	// places on the ring; a node of weight w places round(w*VNodes). Zero
	// means DefaultVNodes (1024). Each point costs 16 bytes plus 2 to 4
	// bytes of index: 100 nodes at the default take about 1.9 MB. Range 0
	// to MaxVNodes.
	VNodes int
	// Probes is the number of ring positions each key is hashed to: the
	// key goes to the node whose point lies closest clockwise of any probe
	// (multi-probe consistent hashing). 1 is the classic ring. More probes
	// even out the load at the cost of one more table lookup each. Zero
	// means DefaultProbes (2). Range 0 to 8.
	Probes int
}

func (c Config) withDefaults() (Config, error) {
	if c.VNodes < 0 || c.VNodes > MaxVNodes {
		return c, fmt.Errorf("%w: VNodes %d out of range [0, %d]", ErrInvalidConfig, c.VNodes, MaxVNodes)
	}
	if c.Probes < 0 || c.Probes > maxProbes {
		return c, fmt.Errorf("%w: Probes %d out of range [0, %d]", ErrInvalidConfig, c.Probes, maxProbes)
	}
	if c.VNodes == 0 {
		c.VNodes = DefaultVNodes
	}
	if c.Probes == 0 {
		c.Probes = DefaultProbes
	}
	return c, nil
}

// Member is a node name with its weight.
type Member struct {
	// Name identifies the node; it must not be empty.
	Name string
	// Weight scales the node's share of keys: a node of weight 2 gets about
	// twice the keys of a node of weight 1. It must be positive and finite;
	// Weight*VNodes is rounded to the node's number of points, which must
	// be between 1 and MaxPointsPerNode.
	Weight float64
}

// Ring is a consistent-hash ring over string node names.
//
// Lookups ([Ring.Locate], [Ring.AppendN]) read an immutable snapshot through
// an atomic pointer: they take no lock, do not allocate, and never block on
// a membership change. Changes ([Ring.Add], [Ring.Remove], [Ring.SetWeight],
// [Ring.Replace]) are serialised among themselves, build a new snapshot by
// hashing only the points of the nodes that changed and merging them into
// the sorted points of the others, and publish it atomically. A Ring is safe
// for concurrent use; the zero Ring is not valid, use [New].
type Ring struct {
	cfg  Config
	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[snapshot]
}

// New returns an empty ring. It returns an error wrapping
// [ErrInvalidConfig] if cfg is out of range.
func New(cfg Config) (*Ring, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Ring{cfg: cfg}
	r.snap.Store(&snapshot{probes: cfg.Probes, byName: map[string]uint32{}})
	return r, nil
}

// Config returns the ring's configuration with defaults filled in.
func (r *Ring) Config() Config { return r.cfg }

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.snap.Load().nodes) }

// Points returns the total number of points on the ring, the figure that
// memory use and build time are proportional to.
func (r *Ring) Points() int { return len(r.snap.Load().pts) }

// Members returns the members sorted by name.
func (r *Ring) Members() []Member {
	s := r.snap.Load()
	out := make([]Member, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = Member{Name: n.name, Weight: n.weight}
	}
	return out
}

// Contains reports whether name is a member.
func (r *Ring) Contains(name string) bool {
	_, ok := r.snap.Load().byName[name]
	return ok
}

// Locate returns the node that owns key. It returns [ErrEmpty] if the ring
// has no members. It does not allocate.
func (r *Ring) Locate(key string) (string, error) {
	s := r.snap.Load()
	if len(s.pts) == 0 {
		return "", ErrEmpty
	}
	return s.nodes[s.locate(xxhash.Sum64String(key))].name, nil
}

// LocateBytes is [Ring.Locate] for a key held in a byte slice.
func (r *Ring) LocateBytes(key []byte) (string, error) {
	s := r.snap.Load()
	if len(s.pts) == 0 {
		return "", ErrEmpty
	}
	return s.nodes[s.locate(xxhash.Sum64(key))].name, nil
}

// LocateHash returns the owner of a key whose xxhash64 is h, so that
// LocateHash(xxhash.Sum64String(key)) == Locate(key). It suits callers that
// hash a key once and look it up in several rings. It returns [ErrEmpty] if
// the ring has no members and does not allocate.
func (r *Ring) LocateHash(h uint64) (string, error) {
	s := r.snap.Load()
	if len(s.pts) == 0 {
		return "", ErrEmpty
	}
	return s.nodes[s.locate(h)].name, nil
}

// AppendN appends to dst the first n distinct nodes of key's preference
// list and returns the extended slice. The preference list orders every
// member by its closest point clockwise of any of the key's probes, so its
// first element is always [Ring.Locate](key), and adding a node only ever
// inserts that node into a key's list without reordering the others. It is
// the replica set of a Dynamo-style store.
//
// It returns dst unchanged and an error wrapping [ErrTooFewNodes] if n
// exceeds the number of members, [ErrInvalidArgument] if n is negative. It
// does not allocate when dst has room for n more names and n <= 16.
func (r *Ring) AppendN(dst []string, key string, n int) ([]string, error) {
	return r.appendN(dst, xxhash.Sum64String(key), n)
}

// AppendNBytes is [Ring.AppendN] for a key held in a byte slice.
func (r *Ring) AppendNBytes(dst []string, key []byte, n int) ([]string, error) {
	return r.appendN(dst, xxhash.Sum64(key), n)
}

func (r *Ring) appendN(dst []string, h uint64, n int) ([]string, error) {
	s := r.snap.Load()
	if n < 0 {
		return dst, fmt.Errorf("%w: negative count %d", ErrInvalidArgument, n)
	}
	if n > len(s.nodes) {
		return dst, fmt.Errorf("%w: want %d, ring has %d", ErrTooFewNodes, n, len(s.nodes))
	}
	if n == 0 {
		return dst, nil
	}
	var small [16]uint32
	got := small[:0]
	var seen []uint64 // bitset, only for n > len(small)
	if n > len(small) {
		seen = make([]uint64, (len(s.nodes)+63)/64)
	}
	s.walk(h, func(o uint32) bool {
		if seen != nil {
			if seen[o/64]&(1<<(o%64)) != 0 {
				return true
			}
			seen[o/64] |= 1 << (o % 64)
		} else {
			if slices.Contains(got, o) {
				return true
			}
			got = append(got, o)
		}
		dst = append(dst, s.nodes[o].name)
		n--
		return n > 0
	})
	return dst, nil
}

// Add adds nodes of weight 1. It is all or nothing: it returns an error
// wrapping [ErrEmptyName] or [ErrDuplicate] and changes nothing if any name
// is empty, already a member, or repeated.
func (r *Ring) Add(names ...string) error {
	ms := make([]Member, len(names))
	for i, n := range names {
		ms[i] = Member{Name: n, Weight: 1}
	}
	return r.AddMembers(ms...)
}

// AddMembers adds weighted nodes, all or nothing. It returns an error
// wrapping [ErrEmptyName], [ErrDuplicate] or [ErrInvalidWeight] and changes
// nothing if any member is invalid or already present.
func (r *Ring) AddMembers(members ...Member) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snap.Load()
	ch := make(map[string]float64, len(members))
	for _, m := range members {
		if err := r.checkMember(m); err != nil {
			return err
		}
		if _, ok := s.byName[m.Name]; ok {
			return fmt.Errorf("%w: %q", ErrDuplicate, m.Name)
		}
		if _, ok := ch[m.Name]; ok {
			return fmt.Errorf("%w: %q named twice", ErrDuplicate, m.Name)
		}
		ch[m.Name] = m.Weight
	}
	return r.apply(s, ch)
}

// Remove removes nodes, all or nothing: it returns an error wrapping
// [ErrUnknownNode] or [ErrDuplicate] and changes nothing if any name is not a
// member or is repeated. Only the keys of the removed nodes change owner.
func (r *Ring) Remove(names ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snap.Load()
	ch := make(map[string]float64, len(names))
	for _, n := range names {
		if _, ok := s.byName[n]; !ok {
			return fmt.Errorf("%w: %q", ErrUnknownNode, n)
		}
		if _, ok := ch[n]; ok {
			return fmt.Errorf("%w: %q named twice", ErrDuplicate, n)
		}
		ch[n] = 0
	}
	return r.apply(s, ch)
}

// SetWeight changes a member's weight. Raising it only moves keys to the
// node; lowering it only moves keys away from it. It returns an error
// wrapping [ErrUnknownNode] or [ErrInvalidWeight] and changes nothing if the
// node is absent or the weight invalid.
func (r *Ring) SetWeight(name string, weight float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snap.Load()
	if _, ok := s.byName[name]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	if err := r.checkMember(Member{Name: name, Weight: weight}); err != nil {
		return err
	}
	return r.apply(s, map[string]float64{name: weight})
}

// Replace makes members the ring's whole membership: absent nodes are
// added, missing ones removed, changed weights updated, and unchanged nodes
// keep their points, so the work is proportional to the difference. It is
// all or nothing and returns an error wrapping [ErrEmptyName],
// [ErrDuplicate] or [ErrInvalidWeight] for a bad list. An empty list empties
// the ring.
func (r *Ring) Replace(members ...Member) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snap.Load()
	want := make(map[string]float64, len(members))
	for _, m := range members {
		if err := r.checkMember(m); err != nil {
			return err
		}
		if _, ok := want[m.Name]; ok {
			return fmt.Errorf("%w: %q named twice", ErrDuplicate, m.Name)
		}
		want[m.Name] = m.Weight
	}
	ch := make(map[string]float64)
	for _, n := range s.nodes {
		w, ok := want[n.name]
		switch {
		case !ok:
			ch[n.name] = 0
		case r.points(w) != n.points || w != n.weight:
			ch[n.name] = w
		}
		delete(want, n.name)
	}
	for name, w := range want {
		ch[name] = w
	}
	if len(ch) == 0 {
		return nil
	}
	return r.apply(s, ch)
}

func (r *Ring) points(w float64) int {
	return int(math.Round(w * float64(r.cfg.VNodes)))
}

func (r *Ring) checkMember(m Member) error {
	if m.Name == "" {
		return ErrEmptyName
	}
	w := m.Weight
	if !(w > 0) || math.IsInf(w, 0) {
		return fmt.Errorf("%w: %q has weight %v", ErrInvalidWeight, m.Name, w)
	}
	if p := w * float64(r.cfg.VNodes); math.Round(p) < 1 || math.Round(p) > MaxPointsPerNode {
		return fmt.Errorf("%w: %q has weight %v, which gives %.0f points with VNodes %d (want 1 to %d)",
			ErrInvalidWeight, m.Name, w, math.Round(p), r.cfg.VNodes, MaxPointsPerNode)
	}
	return nil
}

// apply publishes a snapshot derived from old by the changes in ch: a weight
// of 0 removes the node, any other weight adds it or sets its weight. The
// caller holds r.mu and has validated ch.
func (r *Ring) apply(old *snapshot, ch map[string]float64) error {
	// New member list, sorted by name.
	nodes := make([]node, 0, len(old.nodes)+len(ch))
	for _, n := range old.nodes {
		if _, ok := ch[n.name]; !ok {
			nodes = append(nodes, n)
		}
	}
	var fresh []string
	for name, w := range ch {
		if w != 0 {
			nodes = append(nodes, node{name: name, weight: w, points: r.points(w)})
			fresh = append(fresh, name)
		}
	}
	slices.SortFunc(nodes, func(a, b node) int { return strings.Compare(a.name, b.name) })
	total := 0
	byName := make(map[string]uint32, len(nodes))
	for i, n := range nodes {
		byName[n.name] = uint32(i)
		total += n.points
	}
	if total > math.MaxInt32 {
		return fmt.Errorf("%w: ring would hold %d points, more than %d", ErrInvalidWeight, total, math.MaxInt32)
	}

	// Points of the new and re-weighted nodes, sorted.
	slices.Sort(fresh)
	nadd := 0
	for _, name := range fresh {
		nadd += nodes[byName[name]].points
	}
	add := make([]point, 0, nadd)
	for _, name := range fresh {
		idx := byName[name]
		h := xxhash.Sum64String(name)
		for i := 0; i < nodes[idx].points; i++ {
			add = append(add, point{pointPos(h, i), idx})
		}
	}
	addBits := tableBits(nadd)
	if nadd == total {
		addBits = tableBits(total) // the table is the snapshot's index
	}
	add, addTbl := sortPoints(add, addBits)

	// Old indices to new ones; -1 for nodes whose points are dropped.
	remap := make([]int64, len(old.nodes))
	for i, n := range old.nodes {
		remap[i] = -1
		if _, changed := ch[n.name]; !changed {
			remap[i] = int64(byName[n.name])
		}
	}

	s := &snapshot{probes: r.cfg.Probes, nodes: nodes, byName: byName}
	if nadd == total {
		// Nothing survives from the old ring.
		s.pts, s.tbl, s.shift = add, addTbl, 64-addBits
	} else {
		// Merge the surviving old points with the new ones.
		s.pts = make([]point, total)
		k, j := 0, 0
		for _, p := range old.pts {
			m := remap[p.owner]
			if m < 0 {
				continue
			}
			p.owner = uint32(m)
			for j < len(add) && pointLess(add[j], p) {
				s.pts[k] = add[j]
				j++
				k++
			}
			s.pts[k] = p
			k++
		}
		copy(s.pts[k:], add[j:])
		s.index()
	}
	r.snap.Store(s)
	return nil
}
