package shard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// Mover moves data between shards while a [Router] reshards. Users
// implement it for their stores; [KV] is the in-memory reference
// implementation.
type Mover interface {
	// Copy copies every key in m's ranges ([Move.Contains]) from shard
	// m.From to shard m.To. It
	// must not overwrite a key that m.To already holds, including a
	// deletion recorded there: while the range moves, writes go to m.To and
	// are newer than anything on m.From. It may be called again for the
	// same move after a failure, so it must be idempotent.
	Copy(ctx context.Context, m Move) error
	// Cleanup runs once the move is complete and no reader can fall back to
	// m.From any more: it deletes m's ranges from m.From, and may drop any
	// deletion markers Copy's contract made m.To keep for them. It may
	// be called again after a failure.
	Cleanup(ctx context.Context, m Move) error
}

// Route tells where one key lives.
type Route[T any] struct {
	// Epoch is the epoch of the map that routed the key; stores can use it
	// as a fencing token.
	Epoch uint64
	// Shard owns the key: every write goes here, and reads try it first.
	Shard string
	// Res is Shard's resource.
	Res T
	// Fallback is set while the key's range is moving to Shard: a read that
	// finds nothing (and no deletion marker) on Shard must read Fallback,
	// the range's previous owner. It is "" otherwise.
	Fallback string
	// FallbackRes is Fallback's resource, the zero T when Fallback is "".
	FallbackRes T
}

// state is one published routing state. Operations pin the state they
// route by (Router.Do); a reshard retires a state and waits until its pins
// drain before it copies or deletes data that state routes to.
type state[T any] struct {
	m    *Map
	prev *Map // non-nil while moving from prev to m
	res  map[string]T
	cur  []T // resources of m.shards, by index
	old  []T // resources of prev.shards, by index

	pins    atomic.Int64
	retired atomic.Bool
	once    sync.Once
	drained chan struct{}
}

func newState[T any](m, prev *Map, res map[string]T) *state[T] {
	s := &state[T]{m: m, prev: prev, res: res, drained: make(chan struct{})}
	for _, name := range m.shards {
		s.cur = append(s.cur, res[name])
	}
	if prev != nil {
		for _, name := range prev.shards {
			s.old = append(s.old, res[name])
		}
	}
	return s
}

func (s *state[T]) unpin() {
	if s.pins.Add(-1) == 0 && s.retired.Load() {
		s.once.Do(func() { close(s.drained) })
	}
}

func (s *state[T]) retire() {
	s.retired.Store(true)
	if s.pins.Load() == 0 {
		s.once.Do(func() { close(s.drained) })
	}
}

func (s *state[T]) route(key string) Route[T] {
	i := s.m.locate(key)
	rt := Route[T]{Epoch: s.m.epoch, Shard: s.m.shards[i], Res: s.cur[i]}
	if s.prev != nil {
		if j := s.prev.locate(key); s.prev.shards[j] != rt.Shard {
			rt.Fallback, rt.FallbackRes = s.prev.shards[j], s.old[j]
		}
	}
	return rt
}

// Router routes keys to shards through a versioned [Map] and reshards
// without losing or hiding data. Shards are resources of any type T: a
// *sql.DB, a client, or a [*MemoryStore].
//
// [Router.Do] routes a key and pins the routing state for the duration of
// the operation; [Router.Reshard] moves to a new map in three steps:
//
//  1. It publishes the new map with the old one as fallback: writes go to
//     the new owner, reads go to the new owner and fall back to the old
//     owner for keys it does not have. It waits until every operation
//     routed by the old map has finished.
//  2. It copies each moving range to its new owner with [Mover.Copy], then
//     publishes the new map alone and waits until every operation that
//     could still fall back has finished.
//  3. It deletes the moved ranges from their old owners with
//     [Mover.Cleanup] and drops the resources of shards no longer in the
//     map.
//
// At every instant each key is readable: before its copy it is on the old
// owner (the fallback), after it on the new one, and writes made meanwhile
// are on the new owner, which Copy never overwrites. A reshard interrupted
// by an error or a cancelled context leaves the router in step 1 or 3,
// where routing is still correct; call Reshard again with the same map to
// finish it.
//
// The guarantee holds for operations that go through [Router.Do] on this
// Router. Processes that route independently must fence their stores with
// [Route.Epoch] instead.
//
// A Router is safe for concurrent use.
type Router[T any] struct {
	mu sync.Mutex // serialises reshards
	st atomic.Pointer[state[T]]

	// Under mu.
	draining []*state[T] // retired states not yet known to be drained
	cleanup  []Move      // moves whose Cleanup has not succeeded
	target   *Map        // map of an unfinished reshard
	mover    Mover       // mover of the unfinished reshard
	removed  []string    // shards to drop once cleanup is done
}

// NewRouter returns a router over m. shards must hold a resource for every
// shard of m; it may hold more, for shards a later map will add. It returns
// an error wrapping [ErrUnknownShard] if a shard of m has no resource.
func NewRouter[T any](m *Map, shards map[string]T) (*Router[T], error) {
	for _, s := range m.shards {
		if _, ok := shards[s]; !ok {
			return nil, fmt.Errorf("%w: no resource for %q", ErrUnknownShard, s)
		}
	}
	r := &Router[T]{}
	r.st.Store(newState(m, nil, maps.Clone(shards)))
	return r, nil
}

// Map returns the current map: during a reshard, the map being moved to.
func (r *Router[T]) Map() *Map { return r.st.Load().m }

// Resharding reports whether a reshard has started and not finished.
func (r *Router[T]) Resharding() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.target != nil
}

// Route returns where key lives now. It does not pin the routing state:
// use [Router.Do] for operations that must not race with a reshard.
func (r *Router[T]) Route(key string) Route[T] { return r.st.Load().route(key) }

// Resource returns the resource of a shard the router knows.
func (r *Router[T]) Resource(shard string) (T, bool) {
	res, ok := r.st.Load().res[shard]
	return res, ok
}

// pin returns the current state with a pin held on it.
func (r *Router[T]) pin() *state[T] {
	for {
		s := r.st.Load()
		s.pins.Add(1)
		if r.st.Load() == s {
			return s
		}
		s.unpin() // a reshard replaced it meanwhile: route by the new one
	}
}

// Do routes key and calls fn with its route, keeping the routing state
// alive until fn returns: a concurrent [Router.Reshard] waits for fn before
// it copies or deletes data fn may touch. It returns fn's error. fn must not
// call Reshard, and should not block for long, since it holds reshards back.
func (r *Router[T]) Do(key string, fn func(Route[T]) error) error {
	s := r.pin()
	defer s.unpin()
	return fn(s.route(key))
}

// Reshard moves the router to next, copying and cleaning up the ranges
// that change owner with mover (see [Router] for the protocol). add holds
// the resources of shards next adds; shards next drops are forgotten at the
// end.
//
// It returns an error wrapping [ErrStaleEpoch] if next is not newer than
// the current map, [ErrStrategy] if next is of another strategy,
// [ErrUnknownShard] if a shard of next has no resource, and
// [ErrReshardInProgress] if an unfinished reshard targets another map. A
// failed Copy or Cleanup is returned as a [*ShardError] naming the source
// shard; a cancelled ctx returns an error wrapping ctx.Err(). In those
// cases the reshard stays in progress, routing stays correct, and calling
// Reshard again with the same next (add may then be nil) resumes it.
func (r *Router[T]) Reshard(ctx context.Context, next *Map, mover Mover, add map[string]T) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.target != nil && r.target != next {
		return fmt.Errorf("%w: to epoch %d", ErrReshardInProgress, r.target.epoch)
	}
	if r.target == nil {
		if err := r.begin(next, mover, add); err != nil {
			return err
		}
	} else if mover != nil {
		r.mover = mover
	}
	if err := r.drain(ctx); err != nil {
		return err
	}
	if s := r.st.Load(); s.prev != nil {
		moves, err := Diff(s.prev, s.m)
		if err != nil {
			return err
		}
		for _, mv := range moves {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("shard: reshard to epoch %d: %w", next.epoch, err)
			}
			if err := r.mover.Copy(ctx, mv); err != nil {
				return &ShardError{Shard: mv.From, Err: fmt.Errorf("copy to %s: %w", mv.To, err)}
			}
		}
		// Step 2: the new map alone.
		r.publish(newState(s.m, nil, s.res))
		r.cleanup = moves
	}
	if err := r.drain(ctx); err != nil {
		return err
	}
	// Step 3: clean up the old owners.
	for len(r.cleanup) > 0 {
		mv := r.cleanup[0]
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("shard: reshard to epoch %d: %w", next.epoch, err)
		}
		if err := r.mover.Cleanup(ctx, mv); err != nil {
			return &ShardError{Shard: mv.From, Err: fmt.Errorf("cleanup after move to %s: %w", mv.To, err)}
		}
		r.cleanup = r.cleanup[1:]
	}
	if len(r.removed) > 0 {
		s := r.st.Load()
		res := maps.Clone(s.res)
		for _, name := range r.removed {
			delete(res, name)
		}
		r.publish(newState(s.m, nil, res))
	}
	r.target, r.mover, r.removed = nil, nil, nil
	return nil
}

// begin validates next and publishes step 1. The caller holds r.mu.
func (r *Router[T]) begin(next *Map, mover Mover, add map[string]T) error {
	s := r.st.Load()
	if next.epoch <= s.m.epoch {
		return fmt.Errorf("%w: map epoch %d, router at %d", ErrStaleEpoch, next.epoch, s.m.epoch)
	}
	if next.hashed != s.m.hashed {
		return fmt.Errorf("%w: cannot reshard between a hash map and a range map", ErrStrategy)
	}
	if mover == nil {
		return errors.New("shard: Reshard needs a Mover")
	}
	res := maps.Clone(s.res)
	maps.Copy(res, add)
	for _, name := range next.shards {
		if _, ok := res[name]; !ok {
			return fmt.Errorf("%w: no resource for %q", ErrUnknownShard, name)
		}
	}
	var removed []string
	for _, name := range s.m.shards {
		if !next.Has(name) {
			removed = append(removed, name)
		}
	}
	r.target, r.mover, r.removed = next, mover, removed
	r.publish(newState(next, s.m, res))
	return nil
}

// publish makes s current and retires the previous state. The caller holds
// r.mu.
func (r *Router[T]) publish(s *state[T]) {
	old := r.st.Swap(s)
	old.retire()
	r.draining = append(r.draining, old)
}

// drain waits until every retired state has no pinned operation. The
// caller holds r.mu.
func (r *Router[T]) drain(ctx context.Context) error {
	for len(r.draining) > 0 {
		select {
		case <-r.draining[0].drained:
			r.draining = slices.Delete(r.draining, 0, 1)
		case <-ctx.Done():
			return fmt.Errorf("shard: waiting for operations routed by epoch %d: %w", r.draining[0].m.epoch, ctx.Err())
		}
	}
	return nil
}
