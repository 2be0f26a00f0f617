package election

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// TermState is what a Raft or Bully node must remember across restarts:
// the highest term it has seen and, for Raft, whom it voted for in it.
// Without it a restarted node could vote twice in one term (two Raft
// leaders in a term) or reuse a Bully token.
type TermState struct {
	Term uint64 `json:"term"`
	Vote string `json:"vote,omitempty"`
}

// TermStore persists a [TermState]. Save must be durable before it
// returns; the electors call it before they answer a vote or announce a
// term.
type TermStore interface {
	// Load returns the saved state, or the zero TermState if none was
	// saved yet.
	Load() (TermState, error)
	// Save stores s durably, replacing the previous state.
	Save(s TermState) error
}

// MemoryTermStore keeps the state in memory: it survives a restart of
// the elector in the same process (a new elector given the same store),
// not of the process. The zero value is ready to use and safe for
// concurrent use.
type MemoryTermStore struct {
	mu sync.Mutex
	s  TermState
}

var (
	_ TermStore = (*MemoryTermStore)(nil)
	_ TermStore = (*FileTermStore)(nil)
)

// Load returns the saved state.
func (m *MemoryTermStore) Load() (TermState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s, nil
}

// Save replaces the saved state.
func (m *MemoryTermStore) Save(s TermState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = s
	return nil
}

// FileTermStore keeps the state in a small JSON file, written to a
// temporary file, synced and renamed over the old one, so a crash leaves
// either the old or the new state. It is safe for concurrent use within
// one process; two processes must not share a file.
type FileTermStore struct {
	Path string
	mu   sync.Mutex
}

// Load returns the saved state, or the zero state if the file does not
// exist.
func (f *FileTermStore) Load() (TermState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s TermState
	b, err := os.ReadFile(f.Path)
	if os.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("election: term store: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("election: term store %s: %w", f.Path, err)
	}
	return s, nil
}

// Save writes s durably.
func (f *FileTermStore) Save(s TermState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(s)
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".term-*")
	if err != nil {
		return fmt.Errorf("election: term store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("election: term store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("election: term store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("election: term store: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("election: term store: %w", err)
	}
	return nil
}
