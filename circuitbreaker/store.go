package circuitbreaker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Store shares trips among the instances of a breaker (the same
// [Config.Name] in several processes), so that when one instance finds a
// dependency broken the others stop calling it too.
//
// The sharing is asynchronous and never on the call path: a trip is queued
// for [Breaker.Run] (or [Group.Run]) to publish, and Run reads the shared
// state every [Config.SyncInterval] and adopts a newer trip whose open
// period has not ended. Closed-state calls never touch the store, and no
// lock is held across a guarded call. Each instance probes recovery on its
// own when its open period ends.
//
// Consistency: the stored state is a max-register per name, ordered by
// [SharedState.Newer], so concurrent publishers converge on the newest
// trip whatever the order of their writes. An instance adopts a trip
// within about one SyncInterval plus the store's latency; it never adopts
// one it has seen, one whose open period is over, or one while it is open
// or forced. Open periods are wall-clock times, so instances' clocks
// should agree to well within OpenTimeout. If the store is unreachable,
// breakers keep working on local state and Run logs the error.
//
// Implementations must be safe for concurrent use and should honour ctx.
// [MemoryStore] is the reference implementation; the
// circuitbreakertest package holds the suite every Store must pass.
type Store interface {
	// Load returns the state stored under name, or the zero SharedState
	// and a nil error when there is none.
	Load(ctx context.Context, name string) (SharedState, error)

	// Publish merges s into the state stored under name: the stored state
	// becomes s if s is newer than it ([SharedState.Newer]) and is left
	// alone otherwise. The merge must be atomic with respect to concurrent
	// calls.
	Publish(ctx context.Context, name string, s SharedState) error
}

// SharedState is the trip one instance publishes for the others.
type SharedState struct {
	// Version orders trips of one name: each instance publishes one more
	// than the highest version it has seen.
	Version uint64
	// OpenUntil is the end of the published open period.
	OpenUntil time.Time
	// Trips is the number of consecutive trips, which sets the backoff.
	Trips int
}

// Newer reports whether s supersedes t: a higher Version, or the same
// Version and a later OpenUntil.
func (s SharedState) Newer(t SharedState) bool {
	if s.Version != t.Version {
		return s.Version > t.Version
	}
	return s.OpenUntil.After(t.OpenUntil)
}

// sharing is a breaker's link to its Store.
type sharing struct {
	wake    chan struct{} // size one; shared by the breakers of a Group
	pending atomic.Pointer[SharedState]
	seen    atomic.Uint64 // highest version published or adopted
}

func newSharing(wake chan struct{}) *sharing { return &sharing{wake: wake} }

// published queues a local trip for Run to publish.
func (sh *sharing) published(until time.Time, trips int) {
	v := sh.seen.Add(1)
	sh.pending.Store(&SharedState{Version: v, OpenUntil: until, Trips: trips})
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// Run shares the breaker's trips through [Config.Store] until ctx is done,
// then returns ctx.Err(). It publishes each local trip as soon as it
// happens and adopts other instances' trips every [Config.SyncInterval].
// Store errors are logged to [Config.Logger] and retried; they never stop
// Run or affect calls. Without a Store, Run returns [ErrNoStore] at once.
//
// Run is what makes sharing asynchronous: start it in a goroutine you own
// and cancel ctx to stop it.
func (b *Breaker) Run(ctx context.Context) error {
	if b.share == nil {
		return ErrNoStore
	}
	return runSync(ctx, b.s, b.share.wake, func(ctx context.Context, pull bool) { b.sync(ctx, pull) })
}

func runSync(ctx context.Context, s *settings, wake <-chan struct{}, step func(context.Context, bool)) error {
	t := time.NewTicker(s.SyncInterval)
	defer t.Stop()
	step(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
			step(ctx, false)
		case <-t.C:
			step(ctx, true)
		}
	}
}

// sync publishes a pending trip and, if pull, adopts the shared state.
func (b *Breaker) sync(ctx context.Context, pull bool) {
	if ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.s.SyncInterval)
	defer cancel()
	if st := b.share.pending.Swap(nil); st != nil {
		if err := b.s.Store.Publish(ctx, b.name, *st); err != nil {
			b.share.pending.CompareAndSwap(nil, st) // retry unless a newer trip is queued
			b.storeError("publish", err)
		}
	}
	if !pull {
		return
	}
	st, err := b.s.Store.Load(ctx, b.name)
	if err != nil {
		b.storeError("load", err)
		return
	}
	b.adopt(st)
}

func (b *Breaker) storeError(op string, err error) {
	if b.s.Logger != nil {
		b.s.Logger.LogAttrs(context.Background(), slog.LevelWarn, "circuit breaker store error",
			slog.String("breaker", b.name), slog.String("op", op), slog.String("error", err.Error()))
	}
}

// adopt opens a closed or half-open breaker for a shared trip it has not
// seen whose open period is still running.
func (b *Breaker) adopt(st SharedState) {
	for {
		seen := b.share.seen.Load()
		if st.Version <= seen {
			return
		}
		if b.share.seen.CompareAndSwap(seen, st.Version) {
			break
		}
	}
	until := int64(st.OpenUntil.Sub(b.clk.base))
	for {
		now := b.clk.real()
		if until <= now {
			return
		}
		ep := b.ep.Load()
		if ep.state != StateClosed && ep.state != StateHalfOpen {
			return
		}
		to := b.newOpen(ep.gen+1, StateOpen, max(ep.trips, st.Trips), now, until)
		if b.swap(ep, to, reasonShared, nil) {
			return
		}
	}
}
