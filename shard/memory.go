package shard

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// MemoryStore is one shard's data in memory: a map from keys to values
// that can also record deletions (tombstones), which a shard receiving a
// moving range needs so that a copy never resurrects a key deleted during
// the move. It is safe for concurrent use; the zero value is an empty
// store.
type MemoryStore struct {
	mu   sync.RWMutex
	data map[string]memEntry
}

type memEntry struct {
	val     []byte
	deleted bool
}

// Get returns key's value. found is false if the store has no entry for
// key; deleted is true if its entry is a tombstone.
func (s *MemoryStore) Get(key string) (val []byte, found, deleted bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.data[key]
	if !ok {
		return nil, false, false
	}
	return slices.Clone(e.val), true, e.deleted
}

// Put stores a copy of val under key, replacing any value or tombstone.
func (s *MemoryStore) Put(key string, val []byte) {
	s.set(key, memEntry{val: slices.Clone(val)})
}

// Delete removes key; with tombstone true it records the deletion instead.
func (s *MemoryStore) Delete(key string, tombstone bool) {
	if tombstone {
		s.set(key, memEntry{deleted: true})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, key)
}

func (s *MemoryStore) set(key string, e memEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		s.data = map[string]memEntry{}
	}
	s.data[key] = e
}

// PutIfAbsent stores val under key unless the store has an entry (value or
// tombstone) for it, and reports whether it stored.
func (s *MemoryStore) PutIfAbsent(key string, val []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.data[key]; ok {
		return false
	}
	if s.data == nil {
		s.data = map[string]memEntry{}
	}
	s.data[key] = memEntry{val: slices.Clone(val)}
	return true
}

// Snapshot returns a copy of the live (non-deleted) entries for which in
// returns true.
func (s *MemoryStore) Snapshot(in func(key string) bool) map[string][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string][]byte{}
	for k, e := range s.data {
		if !e.deleted && in(k) {
			out[k] = slices.Clone(e.val)
		}
	}
	return out
}

// DeleteFunc removes every entry for which in returns true; with
// tombstonesOnly it removes only tombstones. It returns the number of
// entries removed.
func (s *MemoryStore) DeleteFunc(in func(key string) bool, tombstonesOnly bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, e := range s.data {
		if (e.deleted || !tombstonesOnly) && in(k) {
			delete(s.data, k)
			n++
		}
	}
	return n
}

// Len returns the number of live entries.
func (s *MemoryStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, e := range s.data {
		if !e.deleted {
			n++
		}
	}
	return n
}

// KV is an in-memory sharded key-value store: a [Router] over
// [MemoryStore] shards that is also its own [Mover]. It is the reference
// for the resharding protocol: during and after any [KV.Reshard], every key
// that was written and not deleted stays readable with its latest value.
// It is safe for concurrent use.
type KV struct {
	router *Router[*MemoryStore]
}

var _ Mover = (*KV)(nil)

// NewKV returns an empty store with one MemoryStore per shard of m.
func NewKV(m *Map) (*KV, error) {
	stores := make(map[string]*MemoryStore, len(m.shards))
	for _, s := range m.shards {
		stores[s] = &MemoryStore{}
	}
	r, err := NewRouter(m, stores)
	if err != nil {
		return nil, err
	}
	return &KV{router: r}, nil
}

// Router returns the store's router, for its map and per-shard stores.
func (kv *KV) Router() *Router[*MemoryStore] { return kv.router }

// Get returns key's value or [ErrNotFound].
func (kv *KV) Get(key string) ([]byte, error) {
	var val []byte
	err := kv.router.Do(key, func(rt Route[*MemoryStore]) error {
		v, found, deleted := rt.Res.Get(key)
		switch {
		case found && deleted:
			return ErrNotFound
		case found:
			val = v
			return nil
		case rt.Fallback != "":
			if v, found, deleted := rt.FallbackRes.Get(key); found && !deleted {
				val = v
				return nil
			}
		}
		return ErrNotFound
	})
	return val, err
}

// Put stores a copy of val under key.
func (kv *KV) Put(key string, val []byte) {
	_ = kv.router.Do(key, func(rt Route[*MemoryStore]) error {
		rt.Res.Put(key, val)
		return nil
	})
}

// Delete removes key. While key's range is moving it records a tombstone on
// the new owner, so that neither a read's fallback nor the copy brings the
// old value back; [KV.Cleanup] drops the tombstone once the move is done.
func (kv *KV) Delete(key string) {
	_ = kv.router.Do(key, func(rt Route[*MemoryStore]) error {
		rt.Res.Delete(key, rt.Fallback != "")
		return nil
	})
}

// Reshard moves the store to next, creating an empty MemoryStore for each
// shard next adds; see [Router.Reshard].
func (kv *KV) Reshard(ctx context.Context, next *Map) error {
	add := map[string]*MemoryStore{}
	for _, s := range next.shards {
		if _, ok := kv.router.Resource(s); !ok {
			add[s] = &MemoryStore{}
		}
	}
	return kv.router.Reshard(ctx, next, kv, add)
}

// Copy implements [Mover]: it copies the live keys in m's ranges from
// m.From to m.To without overwriting anything m.To holds.
func (kv *KV) Copy(ctx context.Context, m Move) error {
	from, to, err := kv.stores(m)
	if err != nil {
		return err
	}
	for k, v := range from.Snapshot(m.Contains) {
		if err := ctx.Err(); err != nil {
			return err
		}
		to.PutIfAbsent(k, v)
	}
	return nil
}

// Cleanup implements [Mover]: it deletes m's ranges from m.From and drops
// the tombstones in them on m.To.
func (kv *KV) Cleanup(_ context.Context, m Move) error {
	from, to, err := kv.stores(m)
	if err != nil {
		return err
	}
	from.DeleteFunc(m.Contains, false)
	to.DeleteFunc(m.Contains, true)
	return nil
}

func (kv *KV) stores(m Move) (from, to *MemoryStore, err error) {
	from, ok := kv.router.Resource(m.From)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownShard, m.From)
	}
	to, ok = kv.router.Resource(m.To)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownShard, m.To)
	}
	return from, to, nil
}

// Dump returns every live key and value, read from all shards with
// [Router.Scatter] and resolved as [KV.Get] would (the new owner's entry
// wins over the fallback's during a reshard).
func (kv *KV) Dump(ctx context.Context) (map[string][]byte, error) {
	s := kv.router.pin()
	defer s.unpin()
	type entries = map[string]memEntry
	per, err := gather(ctx, s, 0, func(_ context.Context, _ string, st *MemoryStore) (entries, error) {
		st.mu.RLock()
		defer st.mu.RUnlock()
		return maps.Clone(st.data), nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, k := range slices.Sorted(maps.Keys(union(per))) {
		rt := s.route(k)
		e, ok := per[rt.Shard][k]
		if !ok && rt.Fallback != "" {
			e, ok = per[rt.Fallback][k]
		}
		if ok && !e.deleted {
			out[k] = slices.Clone(e.val)
		}
	}
	return out, nil
}

func union[V any](per map[string]map[string]V) map[string]struct{} {
	out := map[string]struct{}{}
	for _, m := range per {
		for k := range m {
			out[k] = struct{}{}
		}
	}
	return out
}
