package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/distkit/distkit/eventsource"
)

// Defaults for the zero fields of [Config].
const (
	DefaultCompensationTimeout = 5 * time.Minute
	DefaultConcurrency         = 16
)

// Config configures a [Coordinator]. The zero value is valid: the package
// default [Policy] for every step, five minutes for a compensation phase,
// 16 sagas resumed at once by [Coordinator.Recover], no logging.
type Config struct {
	// Policy is the default policy of every step; a step's own
	// [Step.Policy] fields override it, and its zero fields take the
	// package defaults ([DefaultTimeout] and the others).
	Policy Policy

	// CompensationTimeout bounds one compensation phase: compensations run
	// on a context that the saga's caller cannot cancel, but that ends
	// after this long, when the saga is parked as [Stuck] (0 means
	// [DefaultCompensationTimeout]).
	CompensationTimeout time.Duration

	// Concurrency is how many sagas [Coordinator.Recover] resumes at once
	// (0 means [DefaultConcurrency]).
	Concurrency int

	// Logger receives a record of every transition, each with the saga's
	// ID ("saga_id") and name ("saga"): Info for a saga's start and end,
	// Debug for step attempts, Warn for failed attempts, Error for a saga
	// parked as stuck. Nil discards.
	Logger *slog.Logger
}

// Coordinator is a saga orchestrator: it runs saga instances of the
// definitions it was given, writing every transition to its [Store]
// before it takes effect, so that any coordinator with the same store and
// definitions can resume what this one left unfinished.
//
// Each saga runs in the goroutine of the method that drives it
// ([Coordinator.Execute], [Coordinator.Resume], the operator methods),
// with one more goroutine per step running in parallel; all of them have
// ended when the method returns. A Coordinator owns no other goroutine and
// needs no Close. It is safe for concurrent use.
//
// Within one coordinator a saga is driven by one call at a time; across
// coordinators the store's optimistic concurrency keeps one writer per
// saga: a coordinator whose append loses the race stops driving the saga
// ([ErrConflict]).
type Coordinator struct {
	store  Store
	cfg    Config
	log    *slog.Logger
	defs   map[string]*compiled
	mu     sync.Mutex
	active map[string]*slot
}

type compiled struct {
	def *Definition
	pol []Policy
}

// slot marks a saga driven by this coordinator. Preempting it cancels
// the contexts its run registered.
type slot struct {
	done chan struct{}

	mu      sync.Mutex
	cause   error
	cancels []context.CancelCauseFunc
}

// onStop registers cancel to be called when the slot is preempted (at
// once if it already was).
func (s *slot) onStop(cancel context.CancelCauseFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause != nil {
		cancel(s.cause)
		return
	}
	s.cancels = append(s.cancels, cancel)
}

// stop preempts the slot's run with cause.
func (s *slot) stop(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause == nil {
		s.cause = cause
		for _, c := range s.cancels {
			c(cause)
		}
	}
}

// stopped returns the preemption's cause, or nil.
func (s *slot) stopped() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// New returns a coordinator for the sagas defined by defs, logging to
// store. It returns an error wrapping [ErrInvalidConfig] for a nil store,
// a nil or repeated definition name, or an invalid config.
func New(store Store, defs []*Definition, cfg Config) (*Coordinator, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case store == nil:
		return nil, invalid("nil Store")
	case cfg.CompensationTimeout < 0:
		return nil, invalid("Config.CompensationTimeout is negative")
	case cfg.Concurrency < 0:
		return nil, invalid("Config.Concurrency is negative")
	}
	if reason := cfg.Policy.check(); reason != "" {
		return nil, invalid("Config.%s", reason)
	}
	if cfg.CompensationTimeout == 0 {
		cfg.CompensationTimeout = DefaultCompensationTimeout
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	base := cfg.Policy.resolve(defaultPolicy)
	c := &Coordinator{store: store, cfg: cfg, log: cfg.Logger, defs: make(map[string]*compiled), active: make(map[string]*slot)}
	for _, d := range defs {
		if d == nil {
			return nil, invalid("nil Definition")
		}
		if _, dup := c.defs[d.name]; dup {
			return nil, invalid("two definitions named %q", d.name)
		}
		cd := &compiled{def: d, pol: make([]Policy, len(d.steps))}
		for i, s := range d.steps {
			cd.pol[i] = s.Policy.resolve(base)
		}
		c.defs[d.name] = cd
	}
	return c, nil
}

// Execute starts a new instance of the saga named name with ID id (empty
// means a fresh, time-ordered ID) and input, and drives it until it ends
// or is parked. It returns the saga's final status and:
//
//   - nil when every step succeeded ([Completed]);
//   - a [*Error] matching [ErrCompensated] when a step failed (and then
//     also [ErrFailed]) or ctx was cancelled, and every step that had
//     completed was compensated;
//   - a [*Error] matching [ErrStuck] when the saga was parked for an
//     operator;
//   - [ErrExists] when a saga with this ID was already started (nothing is
//     written: starting a saga is idempotent by ID);
//   - [ErrUnknownSaga] for a name the coordinator was not given;
//   - otherwise an error from the store, [ErrConflict] or [ErrPreempted]:
//     the saga was interrupted, is unfinished in the store and will be
//     resumed by [Coordinator.Recover] or [Coordinator.Resume].
//
// Cancelling ctx stops the saga going forward (the running actions see
// their contexts cancelled) and compensates what completed, on a context
// ctx's cancellation cannot stop, bounded by [Config.CompensationTimeout];
// Execute returns when the compensation has ended.
func (c *Coordinator) Execute(ctx context.Context, name, id string, input []byte) (Status, error) {
	cd := c.defs[name]
	if cd == nil {
		return Status{}, fmt.Errorf("%w: %q", ErrUnknownSaga, name)
	}
	if err := ctx.Err(); err != nil {
		return Status{}, fmt.Errorf("saga: execute %q: %w", name, err)
	}
	if id == "" {
		id = eventsource.NewID()
	}
	sl, err := c.acquire(ctx, id, false)
	if err != nil {
		if errors.Is(err, ErrActive) {
			err = fmt.Errorf("%w: %q", ErrExists, id)
		}
		return Status{}, err
	}
	defer c.release(id, sl)
	r := c.newRun(cd, id, sl, nil)
	if err := r.write(context.WithoutCancel(ctx), Record{Type: RecordStarted, Saga: name, Data: input}); err != nil {
		if errors.Is(err, ErrConflict) {
			return Status{}, fmt.Errorf("%w: %q", ErrExists, id)
		}
		return Status{}, fmt.Errorf("saga %q: start: %w", id, err)
	}
	return r.drive(ctx)
}

// Resume drives the unfinished saga id from its last recorded transition,
// as Execute would have; it is what [Coordinator.Recover] does for each
// saga. A saga that has ended, or is [Stuck], is returned as it is, with
// its error ([Status.Err]), and nothing is written. It returns
// [ErrNotFound], [ErrUnknownSaga], [ErrCorruptLog], [ErrActive] when this
// coordinator is already driving the saga, and otherwise what Execute
// returns.
func (c *Coordinator) Resume(ctx context.Context, id string) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, fmt.Errorf("saga: resume %q: %w", id, err)
	}
	sl, err := c.acquire(ctx, id, false)
	if err != nil {
		return Status{}, fmt.Errorf("%w: %q", err, id)
	}
	defer c.release(id, sl)
	cd, st, err := c.load(ctx, id)
	if err != nil {
		return Status{}, err
	}
	if st.State != Running && st.State != Compensating {
		return st.Clone(), st.Err()
	}
	c.logAttrs(ctx, slog.LevelInfo, "saga: resuming", id, cd.def.name, slog.String("state", st.State.String()), slog.Uint64("version", st.Version))
	return c.newRun(cd, id, sl, st).drive(ctx)
}

// Recover resumes every unfinished saga in the store ([Running] or
// [Compensating]) that this coordinator is not already driving,
// [Config.Concurrency] at a time, and returns when each has ended, been
// parked or been interrupted. Run it when a coordinator starts, to finish
// what a crashed one left, and periodically if compensations can time
// out.
//
// It returns the final status of each saga it resumed and the errors of
// those it could not drive to an end (store errors, conflicts with
// another coordinator, unknown definitions, corrupt logs), joined, each
// naming its saga. Sagas that ended compensated or parked are outcomes,
// not errors: read them from the statuses. If ctx is cancelled, the sagas
// being resumed compensate as for Execute, and no more are started.
//
// Two coordinators may recover the same store at once: the store's
// optimistic concurrency lets one of them drive each saga, and the other
// reports [ErrConflict] for it. Steps' idempotency keys make the actions
// the loser had begun take effect once.
func (c *Coordinator) Recover(ctx context.Context) ([]Status, error) {
	var (
		mu       sync.Mutex
		statuses []Status
		errs     []error
		panicked any
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, c.cfg.Concurrency)
	q := Query{States: []State{Running, Compensating}, Limit: 256}
	seen := make(map[string]bool)
	var listErr error
pages:
	for ctx.Err() == nil {
		page, err := c.store.List(ctx, q)
		if err != nil {
			listErr = fmt.Errorf("saga: recover: list: %w", err)
			break
		}
		for _, sum := range page {
			if seen[sum.ID] || c.isActive(sum.ID) {
				continue
			}
			seen[sum.ID] = true
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				break pages
			}
			wg.Go(func() {
				defer func() { <-sem }()
				defer func() {
					if v := recover(); v != nil {
						mu.Lock()
						panicked = v
						mu.Unlock()
					}
				}()
				st, err := c.Resume(ctx, sum.ID)
				mu.Lock()
				defer mu.Unlock()
				if st.ID != "" {
					statuses = append(statuses, st)
				}
				if err != nil && !isOutcome(err) && !errors.Is(err, ErrActive) {
					errs = append(errs, fmt.Errorf("saga %q: %w", sum.ID, err))
				}
			})
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].ID
	}
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
	if listErr != nil {
		errs = append(errs, listErr)
	}
	return statuses, errors.Join(errs...)
}

// isOutcome reports whether err is the error of a saga that ended or was
// parked, rather than a failure to drive it.
func isOutcome(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Status returns the status of saga id, replayed from its log. It
// returns [ErrNotFound], [ErrUnknownSaga] or [ErrCorruptLog].
func (c *Coordinator) Status(ctx context.Context, id string) (Status, error) {
	_, st, err := c.load(ctx, id)
	if err != nil {
		return Status{}, err
	}
	return *st, nil
}

// List returns a summary of the sagas in the store selected by q, such as
// every stuck saga: Query{States: []State{Stuck}}.
func (c *Coordinator) List(ctx context.Context, q Query) ([]Summary, error) {
	return c.store.List(ctx, q)
}

// Retry gives a [Stuck] saga a fresh budget of attempts and drives it
// again from where it was parked: forward, retrying the step whose outcome
// was unknown, or compensating. It returns [ErrNotStuck] for a saga that
// is not stuck, [ErrFinished] for one that has ended, and otherwise what
// [Coordinator.Execute] returns.
func (c *Coordinator) Retry(ctx context.Context, id string) (Status, error) {
	return c.operate(ctx, id, "retry", func(st *Status) (Record, bool, error) {
		switch {
		case st.State.Final():
			return Record{}, false, fmt.Errorf("%w: saga %q is %s", ErrFinished, id, st.State)
		case st.State != Stuck:
			return Record{}, false, fmt.Errorf("%w: saga %q is %s", ErrNotStuck, id, st.State)
		}
		return Record{Type: RecordRetried}, true, nil
	})
}

// Compensate forces saga id to turn back, whatever state it is in short
// of the end: it stops going forward (taking the saga over from any call
// of this coordinator that is driving it, which returns [ErrPreempted])
// and compensates every step whose action may have taken effect,
// including one whose outcome is unknown. reason is recorded as the
// cause. It returns [ErrFinished] for a saga that has ended, and
// otherwise what [Coordinator.Execute] returns: a [*Error] matching
// [ErrCompensated] when it worked.
func (c *Coordinator) Compensate(ctx context.Context, id, reason string) (Status, error) {
	return c.operate(ctx, id, "compensate", func(st *Status) (Record, bool, error) {
		switch st.State {
		case Running, Stuck:
			return Record{Type: RecordCompensating, Error: "compensation forced by an operator: " + reason}, true, nil
		case Compensating:
			return Record{}, true, nil
		}
		return Record{}, false, fmt.Errorf("%w: saga %q is %s", ErrFinished, id, st.State)
	})
}

// Abort ends saga id where it is, without running any more actions or
// compensations, for an operator who has put things right by hand. It
// takes the saga over from any call of this coordinator driving it
// (which returns [ErrPreempted]), records reason, and returns the final
// status. It returns [ErrFinished] for a saga that has ended.
func (c *Coordinator) Abort(ctx context.Context, id, reason string) (Status, error) {
	st, err := c.operate(ctx, id, "abort", func(st *Status) (Record, bool, error) {
		if st.State.Final() {
			return Record{}, false, fmt.Errorf("%w: saga %q is %s", ErrFinished, id, st.State)
		}
		return Record{Type: RecordAborted, Error: "aborted by an operator: " + reason}, false, nil
	})
	if errors.Is(err, ErrAborted) {
		err = nil
	}
	return st, err
}

// operate takes saga id over, lets decide choose the record to write and
// whether to drive the saga after it.
func (c *Coordinator) operate(ctx context.Context, id, op string, decide func(*Status) (Record, bool, error)) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, fmt.Errorf("saga: %s %q: %w", op, id, err)
	}
	sl, err := c.acquire(ctx, id, true)
	if err != nil {
		return Status{}, err
	}
	defer c.release(id, sl)
	cd, st, err := c.load(ctx, id)
	if err != nil {
		return Status{}, err
	}
	rec, drive, err := decide(st)
	if err != nil {
		return st.Clone(), err
	}
	r := c.newRun(cd, id, sl, st)
	if rec.Type != "" {
		c.logAttrs(ctx, slog.LevelWarn, "saga: operator "+op, id, cd.def.name, slog.String("state", st.State.String()))
		if err := r.write(context.WithoutCancel(ctx), rec); err != nil {
			return st.Clone(), fmt.Errorf("saga %q: %s: %w", id, op, err)
		}
	}
	if !drive {
		return r.snapshot(), r.status.Err()
	}
	return r.drive(ctx)
}

// load reads and replays saga id's log.
func (c *Coordinator) load(ctx context.Context, id string) (*compiled, *Status, error) {
	recs, err := c.store.Load(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if recs[0].Type != RecordStarted {
		return nil, nil, fmt.Errorf("%w: saga %q: first record is %s", ErrCorruptLog, id, recs[0].Type)
	}
	cd := c.defs[recs[0].Saga]
	if cd == nil {
		return nil, nil, fmt.Errorf("%w: %q (saga %q)", ErrUnknownSaga, recs[0].Saga, id)
	}
	st, err := replay(cd.def, id, recs)
	if err != nil {
		return nil, nil, err
	}
	return cd, st, nil
}

// acquire marks saga id as driven by the caller. When another call of
// this coordinator drives it, acquire returns ErrActive, or, with
// preempt, stops that call and waits for it.
func (c *Coordinator) acquire(ctx context.Context, id string, preempt bool) (*slot, error) {
	for {
		c.mu.Lock()
		s := c.active[id]
		if s == nil {
			s = &slot{done: make(chan struct{})}
			c.active[id] = s
			c.mu.Unlock()
			return s, nil
		}
		c.mu.Unlock()
		if !preempt {
			return nil, ErrActive
		}
		s.stop(ErrPreempted)
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("saga %q: waiting for its driver to stop: %w", id, ctx.Err())
		}
	}
}

func (c *Coordinator) release(id string, s *slot) {
	c.mu.Lock()
	delete(c.active, id)
	c.mu.Unlock()
	close(s.done)
}

func (c *Coordinator) isActive(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active[id] != nil
}

func (c *Coordinator) logAttrs(ctx context.Context, level slog.Level, msg, id, name string, attrs ...slog.Attr) {
	if c.log == nil || !c.log.Enabled(ctx, level) {
		return
	}
	c.log.LogAttrs(ctx, level, msg, append([]slog.Attr{slog.String("saga_id", id), slog.String("saga", name)}, attrs...)...)
}
