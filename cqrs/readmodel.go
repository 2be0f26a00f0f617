package cqrs

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/eventsource"
)

type replayKey struct{}

// Replaying reports whether ctx belongs to a replay: the building of a
// [ReadModel.Rebuild] shadow copy or of a [Reconciler]'s scratch copy. A
// projection whose Apply has side effects (emails, cache invalidation,
// pushes to clients) skips them when Replaying(ctx) is true, so that
// rebuilding a read model does not repeat them.
func Replaying(ctx context.Context) bool {
	v, _ := ctx.Value(replayKey{}).(bool)
	return v
}

func replaying(ctx context.Context) context.Context { return context.WithValue(ctx, replayKey{}, true) }

// ReadModelConfig configures a [ReadModel]. Name is required, and New is
// required for [ReadModel.Rebuild] and [Reconciler].
type ReadModelConfig[P eventsource.Projection] struct {
	// Name names the read model in errors, logs and reports.
	Name string

	// New returns a fresh, empty copy of the projection (checkpoint 0):
	// the shadow a rebuild fills, or a reconciler's scratch copy. For a
	// database read model it creates new tables; [ReadModel.Rebuild]
	// returns the copy it replaced, for the caller to drop.
	New func() P

	// Filter selects the events the read model is fed. The checkpoint
	// still advances past the others.
	Filter eventsource.Filter

	// BatchSize is the most events passed to one Projection.Apply. 0 means
	// 256; negative is invalid.
	BatchSize int

	// SideEffects, when set, is called after each batch of events is
	// applied to the serving copy, with the events newly applied, and
	// never for a rebuild's shadow or a reconciler's scratch copy (nor for
	// any Apply whose context is [Replaying]). It runs on the feeding
	// goroutine, outside the read model's lock, and may block, which holds
	// back the feed. It is called at most once per event: an error is
	// logged and counted, not retried, and a crash between the apply and
	// the call loses the call. Effects that must not be lost belong in a
	// projection of their own with its own checkpoint.
	SideEffects func(ctx context.Context, events []eventsource.Event) error

	// PollInterval, when positive, makes waits for a token
	// ([ReadModel.WaitFor]) also poll the serving projection's checkpoint
	// at this interval: for a durable read model that another process
	// feeds, so this process's queries can wait for it. 0 means waits
	// rely on this process's own feeding only. Negative is invalid.
	PollInterval time.Duration

	// Logger receives rebuilds at info level, progress at debug level and
	// side-effect failures at warn level. nil discards.
	Logger *slog.Logger
}

// ReadModel is one read model of the query side: a projection of the
// event log (any [eventsource.Projection], such as
// [eventsource.MemoryProjection] or [Table]) that it keeps fed from the
// log, that queries read, and that it can rebuild without downtime.
//
// It is itself an [eventsource.Projection] whose checkpoint is the
// serving copy's, so it can be fed by [ReadModel.Run], by any
// [eventsource.Projector], or from pubsub ([ReadModel.Handle]). It applies
// each event once: whatever repeats (a redelivered message, a projector
// resumed from an old checkpoint) is dropped before the projection sees
// it, so even a projection that would apply a batch twice never does.
//
// Reads go to [ReadModel.Current]; a reader with a consistency token first
// calls [ReadModel.WaitFor] (a [QueryBus] does this for it).
// [ReadModel.Rebuild] replays the log into a shadow copy while the current
// one keeps serving and being fed, then swaps: readers see the old copy or
// the complete new one, never a partial one.
//
// A ReadModel is safe for concurrent use. It calls the projection's Apply
// while holding its feed lock, so Apply must not call back into the
// ReadModel. It owns no goroutines.
type ReadModel[P eventsource.Projection] struct {
	store eventsource.Store
	cfg   ReadModelConfig[P]
	log   *slog.Logger

	feed   sync.Mutex        // serialises Apply, the swap of a rebuild, and a reconciler's repair
	active atomic.Pointer[P] // the serving copy
	cp     atomic.Uint64     // the serving copy's checkpoint; moves only forward

	waitMu   sync.Mutex
	advanced chan struct{} // closed when cp moves; nil when no one waits

	rebuilding atomic.Bool

	events, batches, rebuilds, effectErrors atomic.Uint64
}

var _ eventsource.Projection = (*ReadModel[eventsource.Projection])(nil)

// NewReadModel returns a read model serving active (a fresh projection, or
// one that already holds state and a checkpoint, to resume after a
// restart), fed from store. It reads active's checkpoint. It returns an
// error wrapping [ErrInvalidConfig] for a nil store or projection, an
// empty Name, or a negative BatchSize or PollInterval, and the
// projection's error if its checkpoint cannot be read.
func NewReadModel[P eventsource.Projection](ctx context.Context, store eventsource.Store, active P, cfg ReadModelConfig[P]) (*ReadModel[P], error) {
	switch {
	case store == nil:
		return nil, fmt.Errorf("%w: nil store", ErrInvalidConfig)
	case isNil(active):
		return nil, fmt.Errorf("%w: nil projection", ErrInvalidConfig)
	case cfg.Name == "":
		return nil, fmt.Errorf("%w: ReadModelConfig.Name is empty", ErrInvalidConfig)
	case cfg.BatchSize < 0:
		return nil, fmt.Errorf("%w: ReadModelConfig.BatchSize is negative", ErrInvalidConfig)
	case cfg.PollInterval < 0:
		return nil, fmt.Errorf("%w: ReadModelConfig.PollInterval is negative", ErrInvalidConfig)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 256
	}
	cp, err := active.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("cqrs: read model %q: %w", cfg.Name, err)
	}
	m := &ReadModel[P]{store: store, cfg: cfg, log: cfg.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.active.Store(&active)
	m.cp.Store(cp)
	return m, nil
}

// Name returns the read model's name.
func (m *ReadModel[P]) Name() string { return m.cfg.Name }

// Current returns the copy of the projection that serves reads now. After
// a rebuild it is a different copy; callers should not hold on to it.
func (m *ReadModel[P]) Current() P { return *m.active.Load() }

// Checkpoint implements [eventsource.Projection]: the position of the last
// event the serving copy has taken into account. It never fails and never
// decreases.
func (m *ReadModel[P]) Checkpoint(context.Context) (uint64, error) { return m.cp.Load(), nil }

// Apply implements [eventsource.Projection]: it passes the events after
// its checkpoint to the serving copy, then runs
// [ReadModelConfig.SideEffects] for them. It drops events at or before its
// checkpoint, and a batch whose checkpoint is not past it, so repeats never
// reach the projection. When the projection fails, the checkpoint is
// re-read from it and the projection's error returned.
func (m *ReadModel[P]) Apply(ctx context.Context, events []eventsource.Event, checkpoint uint64) error {
	m.feed.Lock()
	cur := m.cp.Load()
	if checkpoint <= cur {
		m.feed.Unlock()
		return nil
	}
	i := 0
	for i < len(events) && events[i].Position <= cur {
		i++
	}
	fresh := events[i:]
	p := *m.active.Load()
	if err := p.Apply(ctx, fresh, checkpoint); err != nil {
		if cp, cerr := p.Checkpoint(ctx); cerr == nil {
			m.raise(cp)
		}
		m.feed.Unlock()
		return fmt.Errorf("cqrs: read model %q: %w", m.cfg.Name, err)
	}
	m.raise(checkpoint)
	m.feed.Unlock()
	m.events.Add(uint64(len(fresh)))
	m.batches.Add(1)
	if m.cfg.SideEffects != nil && len(fresh) > 0 && !Replaying(ctx) {
		if err := m.cfg.SideEffects(ctx, fresh); err != nil {
			m.effectErrors.Add(1)
			m.log.Warn("cqrs: side effects failed", "read_model", m.cfg.Name,
				"from", fresh[0].Position, "to", fresh[len(fresh)-1].Position, "err", err)
		}
	}
	return nil
}

// raise moves the checkpoint forward to cp, if that is forward, and wakes
// the waiters.
func (m *ReadModel[P]) raise(cp uint64) {
	for {
		cur := m.cp.Load()
		if cp <= cur {
			return
		}
		if m.cp.CompareAndSwap(cur, cp) {
			break
		}
	}
	m.waitMu.Lock()
	if m.advanced != nil {
		close(m.advanced)
		m.advanced = nil
	}
	m.waitMu.Unlock()
}

// Run feeds the read model from the event log, from its checkpoint:
// catch-up, then live, until ctx ends, when it returns an error wrapping
// ctx.Err(). It returns earlier with the store's or the projection's
// error; calling Run again resumes from the checkpoint. It uses an
// [eventsource.Projector] with the configured Filter and BatchSize. Run
// blocks; the caller picks the goroutine. Running it twice at once is
// safe but wasteful.
func (m *ReadModel[P]) Run(ctx context.Context) error {
	p, err := eventsource.NewProjector(m.store, m, eventsource.ProjectorConfig{
		Filter: m.cfg.Filter, BatchSize: m.cfg.BatchSize, Logger: m.cfg.Logger,
	})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// WaitFor blocks until the read model has applied the log up to tok, and
// returns nil at once when it already has (one atomic load): after it,
// reads of [ReadModel.Current] reflect every event at or before tok.
//
// When ctx ends first it returns a [*NotConsistentError] (errors.Is
// [ErrNotConsistent] and ctx.Err()). When the model is behind, it first
// asks the store for its head, and returns an error wrapping
// [ErrInvalidToken] if tok is past it: no wait could succeed.
func (m *ReadModel[P]) WaitFor(ctx context.Context, tok Token) error {
	if uint64(tok) <= m.cp.Load() {
		return nil
	}
	var poll <-chan time.Time
	if m.cfg.PollInterval > 0 {
		t := time.NewTicker(m.cfg.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	checked := false
	for {
		m.waitMu.Lock()
		if uint64(tok) <= m.cp.Load() {
			m.waitMu.Unlock()
			return nil
		}
		if m.advanced == nil {
			m.advanced = make(chan struct{})
		}
		ch := m.advanced
		m.waitMu.Unlock()
		if !checked {
			checked = true
			if head, err := m.store.Head(ctx); err == nil && head < uint64(tok) {
				return fmt.Errorf("%w: token %d is past the end of the log (position %d) of read model %q",
					ErrInvalidToken, tok, head, m.cfg.Name)
			}
			continue // the head check took time: look again before sleeping
		}
		select {
		case <-ch:
		case <-poll:
			if cp, err := m.Current().Checkpoint(ctx); err == nil {
				m.raise(cp)
			}
		case <-ctx.Done():
			return &NotConsistentError{Model: m.cfg.Name, Token: tok, Checkpoint: m.cp.Load(), Err: ctx.Err()}
		}
	}
}

// Rebuild replays the event log into a fresh shadow copy made by
// [ReadModelConfig.New], while the current copy keeps serving queries and
// being fed. When the shadow has caught up with the current copy, Rebuild
// swaps them, atomically for readers, and returns the copy it replaced.
// Queries see the old copy or the complete new one, never a partial one,
// and the checkpoint never moves back. Use it after changing a read
// model's code or schema, or to repair one.
//
// The shadow is built with a [Replaying] context and its events trigger
// no [ReadModelConfig.SideEffects]; the events the serving copy applies
// meanwhile do, as always. Most of the replay runs without the feed
// lock; only the last stretch (what the serving copy applied during the
// previous round) is replayed under it, briefly holding back the feed.
//
// It returns an error wrapping [ErrInvalidConfig] when New is nil,
// [ErrRebuildInProgress] when another rebuild runs,
// [eventsource.ErrProjectionNotEmpty] when New returns a copy with a
// checkpoint, or the store's or projection's error; on any error the
// current copy keeps serving, unchanged.
func (m *ReadModel[P]) Rebuild(ctx context.Context) (old P, err error) {
	if m.cfg.New == nil {
		return old, fmt.Errorf("%w: read model %q: ReadModelConfig.New is nil", ErrInvalidConfig, m.cfg.Name)
	}
	if !m.rebuilding.CompareAndSwap(false, true) {
		return old, fmt.Errorf("%w: read model %q", ErrRebuildInProgress, m.cfg.Name)
	}
	defer m.rebuilding.Store(false)
	start := time.Now()
	rctx := replaying(ctx)
	shadow := m.cfg.New()
	if isNil(shadow) {
		return old, fmt.Errorf("%w: read model %q: ReadModelConfig.New returned nil", ErrInvalidConfig, m.cfg.Name)
	}
	scp, err := shadow.Checkpoint(rctx)
	if err != nil {
		return old, fmt.Errorf("cqrs: rebuild %q: %w", m.cfg.Name, err)
	}
	if scp != 0 {
		return old, fmt.Errorf("cqrs: rebuild %q: %w: checkpoint %d", m.cfg.Name, eventsource.ErrProjectionNotEmpty, scp)
	}
	// Chase the serving copy without the lock until the gap is small.
	for range 8 {
		target := m.cp.Load()
		if target-scp <= uint64(m.cfg.BatchSize) {
			break
		}
		if scp, err = m.catchUp(rctx, shadow, scp, target); err != nil {
			return old, fmt.Errorf("cqrs: rebuild %q: %w", m.cfg.Name, err)
		}
	}
	m.feed.Lock()
	defer m.feed.Unlock()
	// The serving copy cannot move now: bring the shadow exactly level
	// with it (never past it, so no event misses its live side effects).
	if scp, err = m.catchUp(rctx, shadow, scp, m.cp.Load()); err != nil {
		return old, fmt.Errorf("cqrs: rebuild %q: %w", m.cfg.Name, err)
	}
	old = *m.active.Load()
	m.active.Store(&shadow)
	m.rebuilds.Add(1)
	m.log.Info("cqrs: read model rebuilt and swapped", "read_model", m.cfg.Name,
		"checkpoint", scp, "duration", time.Since(start))
	return old, nil
}

// catchUp applies to p the events of the log after from up to target, in
// batches, and returns target.
func (m *ReadModel[P]) catchUp(ctx context.Context, p P, from, target uint64) (uint64, error) {
	if target <= from {
		return from, nil
	}
	batch := make([]eventsource.Event, 0, min(m.cfg.BatchSize, int(min(target-from, 1<<16))))
	for ev, err := range m.store.ReadAll(ctx, from+1, m.cfg.Filter) {
		if err != nil {
			return from, err
		}
		if ev.Position > target {
			break
		}
		batch = append(batch, ev)
		if len(batch) == m.cfg.BatchSize {
			if err := p.Apply(ctx, batch, ev.Position); err != nil {
				return from, err
			}
			from = ev.Position
			clear(batch)
			batch = batch[:0]
		}
	}
	if err := p.Apply(ctx, batch, target); err != nil {
		return from, err
	}
	return target, nil
}

// ReadModelStats are a read model's counters since it was created.
type ReadModelStats struct {
	// Checkpoint is the serving copy's checkpoint.
	Checkpoint uint64
	// Events and Batches count what was applied to serving copies
	// (repeats dropped by the read model are not counted).
	Events, Batches uint64
	// Rebuilds counts completed rebuilds.
	Rebuilds uint64
	// SideEffectErrors counts failed [ReadModelConfig.SideEffects] calls.
	SideEffectErrors uint64
}

// Stats returns the read model's counters.
func (m *ReadModel[P]) Stats() ReadModelStats {
	return ReadModelStats{
		Checkpoint:       m.cp.Load(),
		Events:           m.events.Load(),
		Batches:          m.batches.Load(),
		Rebuilds:         m.rebuilds.Load(),
		SideEffectErrors: m.effectErrors.Load(),
	}
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}
