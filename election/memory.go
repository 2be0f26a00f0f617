package election

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemoryStore is the in-memory [LeaseStore]: the semantic reference that
// adapters must match, and a real coordination service for electors in
// one process or, served by a [StoreServer], for a cluster. Time is the
// time package's monotonic clock. It owns no goroutine and needs no
// Close. The zero value is not usable; call [NewMemoryStore]. It is safe
// for concurrent use.
type MemoryStore struct {
	mu     sync.Mutex
	epoch  uint64
	leases map[string]*memLease
}

type memLease struct {
	Lease
	expires time.Time
	gone    chan struct{} // closed when released or replaced
}

var _ LeaseStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{leases: map[string]*memLease{}}
}

// liveLocked returns the live lease on key, dropping an expired one.
func (m *MemoryStore) liveLocked(key string, now time.Time) *memLease {
	l := m.leases[key]
	if l != nil && !now.Before(l.expires) {
		delete(m.leases, key)
		close(l.gone)
		return nil
	}
	return l
}

// Acquire implements [LeaseStore].
func (m *MemoryStore) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (Lease, error) {
	if err := checkLeaseArgs(key, holder, 0, ttl, true, false, true); err != nil {
		return Lease{}, err
	}
	if err := ctxErr(ctx, "acquire"); err != nil {
		return Lease{}, err
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.liveLocked(key, now); l != nil {
		if l.Holder != holder {
			return l.Lease, fmt.Errorf("%w: %q holds %q", ErrLeaseHeld, l.Holder, key)
		}
		l.TTL, l.expires = ttl, now.Add(ttl)
		return l.Lease, nil
	}
	m.epoch++
	l := &memLease{Lease: Lease{Key: key, Holder: holder, Epoch: m.epoch, TTL: ttl}, expires: now.Add(ttl), gone: make(chan struct{})}
	m.leases[key] = l
	return l.Lease, nil
}

// Renew implements [LeaseStore].
func (m *MemoryStore) Renew(ctx context.Context, key string, epoch uint64, ttl time.Duration) (Lease, error) {
	if err := checkLeaseArgs(key, "", epoch, ttl, false, true, true); err != nil {
		return Lease{}, err
	}
	if err := ctxErr(ctx, "renew"); err != nil {
		return Lease{}, err
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.liveLocked(key, now)
	if l == nil || l.Epoch != epoch {
		return Lease{}, fmt.Errorf("%w: %q epoch %d", ErrLeaseLost, key, epoch)
	}
	l.TTL, l.expires = ttl, now.Add(ttl)
	return l.Lease, nil
}

// Release implements [LeaseStore].
func (m *MemoryStore) Release(ctx context.Context, key string, epoch uint64) error {
	if err := checkLeaseArgs(key, "", epoch, 0, false, true, false); err != nil {
		return err
	}
	if err := ctxErr(ctx, "release"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.liveLocked(key, time.Now()); l != nil && l.Epoch == epoch {
		delete(m.leases, key)
		close(l.gone)
	}
	return nil
}

// Get implements [LeaseStore].
func (m *MemoryStore) Get(ctx context.Context, key string) (Lease, error) {
	if err := checkLeaseArgs(key, "", 0, 0, false, false, false); err != nil {
		return Lease{}, err
	}
	if err := ctxErr(ctx, "get"); err != nil {
		return Lease{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.liveLocked(key, time.Now()); l != nil {
		return l.Lease, nil
	}
	return Lease{}, fmt.Errorf("%w: %q", ErrNoLease, key)
}

// List implements [LeaseStore].
func (m *MemoryStore) List(ctx context.Context, prefix string) ([]Lease, error) {
	if len(prefix) > MaxIDLen {
		return nil, fmt.Errorf("%w: prefix of %d bytes, at most %d", ErrInvalidLease, len(prefix), MaxIDLen)
	}
	if err := ctxErr(ctx, "list"); err != nil {
		return nil, err
	}
	now := time.Now()
	m.mu.Lock()
	var out []Lease
	for k := range m.leases {
		if strings.HasPrefix(k, prefix) {
			if l := m.liveLocked(k, now); l != nil {
				out = append(out, l.Lease)
			}
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Lease) int { return cmpUint(a.Epoch, b.Epoch) })
	return out, nil
}

// Watch implements [LeaseStore].
func (m *MemoryStore) Watch(ctx context.Context, key string, epoch uint64) error {
	if err := checkLeaseArgs(key, "", epoch, 0, false, true, false); err != nil {
		return err
	}
	for {
		now := time.Now()
		m.mu.Lock()
		l := m.liveLocked(key, now)
		if l == nil || l.Epoch != epoch {
			m.mu.Unlock()
			return nil
		}
		gone, wait := l.gone, l.expires.Sub(now)
		m.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-gone:
			t.Stop()
			return nil
		case <-t.C: // expired, unless renewed meanwhile: look again
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("election: watch: %w", ctx.Err())
		}
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
