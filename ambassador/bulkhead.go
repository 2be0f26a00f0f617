package ambassador

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Bulkhead limits the number of concurrent operations per key (an upstream
// host, a tenant), so that one slow dependency cannot take every
// connection, goroutine and memory the caller has: once a key's limit is
// reached, further callers wait up to [BulkheadConfig.MaxWait] for a slot
// and then fail fast with [ErrBulkheadFull]. Waiters are served in FIFO
// order.
//
// A Bulkhead is safe for concurrent use. The zero value is not usable:
// create one with [NewBulkhead].
type Bulkhead struct {
	limit   int64
	maxWait time.Duration
	max     int

	m  sync.Map // key -> *bulkheadEntry
	mu sync.Mutex
	n  int // entries, under mu
}

const deadEntry = 1 << 62

type bulkheadEntry struct {
	sem *semaphore.Weighted
	// users counts holders and waiters; deadEntry is set once the entry
	// is removed from the map, after which it gains no user.
	users atomic.Int64
}

// NewBulkhead returns a bulkhead configured by cfg, or a [*ConfigError]. A
// zero cfg.MaxConcurrent is rejected: a bulkhead must have a limit.
func NewBulkhead(cfg BulkheadConfig) (*Bulkhead, error) {
	switch {
	case cfg.MaxConcurrent <= 0:
		return nil, &ConfigError{Field: "Bulkhead.MaxConcurrent", Reason: "must be positive"}
	case cfg.MaxWait < 0:
		return nil, negative("Bulkhead.MaxWait")
	case cfg.MaxHosts < 0:
		return nil, negative("Bulkhead.MaxHosts")
	}
	return &Bulkhead{
		limit:   int64(cfg.MaxConcurrent),
		maxWait: cfg.MaxWait,
		max:     orDefault(cfg.MaxHosts, defaultMaxHosts),
	}, nil
}

// Acquire takes a slot for key, waiting up to MaxWait for one. It returns
// nil on success, and the caller must then call [Bulkhead.Release] with
// the same key exactly once. It returns an error wrapping [ErrBulkheadFull]
// if no slot freed up in time, or one wrapping ctx.Err() if ctx ended
// first; either way no slot is held.
func (b *Bulkhead) Acquire(ctx context.Context, key string) error {
	_, err := b.acquire(ctx, key)
	return err
}

// Release gives back a slot taken by a successful [Bulkhead.Acquire] for
// key. Releasing a slot that is not held is a programming error and
// panics.
func (b *Bulkhead) Release(key string) {
	v, ok := b.m.Load(key)
	if !ok {
		panic("ambassador: Bulkhead.Release of a key with no slot held")
	}
	v.(*bulkheadEntry).release()
}

// InFlight returns the number of slots held and callers waiting for key.
func (b *Bulkhead) InFlight(key string) int {
	if v, ok := b.m.Load(key); ok {
		return int(v.(*bulkheadEntry).users.Load() &^ deadEntry)
	}
	return 0
}

func (e *bulkheadEntry) release() {
	e.sem.Release(1)
	e.users.Add(-1)
}

func (b *Bulkhead) acquire(ctx context.Context, key string) (*bulkheadEntry, error) {
	for {
		e := b.entry(key)
		if e.users.Add(1)&deadEntry != 0 {
			continue // removed meanwhile: the map has a fresh entry
		}
		if e.sem.TryAcquire(1) {
			return e, nil
		}
		if b.maxWait > 0 {
			wctx, cancel := context.WithTimeout(ctx, b.maxWait)
			err := e.sem.Acquire(wctx, 1)
			cancel()
			if err == nil {
				return e, nil
			}
		}
		e.users.Add(-1)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ambassador: waiting for a slot for %s: %w", key, err)
		}
		return nil, fmt.Errorf("%w: %s has %d requests in flight", ErrBulkheadFull, key, b.limit)
	}
}

func (b *Bulkhead) entry(key string) *bulkheadEntry {
	if v, ok := b.m.Load(key); ok {
		return v.(*bulkheadEntry)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.m.Load(key); ok {
		return v.(*bulkheadEntry)
	}
	if b.n >= b.max {
		// Forget idle keys: an idle entry holds no state a fresh one
		// would not have.
		b.m.Range(func(k, v any) bool {
			if v.(*bulkheadEntry).users.CompareAndSwap(0, deadEntry) {
				b.m.Delete(k)
				b.n--
			}
			return true
		})
	}
	e := &bulkheadEntry{sem: semaphore.NewWeighted(b.limit)}
	b.m.Store(key, e)
	b.n++
	return e
}
