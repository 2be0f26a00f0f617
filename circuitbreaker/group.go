package circuitbreaker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// GroupConfig configures a [Group].
type GroupConfig struct {
	// Breaker configures every breaker of the group. If its Name is set,
	// each breaker is named Name + "/" + key; otherwise it is named key.
	// The hook, the logger and the store are shared by all breakers; a
	// Transition's Key says which breaker changed.
	Breaker Config

	// MaxBreakers bounds the number of breakers the group holds. Zero
	// means 1024.
	MaxBreakers int

	// IdleTimeout is how long a breaker must go unused before the group
	// may evict it. Zero means ten minutes.
	IdleTimeout time.Duration
}

const (
	defaultMaxBreakers = 1024
	defaultIdleTimeout = 10 * time.Minute
)

// Group is a set of breakers with one config, one per key: per upstream
// host, per tenant, per endpoint. Breakers are created on first use and
// live until evicted; a key's breaker is independent of every other key's.
//
// The group holds at most [GroupConfig.MaxBreakers] breakers. When it must
// make room, and at most once per IdleTimeout otherwise, it evicts
// breakers unused for IdleTimeout that are closed or half-open with no
// probe in flight; if none qualifies and the group is full, it evicts the
// least recently used breaker, preferring closed ones, so that trips are
// the last state to be forgotten. A call holding a breaker that is then
// evicted completes normally on it; the next call for the key gets a fresh
// closed breaker.
//
// Looking up an existing key is lock-free; creating a key takes a mutex
// and, when the group is full, a scan of the group. Breakers share one
// coarse clock. A Group is safe for concurrent use.
type Group struct {
	s      *settings
	prefix string
	max    int
	idle   int64
	clk    *clock
	wake   chan struct{}

	m         sync.Map // key -> *entry
	mu        sync.Mutex
	n         int   // entries, under mu
	lastSweep int64 // under mu
}

type entry struct {
	key  string
	b    *Breaker
	used atomic.Int64 // coarse clock time of the last Get
}

// NewGroup returns an empty group, or a [*ConfigError] if cfg is invalid.
func NewGroup(cfg GroupConfig) (*Group, error) {
	s, err := cfg.Breaker.validate()
	if err != nil {
		return nil, err
	}
	if cfg.MaxBreakers < 0 {
		return nil, &ConfigError{Field: "MaxBreakers", Reason: "must not be negative"}
	}
	if cfg.IdleTimeout < 0 {
		return nil, &ConfigError{Field: "IdleTimeout", Reason: "must not be negative"}
	}
	if cfg.MaxBreakers == 0 {
		cfg.MaxBreakers = defaultMaxBreakers
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	g := &Group{
		s:      s,
		prefix: s.Name,
		max:    cfg.MaxBreakers,
		idle:   int64(cfg.IdleTimeout),
		clk:    newClock(s.resolution),
		wake:   make(chan struct{}, 1),
	}
	return g, nil
}

// Get returns the breaker for key, creating a closed one if there is none.
// It never returns nil.
func (g *Group) Get(key string) *Breaker {
	if v, ok := g.m.Load(key); ok {
		e := v.(*entry)
		if now := g.clk.coarse(); e.used.Load() != now {
			e.used.Store(now)
		}
		return e.b
	}
	return g.insert(key)
}

// Do is g.Get(key).Do(ctx, fn).
func (g *Group) Do(ctx context.Context, key string, fn func(context.Context) error) error {
	return g.Get(key).Do(ctx, fn)
}

// Allow is g.Get(key).Allow().
func (g *Group) Allow(key string) (done func(error), err error) {
	return g.Get(key).Allow()
}

// Len returns the number of breakers in the group.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// Remove drops key's breaker, if any. A later Get creates a fresh one.
func (g *Group) Remove(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.m.LoadAndDelete(key); ok {
		g.n--
	}
}

// Range calls f for each breaker in the group until f returns false. It
// sees a breaker added or removed during the call at most once.
func (g *Group) Range(f func(key string, b *Breaker) bool) {
	g.m.Range(func(_, v any) bool {
		e := v.(*entry)
		return f(e.key, e.b)
	})
}

func (g *Group) insert(key string) *Breaker {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clk.coarse()
	if v, ok := g.m.Load(key); ok {
		return v.(*entry).b
	}
	if g.n >= g.max || now-g.lastSweep >= g.idle {
		g.sweep(now)
	}
	if g.n >= g.max {
		g.evictLRU()
	}
	name := key
	if g.prefix != "" {
		name = g.prefix + "/" + key
	}
	var sh *sharing
	if g.s.Store != nil {
		sh = newSharing(g.wake)
	}
	e := &entry{key: key, b: newBreaker(g.s, name, key, g.clk, sh)}
	e.used.Store(now)
	g.m.Store(key, e)
	g.n++
	return e.b
}

// quiet reports whether b holds no state worth keeping: closed, or
// half-open with no probe in flight.
func quiet(b *Breaker) bool {
	ep := b.current()
	switch ep.state {
	case StateClosed:
		return true
	case StateHalfOpen:
		for i := range ep.probes {
			if ep.probes[i].Load() != nil {
				return false
			}
		}
		return true
	}
	return false
}

// sweep evicts idle quiet breakers. Called with g.mu held.
func (g *Group) sweep(now int64) {
	g.lastSweep = now
	g.m.Range(func(k, v any) bool {
		e := v.(*entry)
		if now-e.used.Load() >= g.idle && quiet(e.b) {
			g.m.Delete(k)
			g.n--
		}
		return true
	})
}

// evictLRU evicts the least recently used breaker, quiet ones first.
// Called with g.mu held.
func (g *Group) evictLRU() {
	var victim *entry
	victimQuiet := false
	g.m.Range(func(_, v any) bool {
		e := v.(*entry)
		q := quiet(e.b)
		switch {
		case victim == nil, q && !victimQuiet:
		case q == victimQuiet && e.used.Load() < victim.used.Load():
		default:
			return true
		}
		victim, victimQuiet = e, q
		return true
	})
	if victim != nil {
		g.m.Delete(victim.key)
		g.n--
	}
}

// Run shares the trips of every breaker in the group through
// [Config.Store], like [Breaker.Run], until ctx is done; then it returns
// ctx.Err(). Without a Store it returns [ErrNoStore] at once. Every
// SyncInterval it loads the shared state of each breaker the group holds,
// one after the other: size SyncInterval to the group's size and the
// store's latency.
func (g *Group) Run(ctx context.Context) error {
	if g.s.Store == nil {
		return ErrNoStore
	}
	return runSync(ctx, g.s, g.wake, func(ctx context.Context, pull bool) {
		g.Range(func(_ string, b *Breaker) bool {
			b.sync(ctx, pull)
			return ctx.Err() == nil
		})
	})
}
