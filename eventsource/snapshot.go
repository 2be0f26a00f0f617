package eventsource

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Snapshot is a checkpoint of an aggregate's state at a stream version, so
// loading it replays only the events after that version. A [Repository]
// takes and uses snapshots; a snapshot that does not match what the
// repository expects is discarded and the stream replayed, never a failed
// load.
type Snapshot struct {
	// StreamID is the stream the state was built from.
	StreamID string
	// AggregateType is the [RepositoryConfig.Type] that wrote it.
	AggregateType string
	// Version is the stream version the state reflects.
	Version uint64
	// SchemaVersion is the version of the encoded state's schema
	// ([RepositoryConfig.SnapshotSchemaVersion]).
	SchemaVersion int
	// Time is the commit time of the event at Version, so time-travel loads
	// can tell whether the snapshot predates the instant they ask for.
	Time time.Time
	// Data is the encoded state.
	Data []byte
}

// SnapshotStore keeps the latest snapshot of each stream. Implementations
// are safe for concurrent use, honour ctx, and must pass
// eventsourcetest.RunSnapshotStore.
type SnapshotStore interface {
	// SaveSnapshot stores s as its stream's snapshot, replacing any
	// previous one. (Last writer wins: racing writers may leave an older
	// snapshot, which is still correct, only less useful; and a corrupt
	// snapshot can always be replaced.)
	SaveSnapshot(ctx context.Context, s Snapshot) error
	// LoadSnapshot returns the stream's snapshot, or [ErrSnapshotNotFound].
	LoadSnapshot(ctx context.Context, streamID string) (Snapshot, error)
}

var _ SnapshotStore = (*MemorySnapshotStore)(nil)

// MemorySnapshotStore is the in-memory [SnapshotStore]. It copies
// snapshots on save and load. The zero value is ready to use; it is safe
// for concurrent use.
type MemorySnapshotStore struct {
	mu        sync.Mutex
	snapshots map[string]Snapshot
}

// NewMemorySnapshotStore returns an empty snapshot store.
func NewMemorySnapshotStore() *MemorySnapshotStore { return new(MemorySnapshotStore) }

// SaveSnapshot implements [SnapshotStore.SaveSnapshot].
func (m *MemorySnapshotStore) SaveSnapshot(ctx context.Context, s Snapshot) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("eventsource: save snapshot of %q: %w", s.StreamID, err)
	}
	s.Data = append([]byte(nil), s.Data...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snapshots == nil {
		m.snapshots = make(map[string]Snapshot)
	}
	m.snapshots[s.StreamID] = s
	return nil
}

// LoadSnapshot implements [SnapshotStore.LoadSnapshot].
func (m *MemorySnapshotStore) LoadSnapshot(ctx context.Context, streamID string) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, fmt.Errorf("eventsource: load snapshot of %q: %w", streamID, err)
	}
	m.mu.Lock()
	s, ok := m.snapshots[streamID]
	m.mu.Unlock()
	if !ok {
		return Snapshot{}, fmt.Errorf("%w: stream %q", ErrSnapshotNotFound, streamID)
	}
	s.Data = append([]byte(nil), s.Data...)
	return s, nil
}
