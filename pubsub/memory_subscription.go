package pubsub

import (
	"context"
	"errors"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// normalize validates cfg for a subscription to pattern and fills in the
// defaults.
func (cfg SubscribeConfig) normalize(pattern string) (SubscribeConfig, error) {
	bad := func(field, reason string) (SubscribeConfig, error) {
		return cfg, &ConfigError{Field: "SubscribeConfig." + field, Reason: reason}
	}
	switch {
	case cfg.Concurrency < 0:
		return bad("Concurrency", "negative")
	case cfg.QueueSize < 0:
		return bad("QueueSize", "negative")
	case cfg.Overflow < OverflowBlock || cfg.Overflow > OverflowError:
		return bad("Overflow", "unknown policy "+strconv.Itoa(int(cfg.Overflow)))
	case cfg.AckWait < 0:
		return bad("AckWait", "negative")
	case cfg.Deliver < DeliverNew || cfg.Deliver > DeliverFromTime:
		return bad("Deliver", "unknown policy "+strconv.Itoa(int(cfg.Deliver)))
	}
	for _, d := range cfg.Backoff {
		if d < 0 {
			return bad("Backoff", "negative delay "+d.String())
		}
	}
	if n := len(cfg.Backoff); cfg.MaxDeliver < 0 && n > 0 && cfg.Backoff[n-1] == 0 {
		return bad("Backoff", "last delay is zero with unlimited MaxDeliver: an immediate redelivery loop")
	}
	if t := cfg.DeadLetterTopic; t != "" {
		if err := ValidateTopic(t); err != nil {
			return bad("DeadLetterTopic", err.Error())
		}
		if Match(pattern, t) {
			return bad("DeadLetterTopic", "matched by the subscription's own pattern "+strconv.Quote(pattern))
		}
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = DefaultMaxDeliver
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = DefaultBackoff
	}
	cfg.Backoff = slices.Clone(cfg.Backoff)
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxExtension == 0 {
		cfg.MaxExtension = DefaultMaxExtension
	}
	return cfg, nil
}

// sameGroup reports whether a member with settings o may join a group
// created with c: everything but Concurrency must match.
func (c SubscribeConfig) sameGroup(o SubscribeConfig) bool {
	return c.QueueSize == o.QueueSize && c.Overflow == o.Overflow && c.MaxDeliver == o.MaxDeliver &&
		slices.Equal(c.Backoff, o.Backoff) && c.AckWait == o.AckWait && c.MaxExtension == o.MaxExtension &&
		c.DeadLetterTopic == o.DeadLetterTopic && c.Deliver == o.Deliver && c.StartSeq == o.StartSeq &&
		c.StartTime.Equal(o.StartTime)
}

const nilIdx int32 = -1

type entryState uint8

const (
	stFree     entryState = iota
	stBlocked             // behind an earlier message with the same key
	stReady               // in the ready list
	stInflight            // held by a worker
	stDelayed             // in the delay heap, waiting for redelivery
)

// fate says what dispatching an entry does.
type fate uint8

const (
	fateDeliver    fate = iota // call the handler
	fateMaxDeliver             // publish to the dead-letter topic: attempts exhausted
	fatePermanent              // publish to the dead-letter topic: permanent failure
)

// entry is one message held by a consumer. Entries live in a slab and
// are linked by index into the arrival list, the ready list and their
// key's chain.
type entry struct {
	m            *Message // shared by every subscription: read-only
	attempt      int      // deliveries so far
	first, last  int64    // first and last delivery, in broker time
	due          int64    // redelivery time, when delayed, in broker time
	err          error    // last handler error
	gen          uint32   // bumped on every dispatch and expiry
	state        entryState
	fate         fate
	ordered      bool
	prev, next   int32 // arrival list
	rprev, rnext int32 // ready list
	knext        int32 // key chain
	hidx         int32 // index in the delay heap
}

// chain lists the held messages of one ordering key, oldest first. Only
// the head is ever ready, in flight or delayed.
type chain struct{ head, tail int32 }

// consumer is the queue of a subscription or a consumer group, shared by
// its members. Everything below mu is guarded by it.
type consumer struct {
	b       *MemoryBroker
	id      uint64 // lock order among consumers
	name    string
	pattern string
	cfg     SubscribeConfig
	keyed   bool          // per-key ordering rather than total order
	limit   time.Duration // a delivery expires after this; 0 never
	gone    atomic.Bool   // closed; read by publishers without mu

	mu           sync.Mutex
	closed       bool
	slots        []entry
	free         []int32
	count        int // entries held
	inflight     int
	ahead, atail int32
	rhead, rtail int32
	single       chain            // the one chain, when not keyed
	chains       map[string]chain // per key, when keyed
	delayed      []int32          // min-heap on due
	delayTimer   *time.Timer
	delayAt      int64 // when delayTimer fires, in broker time; 0 if stopped
	watchTimer   *time.Timer
	watchArmed   bool
	idle         []*worker
	members      []*member
	spaceCh      chan struct{} // closed when room appears; nil if unused
	stats        SubscriptionStats
}

func newConsumer(b *MemoryBroker, id uint64, name, pattern string, cfg SubscribeConfig) *consumer {
	c := &consumer{
		b: b, id: id, name: name, pattern: pattern, cfg: cfg,
		keyed: cfg.Group != "" || cfg.Concurrency > 1,
		ahead: nilIdx, atail: nilIdx, rhead: nilIdx, rtail: nilIdx,
		single: chain{nilIdx, nilIdx},
	}
	if cfg.MaxExtension > 0 {
		c.limit = cfg.MaxExtension + cfg.AckWait
	}
	if c.keyed {
		c.chains = make(map[string]chain)
	}
	c.delayTimer = time.AfterFunc(time.Hour, c.promote)
	c.delayTimer.Stop()
	c.watchTimer = time.AfterFunc(time.Hour, c.watchdog)
	c.watchTimer.Stop()
	return c
}

func (c *consumer) room() bool { return c.count < c.cfg.QueueSize }

func (c *consumer) space() <-chan struct{} {
	if c.spaceCh == nil {
		c.spaceCh = make(chan struct{})
	}
	return c.spaceCh
}

func (c *consumer) signalSpace() {
	if c.spaceCh != nil {
		close(c.spaceCh)
		c.spaceCh = nil
	}
}

func (c *consumer) dropOldest() bool {
	for i := c.ahead; i != nilIdx; i = c.slots[i].next {
		if c.slots[i].state != stInflight {
			c.remove(i)
			c.stats.Dropped++
			return true
		}
	}
	return false
}

func (c *consumer) chainKey(m *Message) string {
	if !c.keyed {
		return ""
	}
	return m.Key
}

func (c *consumer) chain(key string) chain {
	if !c.keyed {
		return c.single
	}
	if ch, ok := c.chains[key]; ok {
		return ch
	}
	return chain{nilIdx, nilIdx}
}

func (c *consumer) setChain(key string, ch chain) {
	switch {
	case !c.keyed:
		c.single = ch
	case ch.head == nilIdx:
		delete(c.chains, key)
	default:
		c.chains[key] = ch
	}
}

// admit adds m to the queue; mu is held.
func (c *consumer) admit(m *Message, now int64) {
	var idx int32
	if n := len(c.free); n > 0 {
		idx = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		idx = int32(len(c.slots))
		c.slots = append(c.slots, entry{})
	}
	e := &c.slots[idx]
	*e = entry{
		m: m, state: stBlocked,
		prev: c.atail, next: nilIdx, rprev: nilIdx, rnext: nilIdx, knext: nilIdx, hidx: -1,
		ordered: !c.keyed || m.Key != "",
	}
	if c.atail != nilIdx {
		c.slots[c.atail].next = idx
	} else {
		c.ahead = idx
	}
	c.atail = idx
	c.count++
	if !e.ordered {
		c.makeReady(idx, false)
		return
	}
	key := c.chainKey(m)
	ch := c.chain(key)
	if ch.head == nilIdx {
		c.setChain(key, chain{idx, idx})
		c.makeReady(idx, false)
		return
	}
	c.slots[ch.tail].knext = idx
	ch.tail = idx
	c.setChain(key, ch)
}

// remove forgets entry idx, which is not in flight, and unblocks the next
// message of its key.
func (c *consumer) remove(idx int32) {
	e := &c.slots[idx]
	switch e.state {
	case stReady:
		c.unready(idx)
	case stDelayed:
		c.heapRemove(idx)
	}
	if e.prev != nilIdx {
		c.slots[e.prev].next = e.next
	} else {
		c.ahead = e.next
	}
	if e.next != nilIdx {
		c.slots[e.next].prev = e.prev
	} else {
		c.atail = e.prev
	}
	if e.ordered {
		key := c.chainKey(e.m)
		ch := c.chain(key)
		if ch.head == idx {
			ch.head = e.knext
			if ch.head == nilIdx {
				ch.tail = nilIdx
			}
			c.setChain(key, ch)
			if ch.head != nilIdx {
				c.makeReady(ch.head, false)
			}
		} else {
			p := ch.head
			for c.slots[p].knext != idx {
				p = c.slots[p].knext
			}
			c.slots[p].knext = e.knext
			if ch.tail == idx {
				ch.tail = p
			}
			c.setChain(key, ch)
		}
	}
	c.slots[idx] = entry{}
	c.free = append(c.free, idx)
	c.count--
	c.signalSpace()
}

func (c *consumer) makeReady(idx int32, front bool) {
	e := &c.slots[idx]
	e.state = stReady
	if front {
		e.rprev, e.rnext = nilIdx, c.rhead
		if c.rhead != nilIdx {
			c.slots[c.rhead].rprev = idx
		} else {
			c.rtail = idx
		}
		c.rhead = idx
	} else {
		e.rprev, e.rnext = c.rtail, nilIdx
		if c.rtail != nilIdx {
			c.slots[c.rtail].rnext = idx
		} else {
			c.rhead = idx
		}
		c.rtail = idx
	}
	if n := len(c.idle); n > 0 {
		w := c.idle[n-1]
		c.idle = c.idle[:n-1]
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (c *consumer) unready(idx int32) {
	e := &c.slots[idx]
	if e.rprev != nilIdx {
		c.slots[e.rprev].rnext = e.rnext
	} else {
		c.rhead = e.rnext
	}
	if e.rnext != nilIdx {
		c.slots[e.rnext].rprev = e.rprev
	} else {
		c.rtail = e.rprev
	}
	e.rprev, e.rnext = nilIdx, nilIdx
}

// The delay heap: a binary min-heap of slot indices ordered by due.

func (c *consumer) heapLess(i, j int) bool {
	return c.slots[c.delayed[i]].due < c.slots[c.delayed[j]].due
}

func (c *consumer) heapSwap(i, j int) {
	h := c.delayed
	h[i], h[j] = h[j], h[i]
	c.slots[h[i]].hidx = int32(i)
	c.slots[h[j]].hidx = int32(j)
}

func (c *consumer) heapUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !c.heapLess(i, p) {
			return
		}
		c.heapSwap(i, p)
		i = p
	}
}

func (c *consumer) heapDown(i int) {
	n := len(c.delayed)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && c.heapLess(r, l) {
			m = r
		}
		if !c.heapLess(m, i) {
			return
		}
		c.heapSwap(i, m)
		i = m
	}
}

func (c *consumer) heapRemove(idx int32) {
	i := int(c.slots[idx].hidx)
	last := len(c.delayed) - 1
	if i != last {
		c.heapSwap(i, last)
	}
	c.delayed = c.delayed[:last]
	c.slots[idx].hidx = -1
	if i != last {
		c.heapDown(i)
		c.heapUp(i)
	}
}

// delay schedules idx for redelivery after d.
func (c *consumer) delay(idx int32, d time.Duration) {
	if d <= 0 {
		c.makeReady(idx, true)
		return
	}
	e := &c.slots[idx]
	e.state = stDelayed
	e.due = c.b.now() + int64(d)
	e.hidx = int32(len(c.delayed))
	c.delayed = append(c.delayed, idx)
	c.heapUp(int(e.hidx))
	if c.delayAt == 0 || e.due < c.delayAt {
		c.delayAt = e.due
		c.delayTimer.Reset(d)
	}
}

// promote runs on delayTimer: due messages become ready.
func (c *consumer) promote() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.delayAt = 0
	now := c.b.now()
	for len(c.delayed) > 0 {
		idx := c.delayed[0]
		if due := c.slots[idx].due; due > now {
			c.delayAt = due
			c.delayTimer.Reset(time.Duration(due - now))
			return
		}
		c.heapRemove(idx)
		c.makeReady(idx, true)
	}
}

func (c *consumer) backoff(attempt int) time.Duration {
	i := min(max(attempt-1, 0), len(c.cfg.Backoff)-1)
	return c.cfg.Backoff[i]
}

// fail applies a failed delivery of idx, which is no longer in flight.
func (c *consumer) fail(idx int32, err error) {
	e := &c.slots[idx]
	e.err = err
	if errors.Is(err, ErrPermanent) {
		c.giveUp(idx, fatePermanent)
		return
	}
	if c.cfg.MaxDeliver > 0 && e.attempt >= c.cfg.MaxDeliver {
		c.giveUp(idx, fateMaxDeliver)
		return
	}
	d := c.backoff(e.attempt)
	var re *RetryError
	if errors.As(err, &re) && re.After > 0 {
		d = re.After
	}
	c.delay(idx, d)
}

func (c *consumer) giveUp(idx int32, f fate) {
	if c.cfg.DeadLetterTopic == "" {
		c.stats.Terminated++
		c.remove(idx)
		return
	}
	c.slots[idx].fate = f
	c.makeReady(idx, true)
}

// watchdog runs on watchTimer: deliveries past their ack deadline expire.
func (c *consumer) watchdog() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchArmed = false
	if c.closed {
		return
	}
	now := c.b.now()
	next := time.Duration(-1)
	for _, m := range c.members {
		for _, w := range m.workers {
			if w.cur == nilIdx {
				continue
			}
			if ran := time.Duration(now - w.start); ran >= c.limit {
				c.expire(w)
			} else if left := c.limit - ran; next < 0 || left < next {
				next = left
			}
		}
	}
	if next >= 0 {
		c.watchArmed = true
		c.watchTimer.Reset(next)
	}
}

// expire abandons w's delivery: its context is cancelled and the message
// is redelivered; the handler's result will be ignored.
func (c *consumer) expire(w *worker) {
	idx := w.cur
	e := &c.slots[idx]
	e.gen++
	w.cur = nilIdx
	c.inflight--
	c.stats.Expired++
	w.cancel(ErrAckDeadline)
	if e.fate != fateDeliver {
		c.delay(idx, c.backoff(e.attempt))
		return
	}
	c.fail(idx, ErrAckDeadline)
}

// owns reports whether w still holds delivery gen of idx, and if so
// releases it. It also gives w a fresh context if its last one was
// cancelled by an expiry.
func (c *consumer) release(w *worker, idx int32, gen uint32) bool {
	if w.ctx.Err() != nil && w.m.ctx.Err() == nil {
		w.cancel(nil)
		w.ctx, w.cancel = context.WithCancelCause(w.m.ctx)
	}
	e := &c.slots[idx]
	if w.cur != idx || e.gen != gen || e.state != stInflight {
		return false
	}
	w.cur = nilIdx
	c.inflight--
	return true
}

// finish applies a handler's result; mu is held.
func (c *consumer) finish(w *worker, idx int32, gen uint32, err error) {
	if !c.release(w, idx, gen) {
		return
	}
	if err == nil {
		c.stats.Acked++
		c.remove(idx)
		return
	}
	c.fail(idx, err)
}

// finishDeadLetter applies the result of publishing to the dead-letter
// topic; mu is held. It returns the retry delay if the publish failed.
func (c *consumer) finishDeadLetter(w *worker, idx int32, gen uint32, err error) time.Duration {
	if !c.release(w, idx, gen) {
		return 0
	}
	if err == nil {
		c.stats.DeadLettered++
		c.remove(idx)
		return 0
	}
	d := c.backoff(c.slots[idx].attempt)
	c.delay(idx, d)
	return d
}

// deadLetter builds the dead-letter message for m.
func (c *consumer) deadLetter(m *Message, f fate, first, last time.Time, err error) *Message {
	// m.Attempt is the number of deliveries made.
	h := make(map[string]string, len(m.Headers)+8)
	maps.Copy(h, m.Headers)
	reason := "max-deliver"
	if f == fatePermanent {
		reason = "permanent"
	}
	h[HeaderDeadLetterID] = m.ID
	h[HeaderDeadLetterTopic] = m.Topic
	h[HeaderDeadLetterSubscription] = c.name
	h[HeaderDeadLetterReason] = reason
	if err != nil {
		h[HeaderDeadLetterError] = err.Error()
	}
	h[HeaderDeadLetterAttempts] = strconv.Itoa(m.Attempt)
	h[HeaderDeadLetterFirstDelivery] = first.UTC().Format(time.RFC3339Nano)
	h[HeaderDeadLetterLastDelivery] = last.UTC().Format(time.RFC3339Nano)
	// A deterministic ID makes a retried dead-letter publish idempotent.
	return &Message{ID: m.ID + "/" + c.name, Key: m.Key, Payload: m.Payload, Headers: h}
}

// closeLocked closes the consumer and returns what it still held.
func (c *consumer) closeLocked() []Undelivered {
	if c.closed {
		return nil
	}
	c.closed = true
	c.gone.Store(true)
	c.delayTimer.Stop()
	c.watchTimer.Stop()
	c.signalSpace()
	var lost []Undelivered
	for i := c.ahead; i != nilIdx; i = c.slots[i].next {
		e := &c.slots[i]
		m := *e.m
		m.Attempt = e.attempt
		lost = append(lost, Undelivered{Subscription: c.name, Message: &m, Err: e.err})
	}
	c.slots, c.free, c.delayed, c.chains, c.idle = nil, nil, nil, nil, nil
	c.ahead, c.atail, c.rhead, c.rtail = nilIdx, nilIdx, nilIdx, nilIdx
	c.count, c.inflight = 0, 0
	return lost
}

// join adds a member with n workers; b.mu is held.
func (c *consumer) join(ctx context.Context, h Handler, n int) *member {
	m := &member{c: c, h: h, done: make(chan struct{}), finished: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancelCause(ctx)
	for range n {
		w := &worker{m: m, wake: make(chan struct{}, 1), cur: nilIdx}
		w.ctx, w.cancel = context.WithCancelCause(m.ctx)
		m.workers = append(m.workers, w)
	}
	m.running = n
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	return m
}

// leave removes m, which has stopped; the last member closes the consumer.
func (c *consumer) leave(m *member) error {
	b := c.b
	b.mu.Lock()
	c.mu.Lock()
	c.members = slices.DeleteFunc(c.members, func(x *member) bool { return x == m })
	var lost []Undelivered
	if len(c.members) == 0 {
		b.consumers = slices.DeleteFunc(b.consumers, func(x *consumer) bool { return x == c })
		if b.groups[c.name] == c {
			delete(b.groups, c.name)
		}
		lost = c.closeLocked()
	}
	c.mu.Unlock()
	b.mu.Unlock()
	if len(lost) > 0 {
		return &UndeliveredError{Messages: lost}
	}
	return nil
}

// member is one Subscription: a set of workers on a consumer.
type member struct {
	c        *consumer
	h        Handler
	ctx      context.Context // parent of the handlers' contexts
	cancel   context.CancelCauseFunc
	workers  []*worker
	running  int           // workers not yet exited; under c.mu
	stopping bool          // under c.mu
	done     chan struct{} // closed when every worker has exited
	unwatch  func() bool   // stops the Subscribe context's AfterFunc; under c.mu
	shut     atomic.Bool
	finished chan struct{} // closed when Shutdown has completed
}

func (m *member) Name() string { return m.c.name }

func (m *member) Stats() SubscriptionStats {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.InFlight = c.inflight
	s.Pending = c.count - c.inflight
	return s
}

func (m *member) start(ctx context.Context) {
	c := m.c
	c.mu.Lock()
	m.unwatch = context.AfterFunc(ctx, func() {
		if err := m.Close(); err != nil {
			c.b.log.Warn("pubsub: subscription closed by its context", "subscription", c.name, "err", err)
		}
	})
	c.mu.Unlock()
	for _, w := range m.workers {
		go w.run()
	}
}

// stop makes the workers exit once idle.
func (m *member) stop() {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.stopping {
		return
	}
	m.stopping = true
	for _, w := range m.workers {
		c.idle = slices.DeleteFunc(c.idle, func(x *worker) bool { return x == w })
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (m *member) Shutdown(ctx context.Context) error {
	if !m.shut.CompareAndSwap(false, true) {
		<-m.finished
		return nil
	}
	defer close(m.finished)
	c := m.c
	c.mu.Lock()
	if m.unwatch != nil {
		m.unwatch()
	}
	c.mu.Unlock()
	m.stop()
	select {
	case <-m.done:
	case <-ctx.Done():
		m.cancel(ErrClosed)
		<-m.done
	}
	m.cancel(ErrClosed)
	return c.leave(m)
}

func (m *member) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return m.Shutdown(ctx)
}

// worker is one handler goroutine of a member.
type worker struct {
	m      *member
	wake   chan struct{}
	ctx    context.Context // the handler's parent context; under c.mu
	cancel context.CancelCauseFunc
	cur    int32 // slot in flight, or nilIdx; under c.mu
	start  int64 // when the delivery in flight started, in broker time
}

// delivery is a handler's context and message in one allocation.
type delivery struct {
	context.Context
	msg Message
}

func (d *delivery) Value(key any) any {
	if key == any(messageKey) {
		return &d.msg
	}
	return d.Context.Value(key)
}

// next returns the next ready entry, waiting for one, or nilIdx when w
// must exit. mu is held on entry and return.
func (c *consumer) next(w *worker) int32 {
	for yielded := false; ; {
		if w.m.stopping || c.closed || w.m.ctx.Err() != nil {
			return nilIdx
		}
		if idx := c.rhead; idx != nilIdx {
			c.unready(idx)
			return idx
		}
		if !yielded {
			// Let a publisher that is ready to run go first: the next
			// message then often arrives without a park and a wake-up.
			yielded = true
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
			continue
		}
		c.idle = append(c.idle, w)
		c.mu.Unlock()
		<-w.wake // from makeReady, or from stop, which Close and the end of the Subscribe context call
		c.mu.Lock()
	}
}

func (w *worker) run() {
	m := w.m
	c := m.c
	c.mu.Lock()
	for {
		idx := c.next(w)
		if idx == nilIdx {
			w.cancel(nil)
			if m.running--; m.running == 0 {
				close(m.done)
			}
			c.mu.Unlock()
			return
		}
		e := &c.slots[idx]
		e.state = stInflight
		e.gen++
		gen := e.gen
		c.inflight++
		now := c.b.now()
		f := e.fate
		if f == fateDeliver {
			e.attempt++
			c.stats.Delivered++
			if e.attempt > 1 {
				c.stats.Redelivered++
			}
			if e.attempt == 1 {
				e.first = now
			}
			e.last = now
		}
		msg, attempt, first, last, lastErr := e.m, e.attempt, e.first, e.last, e.err
		w.cur, w.start = idx, now
		if c.limit > 0 && !c.watchArmed {
			c.watchArmed = true
			c.watchTimer.Reset(c.limit)
		}
		ctx := w.ctx
		c.mu.Unlock()

		d := &delivery{Context: ctx, msg: *msg}
		d.msg.Attempt = attempt
		if f != fateDeliver {
			dl := c.deadLetter(&d.msg, f, c.b.wall(first), c.b.wall(last), lastErr)
			err := c.b.Publish(m.ctx, c.cfg.DeadLetterTopic, dl)
			c.mu.Lock()
			if retry := c.finishDeadLetter(w, idx, gen, err); retry > 0 {
				c.mu.Unlock()
				c.b.log.Warn("pubsub: dead-letter publish failed; will retry", "subscription", c.name,
					"id", msg.ID, "topic", c.cfg.DeadLetterTopic, "retry_in", retry, "err", err)
				c.mu.Lock()
			}
			continue
		}
		err := m.h(d, &d.msg)
		c.mu.Lock()
		c.finish(w, idx, gen, err)
	}
}
