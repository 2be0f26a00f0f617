package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrInProgress is returned by the [Dedup] middleware when another
// delivery of the same message is being handled (its claim is live). The
// message is redelivered later; by then the other delivery has completed
// (and this one is skipped) or failed (and this one runs).
var ErrInProgress = errors.New("pubsub: message is being handled by another delivery")

// ClaimResult is the outcome of [DedupStore.Claim].
type ClaimResult int

const (
	// Claimed means the caller now holds the key and must Complete or
	// Release it.
	Claimed ClaimResult = iota
	// AlreadyDone means the key was completed within its TTL.
	AlreadyDone
	// InProgress means another holder's claim on the key is live.
	InProgress
)

// A DedupStore remembers which messages a consumer has processed, so a
// redelivered message is not processed twice (an idempotent consumer).
// Keys go through three states: free, claimed (for a lease, so that a
// holder that dies frees it) and done (for a TTL). A store shared by
// several processes (a database table) makes them idempotent together.
// Implementations must be safe for concurrent use.
type DedupStore interface {
	// Claim tries to take key for lease.
	Claim(ctx context.Context, key string, lease time.Duration) (ClaimResult, error)
	// Complete marks a claimed key done, remembered for ttl.
	Complete(ctx context.Context, key string, ttl time.Duration) error
	// Release frees a claimed key so a later delivery can claim it.
	Release(ctx context.Context, key string) error
}

// DedupConfig configures the [Dedup] middleware. Zero fields mean the
// defaults.
type DedupConfig struct {
	// TTL is how long a processed message is remembered (default 24h).
	// Make it longer than the longest redelivery or replay window.
	TTL time.Duration
	// Lease is how long a claim lasts if its holder never completes or
	// releases it, as when the process dies (default 1m). Make it longer
	// than the handler can run.
	Lease time.Duration
	// Key names a message in the store (default: the handler name, a
	// slash and the message ID, so each handler of a fan-out processes
	// the message once).
	Key func(ctx context.Context, m *Message) string
}

// Dedup returns middleware that makes a handler idempotent: a message
// whose key the store reports done is acknowledged without calling the
// handler; one being handled by another delivery fails with
// [ErrInProgress] (and is redelivered later); otherwise the handler runs
// and the key is marked done on success or released on failure. Store
// errors fail the delivery, so the message is redelivered rather than
// processed twice or lost.
func Dedup(store DedupStore, cfg DedupConfig) Middleware {
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	if cfg.Key == nil {
		cfg.Key = func(ctx context.Context, m *Message) string { return HandlerName(ctx) + "/" + m.ID }
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			key := cfg.Key(ctx, m)
			res, err := store.Claim(ctx, key, cfg.Lease)
			switch {
			case err != nil:
				return fmt.Errorf("pubsub: dedup claim %q: %w", key, err)
			case res == AlreadyDone:
				return nil
			case res == InProgress:
				return fmt.Errorf("%w: %q", ErrInProgress, key)
			}
			if err := next(ctx, m); err != nil {
				if rerr := store.Release(context.WithoutCancel(ctx), key); rerr != nil {
					return errors.Join(err, fmt.Errorf("pubsub: dedup release %q: %w", key, rerr))
				}
				return err
			}
			if err := store.Complete(context.WithoutCancel(ctx), key, cfg.TTL); err != nil {
				return fmt.Errorf("pubsub: dedup complete %q: %w", key, err)
			}
			return nil
		}
	}
}

// MemoryDedupStore is an in-process [DedupStore]. Expired keys are
// forgotten lazily. The zero value is ready to use and unbounded; set
// MaxKeys before first use to bound it. Safe for concurrent use.
type MemoryDedupStore struct {
	// MaxKeys, if positive, bounds the keys remembered; beyond it the
	// oldest done keys are forgotten first, weakening deduplication for
	// them but never blocking processing.
	MaxKeys int

	mu    sync.Mutex
	keys  map[string]dedupState
	order []string // done keys, oldest first
	head  int
}

type dedupState struct {
	done  bool
	until time.Time
}

var _ DedupStore = (*MemoryDedupStore)(nil)

// Claim implements [DedupStore]. It never fails.
func (s *MemoryDedupStore) Claim(_ context.Context, key string, lease time.Duration) (ClaimResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.gc(now)
	if st, ok := s.keys[key]; ok && now.Before(st.until) {
		if st.done {
			return AlreadyDone, nil
		}
		return InProgress, nil
	}
	if s.keys == nil {
		s.keys = make(map[string]dedupState)
	}
	s.keys[key] = dedupState{until: now.Add(lease)}
	return Claimed, nil
}

// Complete implements [DedupStore]. It never fails.
func (s *MemoryDedupStore) Complete(_ context.Context, key string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = make(map[string]dedupState)
	}
	s.keys[key] = dedupState{done: true, until: time.Now().Add(ttl)}
	s.order = append(s.order, key)
	return nil
}

// Release implements [DedupStore]. It never fails.
func (s *MemoryDedupStore) Release(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.keys[key]; ok && !st.done {
		delete(s.keys, key)
	}
	return nil
}

// Len returns the number of keys remembered, claimed or done.
func (s *MemoryDedupStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// gc forgets done keys that expired or exceed MaxKeys, oldest first.
func (s *MemoryDedupStore) gc(now time.Time) {
	for s.head < len(s.order) {
		key := s.order[s.head]
		st, ok := s.keys[key]
		over := s.MaxKeys > 0 && len(s.keys) > s.MaxKeys
		if ok && st.done && now.Before(st.until) && !over {
			break
		}
		if ok && st.done && (!now.Before(st.until) || over) {
			delete(s.keys, key)
		}
		s.order[s.head] = ""
		s.head++
	}
	if s.head > 64 && s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}
