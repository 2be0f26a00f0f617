package election

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Elector is what every algorithm in this package implements: a node
// takes part with Run, stands for leadership with Campaign, gives it up
// with Resign, and anyone can watch who leads with Leader and Observe.
//
// Every grant of leadership is a [Term] carrying a fencing token larger
// than the token of every earlier grant that this grant could have
// learned of (for the lease, sequence and Raft electors: every earlier
// grant), and a context that ends, on the leader's own monotonic clock,
// before any other node can be granted leadership, as long as clocks
// drift less than the elector's documented bound. Work guarded by the
// term's context stops in time; writes that arrive late anyway are
// refused by a [Fence] holding the token.
type Elector interface {
	// Run takes part in the election (answers, votes, renews, watches)
	// until ctx ends or the elector is closed. Campaign only makes
	// progress while Run runs. Run returns an error wrapping ctx.Err()
	// when ctx ends, [ErrClosed] after Close and [ErrRunning] if the
	// elector already runs. When Run returns, this node's term, if any,
	// ends.
	Run(ctx context.Context) error
	// Campaign stands for leadership and blocks until this node is
	// granted a term, which it returns, or ctx ends (an error wrapping
	// ctx.Err()), or the elector is closed ([ErrClosed]). If this node
	// already leads it returns the current term at once. The term
	// outlives ctx: it ends only by Resign, Close, Run returning, or a
	// loss of leadership. After a term ends the node stands again only
	// when Campaign is called again.
	Campaign(ctx context.Context) (*Term, error)
	// Resign ends this node's term, if it has one, with cause
	// [ErrResigned], and tells the others so that they can elect a
	// successor without waiting for a timeout. It returns nil if the
	// node does not lead, or an error wrapping ctx.Err() if telling the
	// others was cut short (the term has ended regardless).
	Resign(ctx context.Context) error
	// Leader returns the leader as this node currently knows it, and
	// false when it knows of none.
	Leader() (Leader, bool)
	// Observe returns a stream of leader changes, starting with the
	// current state.
	Observe() *Observation
	// Close stops Run, ends this node's term with cause [ErrClosed],
	// makes pending and later Campaign calls return [ErrClosed], ends
	// every Observation once drained, and releases what this node holds
	// (its lease or entry, as best it can). It is idempotent.
	Close() error
}

// Leader names a leader and the fencing token of its term.
type Leader struct {
	ID    string
	Token uint64
}

// Peer is another member of a Raft or Bully cluster.
type Peer struct {
	// ID is the member's elector ID (and, for Bully, its heartbeat ID).
	ID string
	// Addr is the address of the member's election transport.
	Addr string
}

// Event is one change of the leader as a node sees it. Leader.ID is ""
// when the node knows of no leader: the old one's lease ran out, it
// resigned, or it was declared failed.
type Event struct {
	Leader Leader
	// Self is true when Leader is this node.
	Self bool
	// At is when the node saw the change.
	At time.Time
	// Skipped counts the changes this observation lost, just before this
	// one, because its reader fell more than the buffer behind. The
	// latest state is never skipped.
	Skipped uint64
}

// Term is one grant of leadership to this node. It is safe for
// concurrent use.
//
// Its context breaks the usual rule against storing a context in a
// struct, as http.Request does, because it is the point: pass
// [Term.Context] to the work that only the leader may do.
type Term struct {
	leader Leader
	start  time.Time
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex // guards deadline and timer (owned by core.mu's holder)
	deadline time.Time
	timer    *time.Timer
}

// Token returns the fencing token of this term: pass it with every write
// to a fenced resource.
func (t *Term) Token() uint64 { return t.leader.Token }

// Leader returns this node's ID and token.
func (t *Term) Leader() Leader { return t.leader }

// Started returns when the term was granted.
func (t *Term) Started() time.Time { return t.start }

// Context returns a context that is cancelled when the term ends, before
// the leadership could have passed to anyone else (within the elector's
// clock-drift bound). [context.Cause] tells why: [ErrResigned],
// [ErrLeadershipLost], [ErrLeaseLost] or [ErrClosed].
func (t *Term) Context() context.Context { return t.ctx }

// Done is Context().Done().
func (t *Term) Done() <-chan struct{} { return t.ctx.Done() }

// Err returns nil while the term lasts, then why it ended.
func (t *Term) Err() error {
	if t.ctx.Err() == nil {
		return nil
	}
	return context.Cause(t.ctx)
}

// Deadline returns the local time at which the term ends unless it is
// extended (renewed lease, acknowledged heartbeats); zero if it has no
// deadline (Bully).
func (t *Term) Deadline() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deadline
}

// round is one generation of waiting campaigners: closed on a grant, a
// failure or Close.
type round struct {
	ch  chan struct{}
	err error
}

// core is what every elector shares: the local view of the leader, the
// observations, this node's own term, the pending campaigns and the Run
// lifecycle.
type core struct {
	id     string
	obsBuf int
	log    *slog.Logger
	kick   chan struct{} // size 1: campaigns or the term changed

	mu      sync.Mutex
	leader  Leader
	term    *Term
	want    int
	round   *round
	closed  bool
	obs     map[*Observation]struct{}
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newCore(id string, obsBuf int, log *slog.Logger) *core {
	if obsBuf <= 0 {
		obsBuf = DefaultObserveBuffer
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &core{id: id, obsBuf: obsBuf, log: log, kick: make(chan struct{}, 1),
		round: &round{ch: make(chan struct{})}, obs: map[*Observation]struct{}{}}
}

// DefaultObserveBuffer is an [Observation]'s queue length when the
// config leaves it at 0.
const DefaultObserveBuffer = 64

func (c *core) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// begin starts Run; end must be deferred.
func (c *core) begin(ctx context.Context) (context.Context, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClosed
	}
	if c.running {
		return nil, nil, ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c.running, c.cancel, c.done = true, cancel, done
	return ctx, func() {
		cancel()
		c.mu.Lock()
		c.running, c.cancel = false, nil
		closed := c.closed
		c.mu.Unlock()
		cause := fmt.Errorf("%w: Run stopped", ErrLeadershipLost)
		if closed {
			cause = ErrClosed
		}
		c.endTerm(nil, cause)
		close(done)
	}, nil
}

func (c *core) exit(ctx context.Context, who string) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return fmt.Errorf("election: %s %s: %w", who, c.id, ctx.Err())
}

// close marks the core closed, stops Run and waits for it, fails the
// campaigns, ends the term and the observations.
func (c *core) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	c.endTerm(nil, ErrClosed)
	c.mu.Lock()
	c.failLocked(ErrClosed)
	for o := range c.obs {
		o.end()
	}
	clear(c.obs)
	c.mu.Unlock()
}

func (c *core) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// campaign implements Elector.Campaign.
func (c *core) campaign(ctx context.Context) (*Term, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.term != nil {
		t := c.term
		c.mu.Unlock()
		return t, nil
	}
	c.want++
	r := c.round
	c.mu.Unlock()
	c.poke()
	defer func() {
		c.mu.Lock()
		c.want--
		c.mu.Unlock()
		c.poke()
	}()
	for {
		select {
		case <-r.ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("election: campaign: %w", ctx.Err())
		}
		c.mu.Lock()
		t := c.term
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if t != nil {
			c.mu.Unlock()
			return t, nil
		}
		if r.err != nil {
			c.mu.Unlock()
			return nil, r.err
		}
		r = c.round
		c.mu.Unlock()
	}
}

// wanting reports whether a Campaign is pending.
func (c *core) wanting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.want > 0 && !c.closed
}

// failLocked wakes the current campaigners with err (nil: re-check).
func (c *core) failLocked(err error) {
	r := c.round
	r.err = err
	close(r.ch)
	c.round = &round{ch: make(chan struct{})}
}

// failCampaigns makes the pending Campaign calls return err.
func (c *core) failCampaigns(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.want > 0 {
		c.failLocked(err)
	}
}

// current returns this node's live term, or nil.
func (c *core) current() *Term {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term
}

// grant makes this node the leader with token until deadline (zero: no
// deadline). It returns nil, granting nothing, if the deadline has
// passed, the core is closed or nobody campaigns.
func (c *core) grant(token uint64, deadline time.Time) *Term {
	now := time.Now()
	c.mu.Lock()
	if c.closed || c.want == 0 || c.term != nil || (!deadline.IsZero() && !now.Before(deadline)) {
		c.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	t := &Term{leader: Leader{ID: c.id, Token: token}, start: now, ctx: ctx, cancel: cancel, deadline: deadline}
	if !deadline.IsZero() {
		t.timer = time.AfterFunc(deadline.Sub(now), func() { c.expire(t) })
	}
	c.term = t
	c.setLeaderLocked(t.leader, now)
	c.failLocked(nil)
	c.mu.Unlock()
	c.log.Info("election: elected", "id", c.id, "token", token) // user code: not under c.mu
	return t
}

// extend moves t's deadline later (never earlier). It returns false if t
// is no longer this node's term.
func (c *core) extend(t *Term, deadline time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.term != t {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if deadline.After(t.deadline) {
		t.deadline = deadline
		if t.timer != nil {
			t.timer.Reset(time.Until(deadline))
		}
	}
	return true
}

func (c *core) expire(t *Term) {
	t.mu.Lock()
	early := time.Now().Before(t.deadline)
	t.mu.Unlock()
	if early {
		return // extended while the timer fired; Reset re-armed it
	}
	c.endTerm(t, ErrLeadershipLost)
}

// endTerm ends t (nil: whatever term is current) with cause. It returns
// the term it ended, or nil. Once the elector is closed the cause is
// ErrClosed, whatever step of Run's shutdown ends the term; a nil cause
// is ErrLeadershipLost.
func (c *core) endTerm(t *Term, cause error) *Term {
	c.mu.Lock()
	cur := c.term
	if cur == nil || (t != nil && t != cur) {
		c.mu.Unlock()
		return nil
	}
	switch {
	case c.closed:
		cause = ErrClosed
	case cause == nil:
		cause = fmt.Errorf("%w: Run stopped", ErrLeadershipLost)
	}
	c.term = nil
	cur.mu.Lock()
	if cur.timer != nil {
		cur.timer.Stop()
	}
	cur.mu.Unlock()
	cur.cancel(cause)
	if c.leader == cur.leader {
		c.setLeaderLocked(Leader{}, time.Now())
	}
	c.mu.Unlock()
	c.log.Info("election: term ended", "id", c.id, "token", cur.leader.Token, "cause", cause)
	c.poke()
	return cur
}

// setLeader records the leader as seen by this node. A leader other
// than this node's own live term is recorded as is; this node's own
// leadership is only recorded through grant.
func (c *core) setLeader(l Leader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.term != nil && l != c.term.leader {
		return // while we lead, our own term is what we report
	}
	c.setLeaderLocked(l, time.Now())
}

func (c *core) setLeaderLocked(l Leader, now time.Time) {
	if l == c.leader {
		return
	}
	c.leader = l
	ev := Event{Leader: l, Self: l.ID != "" && l.ID == c.id && c.term != nil && c.term.leader == l, At: now}
	for o := range c.obs {
		o.push(ev)
	}
}

func (c *core) leaderNow() (Leader, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader, c.leader.ID != ""
}

func (c *core) observe() *Observation {
	o := &Observation{c: c, limit: c.obsBuf, wake: make(chan struct{}, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.leader
	o.q = append(o.q, Event{Leader: l, Self: c.term != nil && c.term.leader == l, At: time.Now()})
	if c.closed {
		o.ended = true
		return o
	}
	c.obs[o] = struct{}{}
	return o
}

// Observation is a stream of leader changes as one node sees them,
// starting with the state when it was created. Changes are queued
// without blocking the elector; a reader that falls more than the
// elector's ObserveBuffer behind loses the oldest queued changes and is
// told how many in [Event].Skipped, but never the latest. It is safe for
// concurrent use.
type Observation struct {
	c     *core
	limit int
	wake  chan struct{} // size 1

	mu     sync.Mutex
	q      []Event
	closed bool
	ended  bool
}

// Next returns the next change, blocking until there is one. It returns
// an error wrapping ctx.Err() if ctx ends first and [ErrClosed] after
// [Observation.Close], or once the elector is closed and every queued
// change has been returned.
func (o *Observation) Next(ctx context.Context) (Event, error) {
	for {
		o.mu.Lock()
		switch {
		case o.closed:
			o.mu.Unlock()
			return Event{}, ErrClosed
		case len(o.q) > 0:
			ev := o.q[0]
			o.q[0] = Event{}
			o.q = o.q[1:]
			o.mu.Unlock()
			return ev, nil
		case o.ended:
			o.mu.Unlock()
			return Event{}, ErrClosed
		}
		o.mu.Unlock()
		select {
		case <-o.wake:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("election: observe: %w", ctx.Err())
		}
	}
}

// Close ends the observation: queued changes are discarded and Next
// returns [ErrClosed]. It is idempotent.
func (o *Observation) Close() error {
	o.c.mu.Lock()
	delete(o.c.obs, o)
	o.c.mu.Unlock()
	o.mu.Lock()
	o.closed, o.q = true, nil
	o.mu.Unlock()
	o.signal()
	return nil
}

func (o *Observation) push(ev Event) {
	o.mu.Lock()
	if len(o.q) >= o.limit {
		carry := o.q[0].Skipped + 1
		o.q = append(o.q[:0], o.q[1:]...)
		if len(o.q) > 0 {
			o.q[0].Skipped += carry
		} else {
			ev.Skipped += carry
		}
	}
	o.q = append(o.q, ev)
	o.mu.Unlock()
	o.signal()
}

func (o *Observation) end() {
	o.mu.Lock()
	o.ended = true
	o.mu.Unlock()
	o.signal()
}

func (o *Observation) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func checkID(field, id string) error {
	if id == "" {
		return configErr(field, "required")
	}
	if len(id) > MaxIDLen {
		return configErr(field, "%d bytes, at most %d", len(id), MaxIDLen)
	}
	return nil
}

// MaxIDLen bounds node IDs, keys and holder names.
const MaxIDLen = 255
