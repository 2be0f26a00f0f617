package eventsource

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Projection is a read model fed from the global log that keeps its own
// checkpoint: the position of the last event it has taken into account.
//
// The contract that makes a crash harmless: Apply applies the events and
// records the checkpoint atomically (for a database read model, in one
// transaction), and ignores any event at or before the checkpoint it
// already has. Then a projector that crashes and restarts from
// [Projection.Checkpoint] neither skips nor double-applies an event.
type Projection interface {
	// Checkpoint returns the position of the last event applied (or
	// skipped by the filter), 0 for a fresh projection.
	Checkpoint(ctx context.Context) (uint64, error)
	// Apply applies events, which are in position order, and then sets the
	// checkpoint to checkpoint (at least the last event's position; higher
	// when the events after it up to checkpoint were filtered out), all or
	// nothing. Events at or before the current checkpoint must be ignored.
	// events may be empty. Apply must not keep the slice.
	Apply(ctx context.Context, events []Event, checkpoint uint64) error
}

// ProjectorConfig configures a [Projector]. The zero value is valid.
type ProjectorConfig struct {
	// Filter selects the events handed to the projection. The checkpoint
	// still advances past the events it skips.
	Filter Filter
	// BatchSize is the most events passed to one Projection.Apply. 0 means
	// 256.
	BatchSize int
	// Logger receives progress at debug level. nil discards.
	Logger *slog.Logger
}

// Projector runs a [Projection] over a [Store]'s global log from the
// projection's checkpoint: catch-up, then live. It owns no goroutine:
// [Projector.Run] blocks, and the caller chooses where it runs. Running two
// projectors on one projection is safe (each event is still applied once,
// because Apply ignores what is at or before the checkpoint) but wasteful.
type Projector struct {
	store Store
	proj  Projection
	cfg   ProjectorConfig
	log   *slog.Logger
}

// NewProjector returns a projector feeding p from store. It returns an
// error wrapping [ErrInvalidConfig] for a nil store or projection or a
// negative batch size.
func NewProjector(store Store, p Projection, cfg ProjectorConfig) (*Projector, error) {
	switch {
	case store == nil:
		return nil, fmt.Errorf("%w: nil store", ErrInvalidConfig)
	case p == nil:
		return nil, fmt.Errorf("%w: nil projection", ErrInvalidConfig)
	case cfg.BatchSize < 0:
		return nil, fmt.Errorf("%w: ProjectorConfig.BatchSize is negative", ErrInvalidConfig)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 256
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Projector{store: store, proj: p, cfg: cfg, log: log}, nil
}

// Run feeds the projection until ctx is done, when it returns an error
// wrapping ctx.Err(). It returns earlier with the error of the store or of
// Projection.Apply; the checkpoint then marks what was applied, so calling
// Run again resumes there.
func (p *Projector) Run(ctx context.Context) error {
	cp, err := p.proj.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("eventsource: projector: %w", err)
	}
	for {
		head, err := p.store.Head(ctx)
		if err != nil {
			return fmt.Errorf("eventsource: projector: %w", err)
		}
		if head > cp {
			if cp, err = p.advance(ctx, cp, head); err != nil {
				return err
			}
		}
		if _, err := p.store.Wait(ctx, cp); err != nil {
			return fmt.Errorf("eventsource: projector: %w", err)
		}
	}
}

// CatchUp feeds the projection up to the head of the log as it is when
// CatchUp is called, and returns the checkpoint reached. It is what a test
// or a rebuild wants instead of [Projector.Run].
func (p *Projector) CatchUp(ctx context.Context) (uint64, error) {
	cp, err := p.proj.Checkpoint(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventsource: projector: %w", err)
	}
	head, err := p.store.Head(ctx)
	if err != nil {
		return cp, fmt.Errorf("eventsource: projector: %w", err)
	}
	if head <= cp {
		return cp, nil
	}
	return p.advance(ctx, cp, head)
}

// advance applies the events after cp up to target and returns target.
func (p *Projector) advance(ctx context.Context, cp, target uint64) (uint64, error) {
	batch := make([]Event, 0, p.cfg.BatchSize)
	flush := func(to uint64) error {
		if err := p.proj.Apply(ctx, batch, to); err != nil {
			return fmt.Errorf("eventsource: projector: apply events after position %d: %w", cp, err)
		}
		p.log.Debug("eventsource: projection advanced", "from", cp, "to", to, "events", len(batch))
		cp = to
		clear(batch) // drop references to the applied events' payloads
		batch = batch[:0]
		return nil
	}
	for ev, err := range p.store.ReadAll(ctx, cp+1, p.cfg.Filter) {
		if err != nil {
			return cp, fmt.Errorf("eventsource: projector: %w", err)
		}
		if ev.Position > target {
			break
		}
		batch = append(batch, ev)
		if len(batch) == p.cfg.BatchSize {
			if err := flush(ev.Position); err != nil {
				return cp, err
			}
		}
	}
	if target > cp {
		if err := flush(target); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

// Rebuild builds a fresh projection from the start of the log up to its
// current head, for example a new version of a read model that will
// replace the old one once built, while the old one keeps serving. It
// returns [ErrProjectionNotEmpty] if fresh has a non-zero checkpoint, and
// otherwise the checkpoint reached; keep it current afterwards with a
// [Projector]'s Run.
func Rebuild(ctx context.Context, store Store, fresh Projection, cfg ProjectorConfig) (uint64, error) {
	p, err := NewProjector(store, fresh, cfg)
	if err != nil {
		return 0, err
	}
	cp, err := fresh.Checkpoint(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventsource: rebuild: %w", err)
	}
	if cp != 0 {
		return cp, fmt.Errorf("%w: checkpoint %d", ErrProjectionNotEmpty, cp)
	}
	return p.CatchUp(ctx)
}

var _ Projection = (*MemoryProjection[int])(nil)

// MemoryProjection is an in-memory read model of type S whose state and
// checkpoint change together under one lock, so a reader never sees one
// without the other and an event is never applied twice.
//
// It is safe for concurrent use. The apply function and the function given
// to [MemoryProjection.Read] run while the projection's lock is held (this
// is what makes an update atomic with its checkpoint), so they must not
// block or call back into the projection.
type MemoryProjection[S any] struct {
	mu         sync.RWMutex
	state      S
	checkpoint uint64
	apply      func(state *S, ev Event) error
	advanced   chan struct{} // closed and cleared when the checkpoint moves; nil when no one waits
}

// NewMemoryProjection returns a projection starting from initial with
// checkpoint 0. apply updates the state with one event; when it returns an
// error it must leave the state as it found it.
func NewMemoryProjection[S any](initial S, apply func(state *S, ev Event) error) *MemoryProjection[S] {
	return &MemoryProjection[S]{state: initial, apply: apply}
}

// Checkpoint implements [Projection.Checkpoint].
func (m *MemoryProjection[S]) Checkpoint(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.checkpoint, nil
}

// Apply implements [Projection.Apply]. When apply fails on an event, the
// events before it stay applied, the checkpoint is the last of them, and
// the error names the failed event's position. A projection made with a
// nil apply function returns an error wrapping [ErrInvalidConfig].
func (m *MemoryProjection[S]) Apply(ctx context.Context, events []Event, checkpoint uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.apply == nil {
		return fmt.Errorf("%w: memory projection has no apply function", ErrInvalidConfig)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.notify()
	for _, ev := range events {
		if ev.Position <= m.checkpoint {
			continue
		}
		if err := m.apply(&m.state, ev); err != nil {
			return fmt.Errorf("eventsource: projection: event %d (%s in %q): %w", ev.Position, ev.Type, ev.StreamID, err)
		}
		m.checkpoint = ev.Position
	}
	m.checkpoint = max(m.checkpoint, checkpoint)
	return nil
}

// notify wakes WaitFor callers after an Apply. Caller holds mu.
func (m *MemoryProjection[S]) notify() {
	if m.advanced != nil {
		close(m.advanced)
		m.advanced = nil
	}
}

// WaitFor blocks until the checkpoint is at least position, then returns
// it: a reader holding the position of a write (a consistency token) waits
// here to read its own write. On cancellation it returns the checkpoint and
// an error wrapping ctx.Err().
func (m *MemoryProjection[S]) WaitFor(ctx context.Context, position uint64) (uint64, error) {
	for {
		m.mu.Lock()
		cp := m.checkpoint
		if cp >= position {
			m.mu.Unlock()
			return cp, nil
		}
		if m.advanced == nil {
			m.advanced = make(chan struct{})
		}
		ch := m.advanced
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return cp, fmt.Errorf("eventsource: wait for projection to reach position %d (at %d): %w", position, cp, ctx.Err())
		}
	}
}

// Read calls fn with the current state and the checkpoint it reflects,
// under the read lock. fn must not keep references into the state that it
// reads after returning, nor modify it.
func (m *MemoryProjection[S]) Read(fn func(state S, checkpoint uint64)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(m.state, m.checkpoint)
}
