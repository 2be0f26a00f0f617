package pubsub

import (
	"context"
	"time"
)

// A Handler processes one delivered message. Its return value decides the
// message's fate:
//
//   - nil acknowledges it: it is done and never delivered again to this
//     subscription;
//   - an error made with [Permanent] terminates it: no redelivery, and it
//     goes to the dead-letter topic if the subscription has one;
//   - any other error asks for a redelivery after the next delay of the
//     subscription's backoff schedule (or the one given to [RetryAfter]),
//     until [SubscribeConfig.MaxDeliver] deliveries have failed, when it
//     goes to the dead-letter topic.
//
// ctx is cancelled when the delivery is abandoned (ack deadline passed,
// subscription closed); it carries the message ([MessageFromContext]) and
// its correlation ID and trace context, so messages published with it
// continue the chain. The handler must treat m's Payload and Headers as
// read-only and may keep m after returning.
type Handler func(ctx context.Context, m *Message) error

// Middleware wraps a Handler to add behaviour around it, as net/http
// middleware wraps an http.Handler.
type Middleware func(Handler) Handler

// A Publisher sends messages to topics.
type Publisher interface {
	// Publish sends msgs, in order, to topic, which must be a valid topic
	// (no wildcards; see [ValidateTopic]). It returns once every message
	// is accepted: handed to every subscription whose pattern matches
	// topic (and retained, if the backend retains), in an order each
	// subscription will observe. Publish copies each Message struct and
	// sets its copy's Topic, PublishedAt, Seq and, if empty, ID; the
	// correlation and trace context in ctx are added to its headers (see
	// [InjectHeaders]). Payload and Headers must not be modified after.
	//
	// It returns [ErrClosed] after the publisher is closed, a
	// [*TopicError] for an invalid topic, [ErrNilMessage],
	// [ErrMessageTooLarge], a [*QueueFullError], or an error wrapping
	// ctx.Err() when ctx ends while waiting for room. When some messages
	// of a batch were accepted before the failure the error is a
	// [*PublishError] saying how many. Safe for concurrent use.
	Publish(ctx context.Context, topic string, msgs ...*Message) error
}

// A Subscriber delivers messages to handlers.
type Subscriber interface {
	// Subscribe registers a subscription to the topics matching pattern
	// (see [ValidatePattern]) and starts delivering to h on goroutines the
	// subscription owns, Concurrency of them. Every message published
	// after Subscribe returns is delivered to the subscription (to one
	// member, in a consumer group).
	//
	// Delivery stops when ctx ends or the subscription is closed; ending
	// ctx is Close, which cancels the contexts of handlers in flight, so
	// use Subscription.Shutdown for a graceful stop.
	//
	// It returns [ErrClosed], a [*TopicError], [ErrNilHandler], a
	// [*ConfigError] or [ErrGroupMismatch]. Safe for concurrent use.
	Subscribe(ctx context.Context, pattern string, h Handler, cfg SubscribeConfig) (Subscription, error)
}

// A Subscription is a registered subscription, or one member of a consumer
// group. Its methods are safe for concurrent use.
type Subscription interface {
	// Name is the subscription's name: its consumer group, or a name the
	// broker generated for it.
	Name() string

	// Stats returns the subscription's counters; for a member of a
	// consumer group they are the group's.
	Stats() SubscriptionStats

	// Shutdown stops delivery gracefully: no new deliveries start,
	// handlers in flight finish with live contexts, and their results are
	// applied. If ctx ends first, the handlers' contexts are cancelled and
	// Shutdown waits for them to return. When the subscription is the
	// last member of its group, the messages it still holds are returned
	// in an [*UndeliveredError]; otherwise they stay with the group.
	// Shutdown must not be called from the subscription's own handler
	// (cancel the Subscribe context instead). Only the first call to
	// Shutdown or Close does the work and reports; later calls return nil.
	Shutdown(ctx context.Context) error

	// Close is Shutdown with an already-ended context: handlers in flight
	// have their contexts cancelled and Close waits for them to return.
	Close() error
}

// OverflowPolicy says what Publish does when a subscription's queue is full.
type OverflowPolicy int

const (
	// OverflowBlock makes Publish wait for room, honouring its context.
	// Nothing is lost. This is the default.
	OverflowBlock OverflowPolicy = iota
	// OverflowDropOldest discards the oldest message the subscription
	// holds that is not being handled, to make room; counted in
	// [SubscriptionStats.Dropped].
	OverflowDropOldest
	// OverflowDropNewest discards the new message for this subscription
	// only; counted in [SubscriptionStats.Dropped].
	OverflowDropNewest
	// OverflowError makes Publish return a [*QueueFullError] without
	// delivering the message to any subscription; counted in
	// [SubscriptionStats.Rejected].
	OverflowError
)

// String returns the policy's name: "block", "drop-oldest" and so on.
func (p OverflowPolicy) String() string {
	switch p {
	case OverflowBlock:
		return "block"
	case OverflowDropOldest:
		return "drop-oldest"
	case OverflowDropNewest:
		return "drop-newest"
	case OverflowError:
		return "error"
	}
	return "OverflowPolicy(invalid)"
}

// DeliverPolicy says where a new subscription starts.
type DeliverPolicy int

const (
	// DeliverNew delivers only messages published after Subscribe
	// returns. The default.
	DeliverNew DeliverPolicy = iota
	// DeliverAll first replays every retained message of the matching
	// topics, then continues with new ones.
	DeliverAll
	// DeliverFromSeq replays retained messages whose Seq is at least
	// [SubscribeConfig.StartSeq].
	DeliverFromSeq
	// DeliverFromTime replays retained messages published at or after
	// [SubscribeConfig.StartTime].
	DeliverFromTime
)

// Defaults for the zero fields of [SubscribeConfig].
const (
	DefaultQueueSize    = 1024
	DefaultMaxDeliver   = 5
	DefaultAckWait      = 30 * time.Second
	DefaultMaxExtension = 10 * time.Minute
)

// DefaultBackoff is the redelivery schedule used when
// [SubscribeConfig.Backoff] is empty: the delay before the second
// delivery is 100ms, before the third 1s, and so on; the last entry
// repeats.
var DefaultBackoff = []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second}

// SubscribeConfig configures a subscription. The zero value is a valid
// configuration: an ordered subscription with one handler goroutine, a
// queue of 1024 messages that blocks publishers when full, five delivery
// attempts on the [DefaultBackoff] schedule and no dead-letter topic.
type SubscribeConfig struct {
	// Group makes the subscription a member of the named consumer group
	// (a queue group): members share one queue and each message goes to
	// one of them. A group's settings are fixed by its first member;
	// later members must pass the same pattern and settings (all but
	// Concurrency) or Subscribe returns [ErrGroupMismatch]. The group is
	// also the subscription's name. Empty means a standalone subscription
	// with a generated name.
	Group string

	// Concurrency is the number of handler goroutines of this
	// subscription (0 means 1). With 1, and outside a consumer group,
	// messages are handled one at a time in publish order, and a message
	// waiting for redelivery holds back every later one. Otherwise
	// ordering is per key: messages with the same non-empty
	// [Message.Key] are handled one at a time in publish order, a
	// redelivery holds back only its key, and messages without a key are
	// not ordered.
	Concurrency int

	// QueueSize bounds the messages the subscription holds that are not
	// yet acknowledged or dead-lettered, including those being handled
	// or waiting for redelivery (0 means [DefaultQueueSize]). Replayed
	// retained messages (see Deliver) are admitted beyond it.
	QueueSize int

	// Overflow says what Publish does when the queue is full.
	Overflow OverflowPolicy

	// MaxDeliver is how many times a message is delivered before it is
	// dead-lettered (0 means [DefaultMaxDeliver], negative means no
	// limit: redelivered on the backoff schedule until acknowledged).
	MaxDeliver int

	// Backoff is the delay before each redelivery after a failure:
	// Backoff[0] before the second delivery, Backoff[1] before the third;
	// the last entry repeats (empty means [DefaultBackoff]). Delays must
	// not be negative; a zero delay redelivers at once.
	Backoff []time.Duration

	// AckWait is the ack deadline of a delivery (0 means
	// [DefaultAckWait]). While the handler runs the deadline is extended,
	// as a live client of a production broker does, until the handler
	// has run for MaxExtension; when the deadline passes after that, the
	// handler's context is cancelled with cause [ErrAckDeadline], the
	// delivery counts as failed and the message is redelivered. The
	// handler's late result is ignored.
	AckWait time.Duration

	// MaxExtension bounds the automatic extension of the ack deadline (0
	// means [DefaultMaxExtension], negative means unbounded).
	MaxExtension time.Duration

	// DeadLetterTopic receives messages that exhausted MaxDeliver or
	// failed permanently, with the dead-letter headers set
	// ([HeaderDeadLetterReason] and the others). It must be a valid topic
	// that the subscription's own pattern does not match. Empty means
	// such messages are discarded and counted in
	// [SubscriptionStats.Terminated].
	DeadLetterTopic string

	// Deliver is where the subscription starts; replay needs a broker
	// that retains messages (see [MemoryConfig.Retention]).
	Deliver DeliverPolicy
	// StartSeq is the first sequence replayed with [DeliverFromSeq].
	StartSeq uint64
	// StartTime is the earliest publish time replayed with
	// [DeliverFromTime].
	StartTime time.Time
}

// SubscriptionStats are the counters of one subscription (or consumer
// group). Pending and InFlight are current values; the others count
// events since the subscription was created.
type SubscriptionStats struct {
	Pending      int    // held, not being handled: queued or waiting for redelivery
	InFlight     int    // being handled now
	Delivered    uint64 // handler invocations, including redeliveries
	Acked        uint64 // handled successfully
	Redelivered  uint64 // deliveries after the first
	Expired      uint64 // deliveries abandoned at the ack deadline
	DeadLettered uint64 // published to the dead-letter topic
	Terminated   uint64 // given up without a dead-letter topic
	Dropped      uint64 // discarded by OverflowDropOldest or OverflowDropNewest
	Rejected     uint64 // refused with a QueueFullError (OverflowError)
}
