package eventsource

import (
	"hash/maphash"
	"slices"
)

// The memory store's event ID index. Event IDs made by NewID (the IDs the
// store and Repository generate) are version 7 UUIDs that increase over
// time, so most arrive in order: they go into a sorted array by appending
// at its end, which costs no hashing and no random memory access. IDs that
// arrive slightly out of order are inserted near the end; all other IDs
// (any string a caller chooses, or a UUID that arrives very late) go into a
// hash map keyed by a 64-bit hash, with an exact map for the rare hash
// collision.

// v7Window is how far from the end of the sorted array an out-of-order
// UUID may still be inserted.
const v7Window = 256

// v7key is a version 7 UUID in canonical lowercase form as two integers
// that order the same way as the strings. Only canonical lowercase strings
// parse, so keys and strings correspond one to one.
type v7key struct{ hi, lo uint64 }

func (a v7key) cmp(b v7key) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

// hexVal maps a byte to its value as a lowercase hex digit, or 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// v7Digits are the offsets of the 32 hex digits in a canonical UUID.
var v7Digits = [32]uint8{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17,
	19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35}

func parseV7(s string) (v7key, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return v7key{}, false
	}
	var k v7key
	var bad byte
	for _, i := range v7Digits[:16] {
		d := hexVal[s[i]]
		bad |= d
		k.hi = k.hi<<4 | uint64(d&0xf)
	}
	for _, i := range v7Digits[16:] {
		d := hexVal[s[i]]
		bad |= d
		k.lo = k.lo<<4 | uint64(d&0xf)
	}
	if bad&0xf0 != 0 || k.hi>>12&0xf != 7 || k.lo>>62 != 2 {
		return v7key{}, false
	}
	return k, true
}

type v7entry struct {
	key v7key
	pos uint64
}

// idIndex maps event IDs to positions. It is not safe for concurrent use;
// the MemoryStore's mutex guards it.
type idIndex struct {
	sorted []v7entry // version 7 UUIDs, sorted by key

	seed     maphash.Seed
	hashed   map[uint64]uint64 // hash(ID)|1 -> position of the first ID with that hash
	collided map[string]uint64 // IDs whose hash another ID already has
	// Version 7 UUIDs that went to the hash map all have keys <= hashedV7Max.
	hashedV7    bool
	hashedV7Max v7key
}

func (x *idIndex) init() {
	x.seed = maphash.MakeSeed()
	x.hashed = make(map[uint64]uint64)
	x.collided = make(map[string]uint64)
}

// idKey is an ID with its parsed form, computed once per append.
type idKey struct {
	id   string
	key  v7key
	isV7 bool
}

func makeIDKey(id string) idKey {
	k, ok := parseV7(id)
	return idKey{id: id, key: k, isV7: ok}
}

// lookup returns the position of the event with the given ID. idAt returns
// the ID stored at a position, to resolve hash hits.
func (x *idIndex) lookup(id idKey, idAt func(uint64) string) (uint64, bool) {
	if id.isV7 {
		k := id.key
		if n := len(x.sorted); n > 0 && k.cmp(x.sorted[n-1].key) <= 0 {
			if i, ok := x.search(k); ok {
				return x.sorted[i].pos, true
			}
		}
		if !x.hashedV7 || k.cmp(x.hashedV7Max) > 0 {
			return 0, false // newer than any hashed UUID: not in the map either
		}
	}
	pos, taken := x.hashed[x.hash(id.id)]
	if !taken {
		return 0, false
	}
	if idAt(pos) == id.id {
		return pos, true
	}
	pos, ok := x.collided[id.id]
	return pos, ok
}

// insert records that the event with the given ID, which lookup reported
// absent, is at pos.
func (x *idIndex) insert(id idKey, pos uint64) {
	if id.isV7 {
		k := id.key
		n := len(x.sorted)
		if n == 0 || k.cmp(x.sorted[n-1].key) > 0 {
			x.sorted = append(x.sorted, v7entry{k, pos})
			return
		}
		if i, _ := x.search(k); n-i <= v7Window {
			x.sorted = slices.Insert(x.sorted, i, v7entry{k, pos})
			return
		}
		if !x.hashedV7 || k.cmp(x.hashedV7Max) > 0 {
			x.hashedV7, x.hashedV7Max = true, k
		}
	}
	h := x.hash(id.id)
	if _, taken := x.hashed[h]; taken {
		x.collided[id.id] = pos
		return
	}
	x.hashed[h] = pos
}

func (x *idIndex) search(k v7key) (int, bool) {
	return slices.BinarySearchFunc(x.sorted, k, func(e v7entry, k v7key) int { return e.key.cmp(k) })
}

func (x *idIndex) hash(id string) uint64 { return maphash.String(x.seed, id) | 1 }
