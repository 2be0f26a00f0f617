package eventsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"
)

// Aggregate is the state of an event-sourced entity, rebuilt by applying
// its events in order. Apply receives decoded event values (the Go types
// given to [Register], never pointers to them) and must be deterministic:
// it runs on every load. An error from Apply fails the load.
//
// The state type is usually a pointer to a struct. To use snapshots, the
// state must survive a round trip through the snapshot codec (with [JSON],
// keep the fields that matter exported).
type Aggregate interface {
	Apply(event any) error
}

// RepositoryConfig configures a [Repository]. Only Type is required.
type RepositoryConfig[S Aggregate] struct {
	// Type names the aggregate type. It is the category of its streams
	// ("<Type>-<id>"), so it must not be empty or contain '-'. It is
	// recorded in snapshots.
	Type string

	// New returns an empty state. nil means a pointer to a new zero value
	// of S's element type, which requires S to be a pointer type.
	New func() S

	// Snapshots stores snapshots. nil disables them.
	Snapshots SnapshotStore
	// SnapshotEvery is the snapshot policy: after a load or a command, a
	// snapshot is saved when at least this many events were applied since
	// the snapshot the state was loaded from (or since the start). 0 means
	// 100.
	SnapshotEvery uint64
	// SnapshotSchemaVersion is the version of the state's encoded form.
	// Raise it whenever the state's shape changes: older snapshots are
	// then discarded and rebuilt from the events. 0 means 1.
	SnapshotSchemaVersion int
	// SnapshotCodec encodes the state. nil means the registry's codec.
	SnapshotCodec Codec

	// ConflictRetries is how many times [Repository.Execute] reloads the
	// aggregate and runs the command again after a concurrency conflict.
	// 0 means no retry: the conflict is returned. Negative is invalid.
	ConflictRetries int

	// Logger receives discarded-snapshot warnings and retry notices. nil
	// discards them.
	Logger *slog.Logger
}

// Repository loads and saves aggregates of one type: a load replays the
// aggregate's stream (from its latest snapshot, if any) through a
// [Registry] into a state value S; a command runs against that state and
// the events it returns are appended with the loaded version as the
// expected version, so concurrent commands on one aggregate cannot both
// succeed.
//
// A Repository is safe for concurrent use.
type Repository[S Aggregate] struct {
	store Store
	reg   *Registry
	cfg   RepositoryConfig[S]
	codec Codec
	log   *slog.Logger
}

// NewRepository returns a repository for aggregates of type S kept in store
// and encoded with reg. It validates reg (see [Registry.Validate]) and
// returns its error, or an error wrapping [ErrInvalidConfig] naming the bad
// field.
func NewRepository[S Aggregate](store Store, reg *Registry, cfg RepositoryConfig[S]) (*Repository[S], error) {
	switch {
	case store == nil:
		return nil, fmt.Errorf("%w: nil store", ErrInvalidConfig)
	case reg == nil:
		return nil, fmt.Errorf("%w: nil registry", ErrInvalidConfig)
	case cfg.Type == "" || strings.Contains(cfg.Type, "-"):
		return nil, fmt.Errorf("%w: RepositoryConfig.Type %q must be non-empty and contain no '-'", ErrInvalidConfig, cfg.Type)
	case cfg.ConflictRetries < 0:
		return nil, fmt.Errorf("%w: RepositoryConfig.ConflictRetries is negative", ErrInvalidConfig)
	case cfg.SnapshotSchemaVersion < 0:
		return nil, fmt.Errorf("%w: RepositoryConfig.SnapshotSchemaVersion is negative", ErrInvalidConfig)
	}
	if err := reg.Validate(); err != nil {
		return nil, err
	}
	if cfg.New == nil {
		t := reflect.TypeFor[S]()
		if t.Kind() != reflect.Pointer {
			return nil, fmt.Errorf("%w: RepositoryConfig.New is nil and %s is not a pointer type", ErrInvalidConfig, t)
		}
		elem := t.Elem()
		cfg.New = func() S { return reflect.New(elem).Interface().(S) }
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 100
	}
	cfg.SnapshotSchemaVersion = max(cfg.SnapshotSchemaVersion, 1)
	r := &Repository[S]{store: store, reg: reg, cfg: cfg, codec: cfg.SnapshotCodec, log: cfg.Logger}
	if r.codec == nil {
		r.codec = reg.Codec()
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// StreamID returns the stream that holds aggregate id: "<Type>-<id>".
func (r *Repository[S]) StreamID(id string) string { return r.cfg.Type + "-" + id }

// Result is the outcome of [Repository.Execute].
type Result[S Aggregate] struct {
	// State is the aggregate after the command's events were applied.
	State S
	// Version is the stream version after the command.
	Version uint64
	// Position is the global position of the command's last event, the
	// token a reader can wait for to see this write; 0 when the command
	// produced no events.
	Position uint64
	// Events are the events stored, with their versions and positions.
	Events []Event
	// Attempts is how many times the command ran (more than 1 after
	// conflict retries).
	Attempts int
}

// loaded is a state with the bookkeeping the snapshot policy needs.
type loaded[S Aggregate] struct {
	state    S
	version  uint64
	time     time.Time // commit time of the event at version
	snapshot uint64    // version of the snapshot used, 0 if none
}

// Load returns aggregate id's current state and version. An aggregate with
// no events has version 0 and the state from [RepositoryConfig.New]; that is
// not an error. It returns the store's error, or a decode or Apply error
// naming the stream and version. A snapshot that cannot be used is logged
// and ignored.
func (r *Repository[S]) Load(ctx context.Context, id string) (S, uint64, error) {
	l, err := r.load(ctx, id, StreamQuery{})
	if err != nil {
		var zero S
		return zero, 0, err
	}
	r.maybeSnapshot(ctx, id, l)
	return l.state, l.version, nil
}

// LoadVersion returns aggregate id's state as of stream version v (or its
// current state if the stream is shorter): time travel by version. It uses a
// snapshot only if it predates v, and saves none.
func (r *Repository[S]) LoadVersion(ctx context.Context, id string, v uint64) (S, uint64, error) {
	if v == 0 {
		return r.cfg.New(), 0, nil
	}
	l, err := r.load(ctx, id, StreamQuery{To: v})
	if err != nil {
		var zero S
		return zero, 0, err
	}
	return l.state, l.version, nil
}

// LoadAsOf returns aggregate id's state as it was at instant t, built from
// the events committed at or before t, and the version that state has:
// time travel by time. It uses a snapshot only if it predates t, and saves
// none.
func (r *Repository[S]) LoadAsOf(ctx context.Context, id string, t time.Time) (S, uint64, error) {
	if t.IsZero() {
		return r.cfg.New(), 0, nil
	}
	l, err := r.load(ctx, id, StreamQuery{AsOf: t})
	if err != nil {
		var zero S
		return zero, 0, err
	}
	return l.state, l.version, nil
}

func (r *Repository[S]) load(ctx context.Context, id string, q StreamQuery) (loaded[S], error) {
	streamID := r.StreamID(id)
	if r.cfg.Snapshots != nil {
		l, ok, err := r.fromSnapshot(ctx, streamID, q)
		if err != nil {
			return l, err
		}
		if ok {
			l, valid, err := r.replay(ctx, streamID, q, l)
			if err != nil || valid {
				return l, err
			}
			r.log.Warn("eventsource: discarding snapshot whose version is not in its stream; replaying",
				"stream", streamID, "snapshot_version", l.snapshot)
		}
	}
	l, _, err := r.replay(ctx, streamID, q, loaded[S]{state: r.cfg.New()})
	return l, err
}

// fromSnapshot returns the state from the stream's snapshot when there is
// one that fits the repository and the query. Unusable snapshots are logged
// and reported as absent; only a cancelled ctx is an error.
func (r *Repository[S]) fromSnapshot(ctx context.Context, streamID string, q StreamQuery) (loaded[S], bool, error) {
	var l loaded[S]
	snap, err := r.cfg.Snapshots.LoadSnapshot(ctx, streamID)
	if err != nil {
		if ctx.Err() != nil {
			return l, false, err
		}
		if !errors.Is(err, ErrSnapshotNotFound) {
			r.log.Warn("eventsource: snapshot store failed; replaying", "stream", streamID, "err", err)
		}
		return l, false, nil
	}
	if (q.To > 0 && snap.Version > q.To) || (!q.AsOf.IsZero() && snap.Time.After(q.AsOf)) {
		return l, false, nil // newer than the instant asked for: fine, just not usable
	}
	var reason string
	switch {
	case snap.StreamID != streamID:
		reason = fmt.Sprintf("stream %q", snap.StreamID)
	case snap.AggregateType != r.cfg.Type:
		reason = fmt.Sprintf("aggregate type %q, want %q", snap.AggregateType, r.cfg.Type)
	case snap.SchemaVersion != r.cfg.SnapshotSchemaVersion:
		reason = fmt.Sprintf("schema version %d, want %d", snap.SchemaVersion, r.cfg.SnapshotSchemaVersion)
	case snap.Version == 0:
		reason = "version 0"
	default:
		state := r.cfg.New()
		if err := r.codec.Unmarshal(snap.Data, &state); err != nil {
			reason = "undecodable: " + err.Error()
		} else if isNil(state) {
			reason = "decodes to nil"
		} else {
			return loaded[S]{state: state, version: snap.Version, time: snap.Time, snapshot: snap.Version}, true, nil
		}
	}
	r.log.Warn("eventsource: discarding snapshot; replaying", "stream", streamID,
		"snapshot_version", snap.Version, "reason", reason)
	return l, false, nil
}

// replay applies the events of q after l.version. When l comes from a
// snapshot it first reads the event at the snapshot's version, to prove
// the stream has it; valid is false when it does not (the snapshot claims
// more history than the stream has).
func (r *Repository[S]) replay(ctx context.Context, streamID string, q StreamQuery, l loaded[S]) (_ loaded[S], valid bool, _ error) {
	q.From = max(l.version, 1)
	checked := l.snapshot == 0
	for ev, err := range r.store.ReadStream(ctx, streamID, q) {
		if err != nil {
			return l, true, err
		}
		if !checked { // the event at the snapshot's version exists
			checked = true
			continue
		}
		if ev.Version != l.version+1 {
			return l, true, fmt.Errorf("eventsource: stream %q: read version %d after %d", streamID, ev.Version, l.version)
		}
		if err := r.apply(&l, ev); err != nil {
			return l, true, err
		}
	}
	return l, checked, nil
}

func (r *Repository[S]) apply(l *loaded[S], ev Event) error {
	v, err := r.reg.Decode(ev)
	if err != nil {
		return err
	}
	if err := l.state.Apply(v); err != nil {
		return fmt.Errorf("eventsource: apply %s to stream %q at version %d: %w", ev.Type, ev.StreamID, ev.Version, err)
	}
	l.version = ev.Version
	l.time = ev.Time
	return nil
}

// maybeSnapshot saves a snapshot of l when the policy asks for one. A
// failure is logged: the events are the truth, the snapshot only a cache.
func (r *Repository[S]) maybeSnapshot(ctx context.Context, id string, l loaded[S]) {
	if r.cfg.Snapshots == nil || l.version-l.snapshot < r.cfg.SnapshotEvery {
		return
	}
	streamID := r.StreamID(id)
	data, err := r.codec.Marshal(l.state)
	if err == nil {
		err = r.cfg.Snapshots.SaveSnapshot(ctx, Snapshot{
			StreamID:      streamID,
			AggregateType: r.cfg.Type,
			Version:       l.version,
			SchemaVersion: r.cfg.SnapshotSchemaVersion,
			Time:          l.time,
			Data:          data,
		})
	}
	if err != nil {
		r.log.Warn("eventsource: saving snapshot failed", "stream", streamID, "version", l.version, "err", err)
	}
}

// Execute runs a command against aggregate id: it loads the current state,
// calls cmd with it, and appends the events cmd returns (values of
// registered types, or pointers to them), expecting the version it loaded.
// Events get fresh IDs and the [Metadata] attached to ctx by
// [WithMetadata]. The returned [Result] holds the state with the new events
// applied. cmd must not modify the state it is given; it may run more than
// once.
//
// An error from cmd is returned as is and nothing is stored. When the
// append meets a concurrency conflict (another writer got there first),
// Execute reloads and runs cmd again, up to
// [RepositoryConfig.ConflictRetries] times, then returns the
// [*ConcurrencyError]. A command that returns no events stores nothing and
// succeeds.
func (r *Repository[S]) Execute(ctx context.Context, id string, cmd func(state S) ([]any, error)) (Result[S], error) {
	streamID := r.StreamID(id)
	md, _ := MetadataFrom(ctx)
	for attempt := 1; ; attempt++ {
		l, err := r.load(ctx, id, StreamQuery{})
		if err != nil {
			return Result[S]{Attempts: attempt}, err
		}
		values, err := cmd(l.state)
		if err != nil {
			return Result[S]{Attempts: attempt}, err
		}
		if len(values) == 0 {
			r.maybeSnapshot(ctx, id, l)
			return Result[S]{State: l.state, Version: l.version, Attempts: attempt}, nil
		}
		data := make([]EventData, len(values))
		for i, v := range values {
			if data[i], err = r.reg.Encode(v); err != nil {
				return Result[S]{Attempts: attempt}, err
			}
			data[i].ID = NewID()
			data[i].Metadata = md.clone()
		}
		res, err := r.store.Append(ctx, streamID, Exact(l.version), data...)
		if err != nil {
			if errors.Is(err, ErrConcurrencyConflict) && attempt <= r.cfg.ConflictRetries {
				r.log.Debug("eventsource: concurrency conflict; retrying command",
					"stream", streamID, "attempt", attempt, "err", err)
				continue
			}
			return Result[S]{Attempts: attempt}, err
		}
		events := make([]Event, len(data))
		for i, d := range data {
			events[i] = Event{
				StreamID:      streamID,
				Version:       res.FirstVersion + uint64(i),
				Position:      res.FirstPosition + uint64(i),
				ID:            d.ID,
				Type:          d.Type,
				SchemaVersion: d.SchemaVersion,
				Time:          res.Time,
				Data:          d.Data,
				Metadata:      d.Metadata,
			}
			// Apply what a reload would see: the decoded stored form.
			if err := r.apply(&l, events[i]); err != nil {
				return Result[S]{Attempts: attempt}, fmt.Errorf("eventsource: events stored at version %d but not applied: %w", res.Version, err)
			}
		}
		r.maybeSnapshot(ctx, id, l)
		return Result[S]{State: l.state, Version: l.version, Position: res.Position, Events: events, Attempts: attempt}, nil
	}
}

type metadataKey struct{}

// WithMetadata returns a copy of ctx carrying md, which
// [Repository.Execute] stamps on the events it appends: the way a command
// handler passes correlation and causation IDs down.
func WithMetadata(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, metadataKey{}, md)
}

// MetadataFrom returns the metadata attached to ctx by [WithMetadata].
func MetadataFrom(ctx context.Context) (Metadata, bool) {
	md, ok := ctx.Value(metadataKey{}).(Metadata)
	return md, ok
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}
