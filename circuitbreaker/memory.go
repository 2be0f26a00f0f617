package circuitbreaker

import (
	"context"
	"sync"
)

// MemoryStore is the in-memory reference [Store]: it shares trips among
// breakers in one process, which is what tests and single-process
// deployments need, and defines the semantics other stores must match.
// The zero value is an empty store ready to use; it is safe for concurrent
// use.
type MemoryStore struct {
	mu sync.Mutex
	m  map[string]SharedState
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Load returns the state stored under name, or the zero SharedState if
// there is none. It returns ctx.Err() if ctx is done.
func (m *MemoryStore) Load(ctx context.Context, name string) (SharedState, error) {
	if err := ctx.Err(); err != nil {
		return SharedState{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[name], nil
}

// Publish stores s under name if it is newer than the stored state. It
// returns ctx.Err(), storing nothing, if ctx is done.
func (m *MemoryStore) Publish(ctx context.Context, name string, s SharedState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Newer(m.m[name]) {
		if m.m == nil {
			m.m = make(map[string]SharedState)
		}
		m.m[name] = s
	}
	return nil
}
