package circuitbreaker

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Breaker is a circuit breaker: it watches the outcomes of calls to a
// dependency and, when the dependency looks broken, rejects calls for a
// while instead of making them. See the package documentation for the
// state machine and the policies.
//
// A Breaker is safe for concurrent use. Its state is an immutable record
// swapped with compare-and-swap, and its counters are atomics: the closed
// state costs one atomic add per call, with no lock and no clock read (see
// [Config.SlowCallDuration] for the one policy that times calls, on a
// coarse clock). Create one with [New] or get one from a [Group]; the zero
// value is not usable.
type Breaker struct {
	ep atomic.Pointer[episode]
	_  [56]byte

	rejected atomic.Uint64
	_        [56]byte

	trips atomic.Uint64
	s     *settings
	name  string
	key   string // in a Group
	clk   *clock
	notes notifier
	share *sharing // nil without a Store
}

// episode is one stay in one state. It is immutable except for its
// counters; a state change replaces the whole episode, so calls admitted in
// an earlier episode report to that episode and cannot disturb the new one.
type episode struct {
	state State
	// admits is set for closed and forced-closed episodes: the call paths
	// admit calls with one load. fast is set for those whose calls need no
	// timing: Allow returns the shared done func.
	admits bool
	fast   bool
	timed  bool // the slow-call policy times every call
	mode   uint8
	gen    uint64
	trips  int   // trips since the breaker last closed, for backoff
	since  int64 // clock time the episode began
	until  int64 // open: end of the open period

	b      *Breaker
	clk    *clock         // b.clk, one load closer to the hot path
	slow   int64          // b.s.slowNanos, likewise
	reject *RejectedError // open and forced open
	cw     *countWindow
	tw     *timeWindow
	done   func(error) // closed: the done func shared by untimed permits
	tdone  atomic.Pointer[timedDone]
	probes []atomic.Pointer[probe] // half-open

	// The counters share one cache line, away from the fields above that
	// every call reads: a failing call updates three of them, and under
	// contention one line changing hands costs a third of three doing so
	// (BenchmarkFailure/consecutive/parallel: 134 ns apart, 55 ns
	// together), while a succeeding call pays about 2 ns more.
	_        [64]byte
	calls    atomic.Uint64 // closed without a window
	failures atomic.Uint64 // closed without a window
	consec   atomic.Uint64
	probeOK  atomic.Int64 // half-open successes
}

// Window modes of closed episodes.
const (
	modePlain uint8 = iota
	modeCount
	modeTime
)

// probe is a half-open permit.
type probe struct {
	slot  int
	start int64 // real clock, for ProbeTimeout
}

// timedDone is a done func for timed calls that started at the same coarse
// instant; sharing it keeps the two-step API free of allocations.
type timedDone struct {
	start int64
	fn    func(error)
}

// permit is an admitted call.
type permit struct {
	ep    *episode
	pr    *probe
	start int64 // coarse clock, timed episodes only
}

// errPanicked stands for a guarded call that panicked.
var errPanicked = errors.New("circuitbreaker: guarded call panicked")

// New returns a closed breaker configured by cfg, or a [*ConfigError] if
// cfg is invalid.
func New(cfg Config) (*Breaker, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var sh *sharing
	if s.Store != nil {
		sh = newSharing(make(chan struct{}, 1))
	}
	return newBreaker(s, s.Name, "", newClock(s.resolution), sh), nil
}

func newBreaker(s *settings, name, key string, clk *clock, sh *sharing) *Breaker {
	b := &Breaker{s: s, name: name, key: key, clk: clk, share: sh}
	b.notes.next = 1
	b.ep.Store(b.newClosed(0, StateClosed, clk.real()))
	return b
}

func (b *Breaker) newEpisode(gen uint64, state State, trips int, now int64) *episode {
	return &episode{state: state, gen: gen, trips: trips, since: now, b: b, clk: b.clk, slow: b.s.slowNanos}
}

func (b *Breaker) newClosed(gen uint64, state State, now int64) *episode {
	ep := b.newEpisode(gen, state, 0, now)
	ep.timed = b.s.slowPPM > 0
	ep.admits = true
	ep.fast = !ep.timed
	switch {
	case b.s.bucketWidth > 0:
		ep.tw = newTimeWindow(b.s.WindowBuckets, b.s.bucketWidth, now)
		ep.mode = modeTime
	case b.s.WindowCalls > 0:
		ep.cw = newCountWindow(b.s.WindowCalls)
		ep.mode = modeCount
	}
	// The done func of untimed permits. The common case, a success under
	// the plain policy, takes no further call.
	ep.done = func(err error) {
		if err == nil {
			if ep.mode == modePlain && ep.consec.Load() == 0 {
				ep.calls.Add(1)
				return
			}
			ep.ok()
			return
		}
		ep.exit(err, 0)
	}
	return ep
}

func (b *Breaker) newOpen(gen uint64, state State, trips int, now, until int64) *episode {
	ep := b.newEpisode(gen, state, trips, now)
	ep.until = until
	ep.reject = &RejectedError{Name: b.name, State: state, err: ErrOpen}
	if state == StateOpen {
		ep.reject.RetryAt = b.clk.at(until)
	}
	return ep
}

func (b *Breaker) newHalfOpen(gen uint64, trips int, now int64) *episode {
	ep := b.newEpisode(gen, StateHalfOpen, trips, now)
	ep.timed = b.s.slowPPM > 0
	ep.probes = make([]atomic.Pointer[probe], b.s.HalfOpenProbes)
	return ep
}

// Name returns the breaker's [Config.Name].
func (b *Breaker) Name() string { return b.name }

// Do calls fn if the breaker admits the call, records its outcome, and
// returns fn's error. If the breaker rejects the call, Do returns a
// [*RejectedError] wrapping [ErrOpen] or [ErrTooManyProbes] without
// calling fn. If ctx is already done, Do returns ctx.Err() (or the
// rejection, if the breaker is open) without calling fn, recording anything
// or taking a probe permit.
//
// A panic in fn is recorded as a failure and then continues up the stack.
// A call that runs past the breaker changing state reports to the state it
// was admitted in, so a slow call that fails after the breaker opened does
// not count against the next closed period.
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) (err error) {
	ep := b.ep.Load()
	if !ep.admits {
		if ep.state == StateOpen {
			// Rejection without a call: the coarse clock is running and
			// the open period is not near its end.
			if now := b.clk.now.Load(); now >= 0 && now+b.clk.res < ep.until {
				b.rejected.Add(1)
				return ep.reject
			}
		}
		return b.doSlow(ctx, ep, fn)
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	var start int64
	if ep.timed {
		start = ep.clk.coarse()
	}
	// err stays errPanicked only if fn panics.
	err = errPanicked
	defer func() {
		if err == nil && ep.fast {
			if ep.mode == modePlain && ep.consec.Load() == 0 {
				ep.calls.Add(1)
				return
			}
			ep.ok()
			return
		}
		ep.exit(err, start)
	}()
	err = fn(ctx)
	return err
}

// exit records the outcome of a call admitted by a closed episode: err is
// errPanicked if it panicked; start is the coarse time it started, if the
// episode is timed.
func (ep *episode) exit(err error, start int64) {
	o := outOK
	switch {
	case err == nil:
	case err == errPanicked, ep.b.s.IsFailure(err):
		o = outFail
	default:
		return
	}
	if ep.timed && ep.clk.coarse()-start >= ep.slow {
		o |= outSlow
	}
	if o == outOK {
		ep.ok()
		return
	}
	ep.record(o, err)
}

func (b *Breaker) doSlow(ctx context.Context, ep *episode, fn func(context.Context) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := b.admit(ep)
	if err != nil {
		return err
	}
	returned := false
	defer func() {
		if !returned {
			p.panicked()
		}
	}()
	err = fn(ctx)
	returned = true
	p.release(err)
	return err
}

// Call is [Breaker.Do] for functions that return a value: it calls fn if b
// admits the call, records the outcome and returns fn's results. When the
// call is rejected or ctx is already done, it returns the zero T and the
// error Do would return.
func Call[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (v T, err error) {
	// The body repeats Do's rather than sharing it: on this path an extra
	// indirect call is a measurable share of the cost.
	ep := b.ep.Load()
	if !ep.admits {
		return callSlow(ctx, b, ep, fn)
	}
	if err = ctx.Err(); err != nil {
		return v, err
	}
	var start int64
	if ep.timed {
		start = ep.clk.coarse()
	}
	err = errPanicked
	defer func() {
		if err == nil && ep.fast {
			if ep.mode == modePlain && ep.consec.Load() == 0 {
				ep.calls.Add(1)
				return
			}
			ep.ok()
			return
		}
		ep.exit(err, start)
	}()
	v, err = fn(ctx)
	return v, err
}

func callSlow[T any](ctx context.Context, b *Breaker, ep *episode, fn func(context.Context) (T, error)) (v T, err error) {
	if err := ctx.Err(); err != nil {
		return v, err
	}
	p, err := b.admit(ep)
	if err != nil {
		return v, err
	}
	returned := false
	defer func() {
		if !returned {
			p.panicked()
		}
	}()
	v, err = fn(ctx)
	returned = true
	p.release(err)
	return v, err
}

// Fallback calls fn through b like [Call]; when that returns an error,
// whether the breaker rejected the call or fn failed, it returns
// fallback(ctx, err) instead. The fallback can tell the cases apart with
// errors.Is(err, [ErrOpen]) and [ErrTooManyProbes]. A panic in fn is not
// caught: it is recorded and continues up the stack.
func Fallback[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error), fallback func(context.Context, error) (T, error)) (T, error) {
	v, err := Call(ctx, b, fn)
	if err != nil {
		return fallback(ctx, err)
	}
	return v, nil
}

// Allow is the two-step form of [Breaker.Do], for calls that cannot be
// wrapped in a function (a stream, a response read elsewhere, middleware).
// If the breaker admits the call, Allow returns a done func to call exactly
// once with the call's outcome (nil for success); otherwise it returns a
// nil done and a [*RejectedError].
//
// If the call panics, call done with a non-nil error, for example from a
// deferred func. A half-open probe whose done is not called within
// [Config.ProbeTimeout] counts as failed. In the closed state done is a
// shared func and Allow does not allocate (with the slow-call policy, done
// carries the start time, so a new one is allocated at most once per tick
// of the coarse clock); each half-open probe allocates its own.
func (b *Breaker) Allow() (done func(error), err error) {
	ep := b.ep.Load()
	if ep.fast {
		return ep.done, nil
	}
	p, err := b.admit(ep)
	if err != nil {
		return nil, err
	}
	return p.doneFunc(), nil
}

// admit returns a permit for a call, or the error that rejects it, moving
// an open breaker whose open period has passed to half-open.
func (b *Breaker) admit(ep *episode) (permit, error) {
	for {
		switch ep.state {
		case StateClosed, StateForcedClosed:
			p := permit{ep: ep}
			if ep.timed {
				p.start = b.clk.coarse()
			}
			return p, nil
		case StateOpen:
			// The coarse clock lags the real one by at most the clock
			// resolution; only near the end of the open period is the
			// real clock needed to decide.
			if now := b.clk.coarse(); now+b.clk.res < ep.until {
				b.rejected.Add(1)
				return permit{}, ep.reject
			}
			now := b.clk.real()
			if now < ep.until {
				b.rejected.Add(1)
				return permit{}, ep.reject
			}
			b.halfOpen(ep, now)
		case StateForcedOpen:
			b.rejected.Add(1)
			return permit{}, ep.reject
		case StateHalfOpen:
			if p, ok, err := b.probe(ep); ok || err != nil {
				return p, err
			}
		}
		ep = b.ep.Load()
	}
}

// probe takes a half-open permit. It returns ok=false, err=nil when the
// episode ended while it tried, and the caller should look again.
func (b *Breaker) probe(ep *episode) (p permit, ok bool, err error) {
	now := b.clk.real()
	if b.expireProbes(ep, now) {
		return permit{}, false, nil
	}
	for i := range ep.probes {
		if ep.probes[i].Load() == nil {
			pr := &probe{slot: i, start: now}
			if ep.probes[i].CompareAndSwap(nil, pr) {
				p = permit{ep: ep, pr: pr}
				if ep.timed {
					p.start = b.clk.coarse()
				}
				return p, true, nil
			}
		}
	}
	retry := int64(1<<63 - 1)
	for i := range ep.probes {
		if pr := ep.probes[i].Load(); pr != nil {
			retry = min(retry, pr.start+b.s.probeNanos)
		}
	}
	if retry == 1<<63-1 {
		return permit{}, false, nil // a probe finished meanwhile: look again
	}
	b.rejected.Add(1)
	return permit{}, false, &RejectedError{Name: b.name, State: StateHalfOpen, RetryAt: b.clk.at(retry), err: ErrTooManyProbes}
}

// expireProbes reclaims probes that have held their permit for
// ProbeTimeout: such a probe counts as failed and reopens the breaker. It
// reports whether the episode is over.
func (b *Breaker) expireProbes(ep *episode, now int64) bool {
	for i := range ep.probes {
		pr := ep.probes[i].Load()
		if pr != nil && now-pr.start >= b.s.probeNanos && ep.probes[i].CompareAndSwap(pr, nil) {
			b.trip(ep, reasonProbeLost, nil)
			return true
		}
	}
	return b.ep.Load() != ep
}

func (p permit) doneFunc() func(error) {
	ep := p.ep
	switch {
	case p.pr != nil:
		return func(err error) { p.release(err) }
	case !ep.timed:
		return ep.done
	}
	if td := ep.tdone.Load(); td != nil && td.start == p.start {
		return td.fn
	}
	td := &timedDone{start: p.start, fn: func(err error) { p.release(err) }}
	ep.tdone.Store(td)
	return td.fn
}

func (p permit) panicked() { p.finish(outFail, errPanicked) }

func (p permit) release(err error) {
	o := outOK
	if err != nil {
		if !p.ep.b.s.IsFailure(err) {
			o = 0
		} else {
			o = outFail
		}
	}
	p.finish(o, err)
}

// finish records outcome o (0 for an ignored error).
func (p permit) finish(o uint32, err error) {
	ep := p.ep
	b := ep.b
	if o != 0 && ep.timed && b.clk.coarse()-p.start >= b.s.slowNanos {
		o |= outSlow
	}
	if p.pr != nil {
		b.probeDone(ep, p.pr, o, err)
		return
	}
	switch o {
	case 0:
	case outOK:
		ep.ok()
	default:
		ep.record(o, err)
	}
}

// ok records a success in a closed episode: one atomic add and one or two
// loads.
func (ep *episode) ok() {
	switch ep.mode {
	case modePlain:
		ep.calls.Add(1)
	case modeCount:
		// A success that finds a success in its slot writes nothing.
		w := ep.cw
		i := w.index(w.seq.Add(1) - 1)
		if w.slots[i].Load() != outOK {
			w.put(i, outOK)
		}
	default:
		ep.tw.ok(ep.clk.coarse())
	}
	if ep.consec.Load() != 0 {
		ep.consec.Store(0)
	}
}

// record records outcome o in a closed episode and trips the breaker if a
// policy says so.
func (ep *episode) record(o uint32, err error) {
	b := ep.b
	s := b.s
	var t tally
	switch {
	case ep.cw != nil:
		t = ep.cw.record(o)
	case ep.tw != nil:
		t = ep.tw.record(b.clk.coarse(), o)
	default:
		t.calls = ep.calls.Add(1)
		if o&outFail == outFail {
			t.failures = ep.failures.Add(1)
		}
	}
	var n uint64
	if o&outFail == outFail {
		n = ep.consec.Add(1)
	} else if ep.consec.Load() != 0 {
		ep.consec.Store(0)
	}
	if ep.state != StateClosed || o == outOK {
		return
	}
	reason := ""
	switch {
	case s.consecutive > 0 && n >= s.consecutive:
		reason = reasonConsecutive
	case t.calls < s.minCalls:
	case s.failPPM > 0 && o&outFail == outFail && t.failures*ppm >= s.failPPM*t.calls:
		reason = reasonFailureRate
	case s.slowPPM > 0 && o&outSlow == outSlow && t.slow*ppm >= s.slowPPM*t.calls:
		reason = reasonSlowRate
	}
	if reason != "" {
		b.trip(ep, reason, err)
	}
}

// probeDone records a half-open probe's outcome.
func (b *Breaker) probeDone(ep *episode, pr *probe, o uint32, err error) {
	if !ep.probes[pr.slot].CompareAndSwap(pr, nil) {
		return // timed out and reclaimed, or done called twice
	}
	switch {
	case o == 0:
	case o&outFail == outFail:
		b.trip(ep, reasonProbeFailed, err)
	case o&outSlow == outSlow:
		b.trip(ep, reasonProbeSlow, nil)
	case ep.probeOK.Add(1) >= int64(b.s.SuccessThreshold):
		b.swap(ep, b.newClosed(ep.gen+1, StateClosed, b.clk.real()), reasonProbeOK, nil)
	}
}

// trip opens the breaker from episode from, if from is still current.
func (b *Breaker) trip(from *episode, reason string, err error) {
	now := b.clk.real()
	n := from.trips + 1
	until := now + int64(b.s.openTimeout(n))
	if b.swap(from, b.newOpen(from.gen+1, StateOpen, n, now, until), reason, err) && b.share != nil {
		b.share.published(b.clk.at(until), n)
	}
}

// halfOpen moves an open breaker whose period has passed to half-open.
func (b *Breaker) halfOpen(from *episode, now int64) {
	b.swap(from, b.newHalfOpen(from.gen+1, from.trips, now), reasonTimeout, nil)
}

// swap replaces episode from with to if from is current, and reports the
// transition. It reports whether it did.
func (b *Breaker) swap(from, to *episode, reason string, err error) bool {
	if !b.ep.CompareAndSwap(from, to) {
		return false
	}
	if to.state == StateOpen {
		b.trips.Add(1)
	}
	if b.s.hooks {
		tr := Transition{Name: b.name, Key: b.key, From: from.state, To: to.state, At: b.clk.at(to.since), Reason: reason, Err: err}
		if to.state == StateOpen {
			tr.OpenUntil = b.clk.at(to.until)
		}
		b.notes.publish(b.s, to.gen, tr, from.state == to.state)
	}
	return true
}

// current returns the current episode after applying the transitions that
// are due by the real clock: the end of the open period and expired
// probes.
func (b *Breaker) current() *episode {
	for {
		ep := b.ep.Load()
		switch ep.state {
		case StateOpen:
			if now := b.clk.real(); now >= ep.until {
				b.halfOpen(ep, now)
				continue
			}
		case StateHalfOpen:
			if b.expireProbes(ep, b.clk.real()) {
				continue
			}
		}
		return ep
	}
}

// State returns the breaker's state. An open breaker whose open period has
// passed reports (and moves to) half-open, with or without traffic.
func (b *Breaker) State() State { return b.current().state }

// ForceOpen holds the breaker open, rejecting every call with [ErrOpen],
// until [Breaker.Reset] or [Breaker.ForceClosed]. Use it to take a
// dependency out of service by hand.
func (b *Breaker) ForceOpen() { b.force(StateForcedOpen, reasonForceOpen) }

// ForceClosed holds the breaker closed: every call goes through and is
// counted, but no policy trips it, until [Breaker.Reset] or
// [Breaker.ForceOpen]. Use it to keep traffic flowing while a breaker is
// being tuned.
func (b *Breaker) ForceClosed() { b.force(StateForcedClosed, reasonForceClosed) }

// Reset returns the breaker to the closed state with empty counts and no
// backoff, from any state.
func (b *Breaker) Reset() { b.force(StateClosed, reasonReset) }

func (b *Breaker) force(state State, reason string) {
	for {
		from := b.ep.Load()
		if from.state == state && state != StateClosed {
			return
		}
		now := b.clk.real()
		var to *episode
		if state == StateForcedOpen {
			to = b.newOpen(from.gen+1, state, 0, now, 0)
		} else {
			to = b.newClosed(from.gen+1, state, now)
		}
		if b.swap(from, to, reason, nil) {
			return
		}
	}
}

// Snapshot is a consistent-enough view of a breaker for metrics and
// debugging: each field is read atomically, not all of them at once.
type Snapshot struct {
	// Name is the breaker's [Config.Name].
	Name string
	// State is the current state.
	State State
	// Since is when the breaker entered State.
	Since time.Time
	// RetryAt is when an open breaker will admit a probe (zero otherwise).
	RetryAt time.Time
	// Calls, Failures and Slow count the outcomes in the current window
	// (since the breaker last closed, when there is no window). They are
	// zero unless the breaker is closed or forced closed.
	Calls, Failures, Slow uint64
	// FailureRate and SlowCallRate are Failures/Calls and Slow/Calls, or 0
	// when Calls is 0.
	FailureRate, SlowCallRate float64
	// ConsecutiveFailures is the current run of failures.
	ConsecutiveFailures uint64
	// Probes is the number of half-open probes in flight.
	Probes int
	// Trips counts how many times the breaker has opened since New.
	Trips uint64
	// Rejected counts the calls rejected since New.
	Rejected uint64
}

// Snapshot returns the breaker's state and counts, applying due
// transitions like [Breaker.State].
func (b *Breaker) Snapshot() Snapshot {
	ep := b.current()
	s := Snapshot{
		Name:     b.name,
		State:    ep.state,
		Since:    b.clk.at(ep.since),
		Trips:    b.trips.Load(),
		Rejected: b.rejected.Load(),
	}
	var t tally
	switch {
	case ep.state == StateOpen:
		s.RetryAt = b.clk.at(ep.until)
	case ep.state == StateHalfOpen:
		for i := range ep.probes {
			if ep.probes[i].Load() != nil {
				s.Probes++
			}
		}
	case ep.cw != nil:
		t = ep.cw.tally()
	case ep.tw != nil:
		t = ep.tw.tally(b.clk.coarse())
	default:
		t = tally{calls: ep.calls.Load(), failures: ep.failures.Load()}
	}
	s.Calls, s.Failures, s.Slow = t.calls, t.failures, t.slow
	s.ConsecutiveFailures = ep.consec.Load()
	if t.calls > 0 {
		s.FailureRate = float64(t.failures) / float64(t.calls)
		s.SlowCallRate = float64(t.slow) / float64(t.calls)
	}
	return s
}
