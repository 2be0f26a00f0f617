package saga

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// MemoryStore is the in-memory reference [Store]. Its behaviour is the
// contract: every other store must pass the conformance suite in package
// sagatest, which checks it.
//
// Appends are linearizable (one mutex orders them) and copy their records;
// reads return copies. It keeps every saga for its lifetime and loses them
// all when the process exits, so it suits tests, examples and sagas that
// need not survive a crash of the process (they still survive a crash of
// the coordinator, which is what tests of recovery need). Use
// [MemoryStore.Delete] to drop finished sagas.
//
// The zero value is an empty store ready to use. A MemoryStore is safe for
// concurrent use.
type MemoryStore struct {
	mu    sync.RWMutex
	sagas map[string]*memSaga
}

type memSaga struct {
	records []Record
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store. It is equivalent to
// new(MemoryStore).
func NewMemoryStore() *MemoryStore { return new(MemoryStore) }

// Append implements [Store.Append].
func (m *MemoryStore) Append(ctx context.Context, sagaID string, expected uint64, records ...Record) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saga: append to %q: %w", sagaID, err)
	}
	if sagaID == "" {
		return 0, fmt.Errorf("%w: empty saga ID", ErrInvalidAppend)
	}
	if len(records) == 0 {
		return 0, fmt.Errorf("%w: no records for saga %q", ErrInvalidAppend, sagaID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sagas[sagaID]
	var actual uint64
	if s != nil {
		actual = uint64(len(s.records))
	}
	if actual != expected {
		return 0, &ConflictError{SagaID: sagaID, Expected: expected, Actual: actual}
	}
	if s == nil {
		if m.sagas == nil {
			m.sagas = make(map[string]*memSaga)
		}
		s = &memSaga{records: make([]Record, 0, 8)}
		m.sagas[sagaID] = s
	}
	for i, r := range records {
		r.Version = expected + uint64(i) + 1
		r.Data = slices.Clone(r.Data)
		s.records = append(s.records, r)
	}
	return uint64(len(s.records)), nil
}

// Load implements [Store.Load].
func (m *MemoryStore) Load(ctx context.Context, sagaID string) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saga: load %q: %w", sagaID, err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := m.sagas[sagaID]
	if s == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, sagaID)
	}
	out := make([]Record, len(s.records))
	for i, r := range s.records {
		r.Data = slices.Clone(r.Data)
		out[i] = r
	}
	return out, nil
}

// List implements [Store.List].
func (m *MemoryStore) List(ctx context.Context, q Query) ([]Summary, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	m.mu.RLock()
	var out []Summary
	for id, s := range m.sagas {
		sum := summarize(id, s.records)
		if id > q.After && q.matches(sum.State) {
			out = append(out, sum)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.ID, b.ID) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Delete forgets a saga's log, typically one that has finished. It
// reports whether there was one. Deleting an unfinished saga loses it.
func (m *MemoryStore) Delete(sagaID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.sagas[sagaID]
	delete(m.sagas, sagaID)
	return ok
}

// Len returns the number of sagas the store holds.
func (m *MemoryStore) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.sagas)
}

func summarize(id string, recs []Record) Summary {
	first, last := recs[0], recs[len(recs)-1]
	return Summary{ID: id, Name: first.Saga, State: last.State, Version: last.Version, Created: first.Time, Updated: last.Time}
}

func (q Query) matches(s State) bool { return len(q.States) == 0 || slices.Contains(q.States, s) }
