package cqrs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/eventsource"
)

// Reconcilable is a projection whose rows a [Reconciler] can compare with
// another copy of the same projection and repair from it. [Table]
// implements it; a database read model implements it with key-range
// queries (or per-range checksums) and upserts.
type Reconcilable[P any] interface {
	eventsource.Projection

	// Compare compares this copy's rows with want's, both at the same
	// checkpoint, over the key ranges from cursor on ("" is the first),
	// stopping at a range boundary once it has compared limit rows or more.
	// It returns the keys whose rows differ (present in one copy only, or
	// unequal), how many keys it compared, and the cursor of the next
	// range ("" when it reached the end). It must not change either copy.
	Compare(ctx context.Context, want P, cursor string, limit int) (drift []string, compared int, next string, err error)

	// Repair makes this copy's rows for keys equal to want's, deleting the
	// rows want has not, and leaves the checkpoint as it is.
	Repair(ctx context.Context, want P, keys []string) error
}

// ReconcilerConfig configures a [Reconciler]. The zero value is valid.
type ReconcilerConfig struct {
	// Interval is the time between passes of [Reconciler.Run]. 0 means
	// one minute; negative is invalid.
	Interval time.Duration
	// MaxRows bounds the work of one pass: it compares about this many
	// rows (whole key ranges, so a little more) and repairs at most those.
	// A full sweep of the read model takes about rows/MaxRows passes.
	// 0 means 1000; negative is invalid.
	MaxRows int
	// OnPass, when set, receives the report of every pass of
	// [Reconciler.Run] that did not fail, on Run's goroutine; a slow
	// OnPass delays the next pass.
	OnPass func(Report)
	// Logger receives repairs at warn level, failed passes at error level
	// and clean passes at debug level. nil discards.
	Logger *slog.Logger
}

// Report describes one reconciler pass.
type Report struct {
	// Checkpoint is the position both copies were compared at.
	Checkpoint uint64
	// Cursor is where the pass started and Next where the next pass
	// starts ("" for the first range).
	Cursor, Next string
	// Compared is how many keys the pass compared.
	Compared int
	// Repaired lists the keys whose rows had drifted and were repaired.
	Repaired []string
	// SweepDone reports that this pass compared the last key range, so a
	// sweep over every row has completed.
	SweepDone bool
	// Duration is how long the pass took.
	Duration time.Duration
}

// ReconcilerStats are a reconciler's counters since it was created.
type ReconcilerStats struct {
	// Passes counts passes completed, Failures passes that failed.
	Passes, Failures uint64
	// Compared and Repaired count keys over all passes.
	Compared, Repaired uint64
	// Sweeps counts completed sweeps over every row.
	Sweeps uint64
}

// Reconciler is background sync for a [ReadModel]: a job that
// periodically checks the read model against what the event log says it
// should hold, repairs the rows that drifted, and reports what it fixed.
//
// Drift is whatever made the serving copy differ from a replay of the
// log: events lost on the way (a pubsub feed that dropped a message), rows
// changed out of band, a crash that broke a database read model's
// atomicity. The reconciler keeps a scratch copy of the projection, built
// with [ReadModelConfig.New] and fed from the log in the background (with
// a [Replaying] context, so without side effects), brings it level with
// the serving copy, compares a bounded number of rows ([Reconcilable]),
// and copies the scratch copy's rows over those that differ. Successive
// passes sweep the whole key space.
//
// What it costs: a second copy of the read model (memory for a [Table]),
// its feeding, and a short hold of the read model's feed lock per pass
// while it compares and repairs up to [ReconcilerConfig.MaxRows] rows.
// What it cannot fix: a bug in the projection's own code, which the
// scratch copy shares (deploy the fix and [ReadModel.Rebuild] instead).
//
// A Reconciler is safe for concurrent use; passes run one at a time. It
// owns no goroutines: [Reconciler.Run] blocks.
type Reconciler[P Reconcilable[P]] struct {
	rm  *ReadModel[P]
	cfg ReconcilerConfig
	log *slog.Logger

	mu      sync.Mutex // one pass at a time; guards the fields below
	scratch P
	ready   bool   // scratch is built
	scp     uint64 // scratch's checkpoint
	cursor  string

	passes, failures, compared, repaired, sweeps atomic.Uint64
}

// NewReconciler returns a reconciler for rm. It returns an error wrapping
// [ErrInvalidConfig] for a nil read model, one without
// [ReadModelConfig.New], or a negative Interval or MaxRows.
func NewReconciler[P Reconcilable[P]](rm *ReadModel[P], cfg ReconcilerConfig) (*Reconciler[P], error) {
	switch {
	case rm == nil:
		return nil, fmt.Errorf("%w: nil read model", ErrInvalidConfig)
	case rm.cfg.New == nil:
		return nil, fmt.Errorf("%w: read model %q: ReadModelConfig.New is nil", ErrInvalidConfig, rm.Name())
	case cfg.Interval < 0:
		return nil, fmt.Errorf("%w: ReconcilerConfig.Interval is negative", ErrInvalidConfig)
	case cfg.MaxRows < 0:
		return nil, fmt.Errorf("%w: ReconcilerConfig.MaxRows is negative", ErrInvalidConfig)
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	if cfg.MaxRows == 0 {
		cfg.MaxRows = 1000
	}
	r := &Reconciler[P]{rm: rm, cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Pass runs one reconciliation pass now and reports it. The first pass
// builds the scratch copy from the start of the log, so it takes as long
// as a rebuild; later passes feed it only what is new.
//
// It returns the store's or the projection's error, wrapped with the read
// model's name; the scratch copy is then dropped and rebuilt by the next
// pass. On cancellation it returns an error wrapping ctx.Err().
func (r *Reconciler[P]) Pass(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep, err := r.pass(ctx)
	if err != nil {
		r.failures.Add(1)
		var zero P
		r.scratch, r.ready, r.scp = zero, false, 0
		return rep, fmt.Errorf("cqrs: reconcile %q: %w", r.rm.Name(), err)
	}
	r.passes.Add(1)
	r.compared.Add(uint64(rep.Compared))
	r.repaired.Add(uint64(len(rep.Repaired)))
	if rep.SweepDone {
		r.sweeps.Add(1)
	}
	if len(rep.Repaired) > 0 {
		r.log.Warn("cqrs: reconciler repaired drift", "read_model", r.rm.Name(), "checkpoint", rep.Checkpoint,
			"compared", rep.Compared, "repaired", len(rep.Repaired), "keys", rep.Repaired)
	} else {
		r.log.Debug("cqrs: reconciler pass clean", "read_model", r.rm.Name(), "checkpoint", rep.Checkpoint,
			"compared", rep.Compared)
	}
	return rep, nil
}

func (r *Reconciler[P]) pass(ctx context.Context) (Report, error) {
	start := time.Now()
	rctx := replaying(ctx)
	if !r.ready {
		s := r.rm.cfg.New()
		if isNil(s) {
			return Report{}, fmt.Errorf("%w: ReadModelConfig.New returned nil", ErrInvalidConfig)
		}
		cp, err := s.Checkpoint(rctx)
		if err != nil {
			return Report{}, err
		}
		if cp != 0 {
			return Report{}, fmt.Errorf("%w: checkpoint %d", eventsource.ErrProjectionNotEmpty, cp)
		}
		r.scratch, r.ready, r.scp = s, true, 0
	}
	// Most of the feeding happens without the lock.
	var err error
	if r.scp, err = r.rm.catchUp(rctx, r.scratch, r.scp, r.rm.cp.Load()); err != nil {
		return Report{}, err
	}
	r.rm.feed.Lock()
	defer r.rm.feed.Unlock()
	if r.scp, err = r.rm.catchUp(rctx, r.scratch, r.scp, r.rm.cp.Load()); err != nil {
		return Report{}, err
	}
	rep := Report{Checkpoint: r.scp, Cursor: r.cursor}
	active := r.rm.Current()
	drift, compared, next, err := active.Compare(ctx, r.scratch, r.cursor, r.cfg.MaxRows)
	if err != nil {
		return rep, err
	}
	if len(drift) > 0 {
		if err := active.Repair(ctx, r.scratch, drift); err != nil {
			return rep, err
		}
	}
	r.cursor = next
	rep.Compared, rep.Repaired, rep.Next, rep.SweepDone = compared, drift, next, next == ""
	rep.Duration = time.Since(start)
	return rep, nil
}

// Run makes a pass every [ReconcilerConfig.Interval] (the first one an
// interval after the start) until ctx ends, when it returns an error
// wrapping ctx.Err(). A failed pass is logged and counted, and the next
// one tries again. Run blocks; the caller picks the goroutine.
func (r *Reconciler[P]) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cqrs: reconciler %q: %w", r.rm.Name(), ctx.Err())
		case <-t.C:
		}
		rep, err := r.Pass(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("cqrs: reconciler %q: %w", r.rm.Name(), ctx.Err())
			}
			r.log.Error("cqrs: reconciler pass failed", "read_model", r.rm.Name(), "err", err)
			continue
		}
		if r.cfg.OnPass != nil {
			r.cfg.OnPass(rep)
		}
	}
}

// Stats returns the reconciler's counters.
func (r *Reconciler[P]) Stats() ReconcilerStats {
	return ReconcilerStats{
		Passes:   r.passes.Load(),
		Failures: r.failures.Load(),
		Compared: r.compared.Load(),
		Repaired: r.repaired.Load(),
		Sweeps:   r.sweeps.Load(),
	}
}
