package pubsub

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero fields of [MemoryConfig].
const (
	DefaultDedupWindow = 2 * time.Minute
	DefaultDedupMax    = 100_000
)

// MemoryConfig configures a [MemoryBroker]. The zero value is valid:
// publish deduplication over two minutes (at most 100,000 IDs per topic),
// no retention and no message size limit.
type MemoryConfig struct {
	// DedupWindow is how long a published message ID is remembered per
	// topic: republishing the same ID to the same topic within the window
	// is accepted but delivered only once. 0 means [DefaultDedupWindow];
	// negative disables deduplication. Messages published with an empty
	// ID get a fresh one and are never deduplicated.
	DedupWindow time.Duration

	// DedupMax bounds the IDs remembered per topic (0 means
	// [DefaultDedupMax]): the most recent DedupMax/2 IDs or more are
	// always remembered, if within the window; older ones may be
	// forgotten early.
	DedupMax int

	// Retention is the number of messages kept per topic for replay by
	// new subscriptions (see [DeliverAll]); 0 keeps none, so a message
	// published to a topic without subscriptions is gone.
	Retention int

	// RetentionAge, if positive, also drops retained messages older than
	// this.
	RetentionAge time.Duration

	// MaxMessageSize, if positive, limits a message's size: payload,
	// key, ID and headers, in bytes. Larger messages are refused with
	// [ErrMessageTooLarge].
	MaxMessageSize int

	// Logger receives failures the broker handles itself, such as a
	// dead-letter publish that must be retried. Nil discards.
	Logger *slog.Logger
}

// BrokerStats are the counters of a [MemoryBroker].
type BrokerStats struct {
	Topics        int    // topics published to or retained
	Subscriptions int    // live subscriptions and consumer groups
	Published     uint64 // messages accepted, without duplicates
	Duplicates    uint64 // messages accepted but not delivered, as duplicates
}

// MemoryBroker is the in-memory reference implementation of [Publisher]
// and [Subscriber]. It behaves as a production broker does (ordered,
// bounded, acknowledged, at-least-once, with consumer groups, redelivery,
// dead letters, deduplication and replay) so code tested against it
// behaves the same against a real one; adapters must match its semantics,
// which [pubsubtest.Run] checks. It does not survive a process crash.
//
// Each subscription owns its Concurrency goroutines and nothing else runs
// per message: goroutines grow with subscriptions, never with messages.
//
// A MemoryBroker is safe for concurrent use. Create it with
// [NewMemoryBroker] and stop it with [MemoryBroker.Shutdown] or
// [MemoryBroker.Close].
type MemoryBroker struct {
	cfg      MemoryConfig
	log      *slog.Logger
	epoch    time.Time     // for monotonic dedup times
	done     chan struct{} // closed when the broker closes
	finished chan struct{} // closed when the shutdown has completed
	closed   atomic.Bool
	seq      atomic.Uint64
	stats    struct{ published, duplicates atomic.Uint64 }

	mu        sync.RWMutex
	topics    map[string]*topic
	consumers []*consumer
	groups    map[string]*consumer
	nextName  int
	nextID    uint64 // consumer ids, increasing: the lock order
}

var (
	_ Publisher    = (*MemoryBroker)(nil)
	_ Subscriber   = (*MemoryBroker)(nil)
	_ Subscription = (*member)(nil)
)

// NewMemoryBroker returns a broker configured by cfg, or a [*ConfigError]
// when a field is invalid.
func NewMemoryBroker(cfg MemoryConfig) (*MemoryBroker, error) {
	switch {
	case cfg.DedupMax < 0:
		return nil, &ConfigError{"MemoryConfig.DedupMax", "negative"}
	case cfg.Retention < 0:
		return nil, &ConfigError{"MemoryConfig.Retention", "negative"}
	case cfg.RetentionAge < 0:
		return nil, &ConfigError{"MemoryConfig.RetentionAge", "negative"}
	case cfg.MaxMessageSize < 0:
		return nil, &ConfigError{"MemoryConfig.MaxMessageSize", "negative"}
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = DefaultDedupWindow
	}
	if cfg.DedupMax == 0 {
		cfg.DedupMax = DefaultDedupMax
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &MemoryBroker{
		cfg:      cfg,
		log:      log,
		epoch:    time.Now(),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
		topics:   make(map[string]*topic),
		groups:   make(map[string]*consumer),
	}, nil
}

// now is the broker's monotonic clock: nanoseconds since it started.
func (b *MemoryBroker) now() int64 { return int64(time.Since(b.epoch)) }

// wall converts a broker time to wall-clock time.
func (b *MemoryBroker) wall(t int64) time.Time { return b.epoch.Add(time.Duration(t)) }

// Stats returns the broker's counters.
func (b *MemoryBroker) Stats() BrokerStats {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return BrokerStats{
		Topics:        len(b.topics),
		Subscriptions: len(b.consumers),
		Published:     b.stats.published.Load(),
		Duplicates:    b.stats.duplicates.Load(),
	}
}

// Publish implements [Publisher]. Messages to one topic are accepted one
// batch at a time, so concurrent publishers to a topic are serialized and
// every subscription observes the same order. With [OverflowBlock] it
// waits, honouring ctx, until every matching subscription has room for the
// message, so a message is delivered to all of them or (on error) to none.
func (b *MemoryBroker) Publish(ctx context.Context, topicName string, msgs ...*Message) error {
	if b.closed.Load() {
		return ErrClosed
	}
	for _, m := range msgs {
		if m == nil {
			return ErrNilMessage
		}
		if max := b.cfg.MaxMessageSize; max > 0 && messageSize(m) > max {
			return fmt.Errorf("%w: message %q is %d bytes, limit %d", ErrMessageTooLarge, m.ID, messageSize(m), max)
		}
	}
	t, err := b.topicFor(topicName)
	if err != nil {
		return err
	}
	if err := t.acquire(ctx, b.done); err != nil {
		return err
	}
	defer t.release()
	if b.closed.Load() {
		return ErrClosed
	}
	for i, m := range msgs {
		if err := b.publishLocked(ctx, t, m); err != nil {
			if i > 0 {
				return &PublishError{Published: i, Err: err}
			}
			return err
		}
	}
	return nil
}

func messageSize(m *Message) int {
	n := len(m.Payload) + len(m.Key) + len(m.ID)
	for k, v := range m.Headers {
		n += len(k) + len(v)
	}
	return n
}

// publishLocked delivers one message; t.lock is held.
func (b *MemoryBroker) publishLocked(ctx context.Context, t *topic, m *Message) error {
	now := time.Now()
	mono := int64(now.Sub(b.epoch))
	dedup := b.cfg.DedupWindow > 0 && m.ID != ""
	var lo, hi uint64
	if dedup {
		if lo, hi = idHash(m.ID); t.dedup.seen(lo, hi, mono, b.cfg.DedupWindow) {
			b.stats.duplicates.Add(1)
			return nil
		}
	}
	// One immutable copy is shared by every subscription; each delivery
	// gets its own copy of the struct.
	cp := new(Message)
	*cp = *m
	cp.Topic, cp.PublishedAt, cp.Attempt = t.name, now, 0
	if cp.ID == "" {
		cp.ID = NewID()
	}
	InjectHeaders(ctx, cp)
	cp.Seq = b.seq.Add(1)
	if err := deliver(ctx, t.live(), cp, mono, b.done); err != nil {
		return err
	}
	if dedup {
		t.dedup.remember(lo, hi, mono, b.cfg.DedupWindow, b.cfg.DedupMax)
	}
	if b.cfg.Retention > 0 {
		t.retain(cp, b.cfg.Retention, mono, b.cfg.RetentionAge)
	}
	b.stats.published.Add(1)
	return nil
}

// deliver hands m to every subscription in subs (sorted by id) at once,
// holding all their locks, so that it reaches all of them or, on error,
// none. A full OverflowBlock subscription makes it wait, honouring ctx,
// and start over.
func deliver(ctx context.Context, subs []*consumer, m *Message, now int64, done <-chan struct{}) error {
	for {
		for _, c := range subs {
			c.mu.Lock()
		}
		var wait <-chan struct{}
		var full *consumer
		for _, c := range subs {
			if c.closed || c.room() {
				continue
			}
			if c.cfg.Overflow == OverflowBlock {
				wait, full = c.space(), c
				break
			}
			if c.cfg.Overflow == OverflowError {
				c.stats.Rejected++
				full = c
				break
			}
		}
		if full == nil {
			for _, c := range subs {
				switch {
				case c.closed:
				case c.room():
					c.admit(m, now)
				case c.cfg.Overflow == OverflowDropOldest && c.dropOldest():
					c.admit(m, now)
				default:
					c.stats.Dropped++
				}
			}
		}
		for _, c := range subs {
			c.mu.Unlock()
		}
		switch {
		case full == nil:
			return nil
		case wait == nil:
			return &QueueFullError{Subscription: full.name}
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return fmt.Errorf("pubsub: waiting for room in subscription %q: %w", full.name, ctx.Err())
		case <-done:
			return ErrClosed
		}
	}
}

// topicFor returns the topic named name, creating it if name is valid.
func (b *MemoryBroker) topicFor(name string) (*topic, error) {
	b.mu.RLock()
	t := b.topics[name]
	b.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	if err := ValidateTopic(name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if t = b.topics[name]; t == nil {
		t = &topic{name: name, lock: make(chan struct{}, 1)}
		for _, c := range b.consumers {
			if Match(c.pattern, name) {
				t.subs = append(t.subs, c)
			}
		}
		b.topics[name] = t
	}
	return t, nil
}

// Subscribe implements [Subscriber].
func (b *MemoryBroker) Subscribe(ctx context.Context, pattern string, h Handler, cfg SubscribeConfig) (Subscription, error) {
	if err := ValidatePattern(pattern); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, ErrNilHandler
	}
	cfg, err := cfg.normalize(pattern)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pubsub: subscribe: %w", err)
	}

	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	if c := b.groups[cfg.Group]; cfg.Group != "" && c != nil {
		if c.pattern != pattern || !c.cfg.sameGroup(cfg) {
			b.mu.Unlock()
			return nil, fmt.Errorf("%w: group %q", ErrGroupMismatch, cfg.Group)
		}
		m := c.join(ctx, h, cfg.Concurrency)
		b.mu.Unlock()
		m.start(ctx)
		return m, nil
	}
	name := cfg.Group
	if name == "" {
		b.nextName++
		name = fmt.Sprintf("sub-%d", b.nextName)
	}
	b.nextID++
	c := newConsumer(b, b.nextID, name, pattern, cfg)
	m := c.join(ctx, h, cfg.Concurrency)
	b.consumers = append(b.consumers, c)
	if cfg.Group != "" {
		b.groups[cfg.Group] = c
	}
	var ts []*topic
	for tn, t := range b.topics {
		if Match(pattern, tn) {
			ts = append(ts, t)
		}
	}
	b.mu.Unlock()

	// Join the existing topics holding their publish locks, so the replay
	// and the live messages neither overlap nor leave a gap.
	slices.SortFunc(ts, func(x, y *topic) int { return cmp.Compare(x.name, y.name) })
	for i, t := range ts {
		if err := t.acquire(ctx, b.done); err != nil {
			for _, t := range ts[:i] {
				t.release()
			}
			m.start(ctx)
			_ = m.Close()
			return nil, err
		}
	}
	var replay []*Message
	now := b.now()
	for _, t := range ts {
		i, _ := slices.BinarySearchFunc(t.subs, c.id, func(x *consumer, id uint64) int { return cmp.Compare(x.id, id) })
		t.subs = slices.Insert(t.subs, i, c)
		replay = t.replay(replay, cfg, now, b.cfg.RetentionAge)
	}
	if len(replay) > 0 {
		slices.SortFunc(replay, func(x, y *Message) int { return cmp.Compare(x.Seq, y.Seq) })
		c.mu.Lock()
		for _, m := range replay {
			c.admit(m, now)
		}
		c.mu.Unlock()
	}
	for _, t := range ts {
		t.release()
	}
	m.start(ctx)
	return m, nil
}

// Shutdown closes the broker gracefully: Publish and Subscribe return
// [ErrClosed] from now on, publishes in progress finish or fail, and every
// subscription shuts down as [Subscription.Shutdown] describes, in
// parallel, with handlers in flight finishing with live contexts until ctx
// ends. It returns an [*UndeliveredError] listing every message accepted
// but not acknowledged or dead-lettered, so that delivered plus undelivered
// accounts for every accepted message. Only the first call does the work;
// later calls wait for it and return nil.
func (b *MemoryBroker) Shutdown(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		<-b.finished
		return nil
	}
	defer close(b.finished)
	close(b.done)
	b.mu.RLock()
	ts := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		ts = append(ts, t)
	}
	b.mu.RUnlock()
	for _, t := range ts { // wait for publishes in progress
		t.lock <- struct{}{}
		t.release()
	}
	b.mu.RLock()
	var ms []*member
	for _, c := range b.consumers {
		c.mu.Lock()
		ms = append(ms, c.members...)
		c.mu.Unlock()
	}
	b.mu.RUnlock()
	for _, m := range ms {
		m.stop()
	}
	var lost []Undelivered
	for _, m := range ms {
		if ue, ok := m.Shutdown(ctx).(*UndeliveredError); ok {
			lost = append(lost, ue.Messages...)
		}
	}
	if len(lost) > 0 {
		return &UndeliveredError{Messages: lost}
	}
	return nil
}

// Close is Shutdown with an already-ended context: handlers in flight
// have their contexts cancelled and Close waits for them to return.
func (b *MemoryBroker) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return b.Shutdown(ctx)
}

// topic is the per-topic state; everything in it is guarded by lock, a
// one-slot semaphore that waiting publishers can abandon when their
// context ends.
type topic struct {
	name string
	lock chan struct{}
	subs []*consumer

	dedup dedupSet

	retained []retained // ring
	rHead    int
	rLen     int
}

type retained struct {
	m  *Message
	at int64 // nanoseconds since the broker started
}

func (t *topic) acquire(ctx context.Context, done <-chan struct{}) error {
	select {
	case t.lock <- struct{}{}:
		return nil
	default:
	}
	select {
	case t.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pubsub: waiting for topic %q: %w", t.name, ctx.Err())
	case <-done:
		return ErrClosed
	}
}

func (t *topic) release() { <-t.lock }

// live returns the subscriptions, dropping closed ones.
func (t *topic) live() []*consumer {
	for _, c := range t.subs {
		if c.gone.Load() {
			t.subs = slices.DeleteFunc(t.subs, func(c *consumer) bool { return c.gone.Load() })
			break
		}
	}
	return t.subs
}

// dedupSet remembers recent message IDs of a topic in two generations of
// maps: new IDs go to cur; when cur holds max/2 IDs or is a window old,
// prev is dropped and cur becomes prev. Nothing is ever deleted one by
// one, which keeps the maps free of tombstones and lookups short. IDs are
// remembered as two independent 64-bit hashes, so the maps hold no
// pointers for the garbage collector to scan; two IDs collide with
// probability 2^-128.
type dedupSet struct {
	cur, prev map[uint64]dedupRec
	curStart  int64 // when cur was started, in broker time
}

type dedupRec struct {
	hi uint64 // the ID's second hash
	at int64  // when it was published, in broker time
}

var dedupSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func idHash(id string) (lo, hi uint64) {
	return maphash.String(dedupSeeds[0], id), maphash.String(dedupSeeds[1], id)
}

// seen reports whether the ID hashed to lo, hi was published within window.
func (d *dedupSet) seen(lo, hi uint64, now int64, window time.Duration) bool {
	for _, m := range [2]map[uint64]dedupRec{d.cur, d.prev} {
		if r, ok := m[lo]; ok && r.hi == hi && now-r.at < int64(window) {
			return true
		}
	}
	return false
}

// remember records an ID published at now.
func (d *dedupSet) remember(lo, hi uint64, now int64, window time.Duration, max int) {
	if d.cur == nil || len(d.cur) >= max/2 || now-d.curStart >= int64(window) {
		old := d.prev
		d.prev, d.cur, d.curStart = d.cur, old, now
		if d.cur == nil {
			d.cur = make(map[uint64]dedupRec)
		}
		clear(d.cur)
	}
	d.cur[lo] = dedupRec{hi, now}
}

func (t *topic) retain(m *Message, keep int, now int64, maxAge time.Duration) {
	if t.retained == nil {
		t.retained = make([]retained, keep)
	}
	r := retained{m, now}
	if t.rLen == keep {
		t.retained[t.rHead] = r
		t.rHead = (t.rHead + 1) % keep
	} else {
		t.retained[(t.rHead+t.rLen)%keep] = r
		t.rLen++
	}
	t.expire(now, maxAge)
}

func (t *topic) expire(now int64, maxAge time.Duration) {
	if maxAge <= 0 {
		return
	}
	for t.rLen > 0 && now-t.retained[t.rHead].at > int64(maxAge) {
		t.retained[t.rHead] = retained{}
		t.rHead = (t.rHead + 1) % len(t.retained)
		t.rLen--
	}
}

// replay appends the retained messages a new subscription with cfg
// starts from.
func (t *topic) replay(dst []*Message, cfg SubscribeConfig, now int64, maxAge time.Duration) []*Message {
	if cfg.Deliver == DeliverNew || t.rLen == 0 {
		return dst
	}
	t.expire(now, maxAge)
	for i := range t.rLen {
		m := t.retained[(t.rHead+i)%len(t.retained)].m
		switch {
		case cfg.Deliver == DeliverFromSeq && m.Seq < cfg.StartSeq:
			continue
		case cfg.Deliver == DeliverFromTime && m.PublishedAt.Before(cfg.StartTime):
			continue
		}
		dst = append(dst, m)
	}
	return dst
}
