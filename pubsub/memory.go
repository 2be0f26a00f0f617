package pubsub

import (
	"cmp"
	"context"
	"fmt"
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

	// DedupMax bounds the IDs remembered per topic; beyond it the oldest
	// are forgotten early (0 means [DefaultDedupMax]).
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
		done:     make(chan struct{}),
		finished: make(chan struct{}),
		topics:   make(map[string]*topic),
		groups:   make(map[string]*consumer),
	}, nil
}

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
	if err := ValidateTopic(topicName); err != nil {
		return err
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
	cp := *m
	cp.Topic, cp.PublishedAt, cp.Attempt = t.name, now, 0
	dedup := b.cfg.DedupWindow > 0 && cp.ID != ""
	if cp.ID == "" {
		cp.ID = NewID()
	} else if dedup && t.seen(cp.ID, now, b.cfg.DedupWindow, b.cfg.DedupMax) {
		b.stats.duplicates.Add(1)
		return nil
	}
	InjectHeaders(ctx, &cp)
	cp.Seq = b.seq.Add(1)
	subs := t.live()
	if len(subs) == 1 {
		if err := subs[0].offer(ctx, &cp, b.done); err != nil {
			return err
		}
	} else {
		// Reserve room in every subscription that blocks or refuses
		// before delivering to any, so the message reaches all or none.
		for i, c := range subs {
			if !c.reserves() {
				continue
			}
			if err := c.reserve(ctx, b.done); err != nil {
				for _, r := range subs[:i] {
					if r.reserves() {
						r.unreserve()
					}
				}
				return err
			}
		}
		for _, c := range subs {
			c.enqueue(&cp, c.reserves())
		}
	}
	if dedup {
		t.remember(cp.ID, now)
	}
	if b.cfg.Retention > 0 {
		t.retain(&cp, b.cfg.Retention, b.cfg.RetentionAge)
	}
	b.stats.published.Add(1)
	return nil
}

func (b *MemoryBroker) topicFor(name string) (*topic, error) {
	b.mu.RLock()
	t := b.topics[name]
	b.mu.RUnlock()
	if t != nil {
		return t, nil
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
	c := newConsumer(b, name, pattern, cfg)
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
	var replay []Message
	for _, t := range ts {
		t.subs = append(t.subs, c)
		replay = t.replay(replay, cfg, time.Now(), b.cfg.RetentionAge)
	}
	if len(replay) > 0 {
		slices.SortFunc(replay, func(x, y Message) int { return cmp.Compare(x.Seq, y.Seq) })
		c.mu.Lock()
		for i := range replay {
			c.admit(&replay[i])
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

	dedup  map[string]time.Time
	dedupQ []dedupRec // in publish order
	dqHead int

	retained []Message // ring
	rHead    int
	rLen     int
}

type dedupRec struct {
	id string
	at time.Time
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

// seen reports whether id was published within window, forgetting
// older IDs.
func (t *topic) seen(id string, now time.Time, window time.Duration, max int) bool {
	for t.dqHead < len(t.dedupQ) {
		r := t.dedupQ[t.dqHead]
		if now.Sub(r.at) < window && len(t.dedupQ)-t.dqHead <= max {
			break
		}
		if at, ok := t.dedup[r.id]; ok && at.Equal(r.at) {
			delete(t.dedup, r.id)
		}
		t.dedupQ[t.dqHead] = dedupRec{}
		t.dqHead++
	}
	if t.dqHead > 1024 && t.dqHead > len(t.dedupQ)/2 {
		n := copy(t.dedupQ, t.dedupQ[t.dqHead:])
		clear(t.dedupQ[n:])
		t.dedupQ = t.dedupQ[:n]
		t.dqHead = 0
	}
	_, ok := t.dedup[id]
	return ok
}

func (t *topic) remember(id string, now time.Time) {
	if t.dedup == nil {
		t.dedup = make(map[string]time.Time)
	}
	t.dedup[id] = now
	t.dedupQ = append(t.dedupQ, dedupRec{id, now}) // bounded by seen
}

func (t *topic) retain(m *Message, keep int, maxAge time.Duration) {
	if keep == 0 {
		return
	}
	if t.retained == nil {
		t.retained = make([]Message, keep)
	}
	cp := *m
	cp.Attempt = 0
	if t.rLen == keep {
		t.retained[t.rHead] = cp
		t.rHead = (t.rHead + 1) % keep
	} else {
		t.retained[(t.rHead+t.rLen)%keep] = cp
		t.rLen++
	}
	t.expire(m.PublishedAt, maxAge)
}

func (t *topic) expire(now time.Time, maxAge time.Duration) {
	if maxAge <= 0 {
		return
	}
	for t.rLen > 0 && now.Sub(t.retained[t.rHead].PublishedAt) > maxAge {
		t.retained[t.rHead] = Message{}
		t.rHead = (t.rHead + 1) % len(t.retained)
		t.rLen--
	}
}

// replay appends the retained messages a new subscription with cfg
// starts from.
func (t *topic) replay(dst []Message, cfg SubscribeConfig, now time.Time, maxAge time.Duration) []Message {
	if cfg.Deliver == DeliverNew || t.rLen == 0 {
		return dst
	}
	t.expire(now, maxAge)
	for i := range t.rLen {
		m := t.retained[(t.rHead+i)%len(t.retained)]
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
