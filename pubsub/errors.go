package pubsub

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by the package. Adapters map their backend's errors onto
// these sentinels and keep the driver error reachable with %w.
var (
	// ErrClosed is returned by Publish and Subscribe after the broker (or
	// the subscription) has been closed or shut down.
	ErrClosed = errors.New("pubsub: closed")

	// ErrInvalidTopic is matched (errors.Is) by every [TopicError]: an
	// empty topic, an empty token, a wildcard in a publish topic, a
	// misplaced '>' or a character that is not allowed.
	ErrInvalidTopic = errors.New("pubsub: invalid topic")

	// ErrNilHandler is returned by Subscribe and Router.Handle for a nil
	// handler.
	ErrNilHandler = errors.New("pubsub: nil handler")

	// ErrNilMessage is returned by Publish when one of the messages is nil.
	ErrNilMessage = errors.New("pubsub: nil message")

	// ErrMessageTooLarge is returned by Publish when a message is larger
	// than the broker's configured limit; see [MemoryConfig.MaxMessageSize].
	ErrMessageTooLarge = errors.New("pubsub: message too large")

	// ErrQueueFull is matched by the [QueueFullError] that Publish returns
	// when a subscription with [OverflowError] has no room for a message.
	// Nothing was delivered to any subscription when it is returned.
	ErrQueueFull = errors.New("pubsub: subscription queue full")

	// ErrInvalidConfig is matched by the [ConfigError] returned for a
	// configuration that cannot work.
	ErrInvalidConfig = errors.New("pubsub: invalid config")

	// ErrGroupMismatch is returned by Subscribe when a subscription joins a
	// consumer group whose pattern or delivery settings differ from its own.
	ErrGroupMismatch = errors.New("pubsub: consumer group settings differ")

	// ErrPermanent is matched by errors made with [Permanent]: the message
	// can never be handled, so it is not redelivered.
	ErrPermanent = errors.New("pubsub: permanent failure")

	// ErrUndelivered is matched by the [UndeliveredError] that Shutdown and
	// Close return when messages were accepted but not completed.
	ErrUndelivered = errors.New("pubsub: messages not delivered")

	// ErrAckDeadline is the cause (context.Cause) of a handler context
	// cancelled because the delivery's ack deadline passed; the message is
	// redelivered and the handler's late result is ignored.
	ErrAckDeadline = errors.New("pubsub: ack deadline exceeded")

	// ErrRouterRunning is returned by Router.Handle and Router.Use after
	// Run has started, and by a second call to Run.
	ErrRouterRunning = errors.New("pubsub: router already running")
)

// TopicError reports an invalid topic or subscription pattern.
type TopicError struct {
	Topic  string // the rejected topic or pattern
	Reason string // what is wrong with it
}

// Error names the topic and what is wrong with it.
func (e *TopicError) Error() string {
	return fmt.Sprintf("pubsub: invalid topic %q: %s", e.Topic, e.Reason)
}

// Is reports whether target is [ErrInvalidTopic].
func (e *TopicError) Is(target error) bool { return target == ErrInvalidTopic }

// ConfigError reports an invalid configuration field.
type ConfigError struct {
	Field  string // the Config field, such as "SubscribeConfig.QueueSize"
	Reason string
}

// Error names the field and what is wrong with it.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("pubsub: invalid %s: %s", e.Field, e.Reason)
}

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// QueueFullError is returned by Publish when a subscription whose overflow
// policy is [OverflowError] has no room. The message was not delivered to
// any subscription.
type QueueFullError struct {
	Subscription string // name of the full subscription
}

// Error names the full subscription.
func (e *QueueFullError) Error() string {
	return fmt.Sprintf("pubsub: queue of subscription %q is full", e.Subscription)
}

// Is reports whether target is [ErrQueueFull].
func (e *QueueFullError) Is(target error) bool { return target == ErrQueueFull }

// PublishError is returned by Publish when it fails part-way through a
// batch. The first Published messages were accepted; the rest were not.
type PublishError struct {
	Published int   // number of messages accepted before the failure
	Err       error // why the next message was not accepted
}

// Error says how many messages were published and why the next was not.
func (e *PublishError) Error() string {
	return fmt.Sprintf("pubsub: published %d message(s), then: %v", e.Published, e.Err)
}

// Unwrap returns the underlying error.
func (e *PublishError) Unwrap() error { return e.Err }

// Undelivered is one message that a shutdown left incomplete.
type Undelivered struct {
	Subscription string   // name of the subscription that held it
	Message      *Message // the message, with Attempt = deliveries so far
	Err          error    // the last handler error, or nil if never attempted
}

// UndeliveredError lists the messages that were accepted by a subscription
// but neither acknowledged nor dead-lettered when it shut down. A process
// that must not lose them can persist and republish them.
type UndeliveredError struct {
	Messages []Undelivered
}

// Error counts the undelivered messages and names a few.
func (e *UndeliveredError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pubsub: %d message(s) not delivered", len(e.Messages))
	for i, u := range e.Messages {
		if i == 3 {
			b.WriteString(", ...")
			break
		}
		fmt.Fprintf(&b, "; %s: %s", u.Subscription, u.Message.ID)
	}
	return b.String()
}

// Is reports whether target is [ErrUndelivered].
func (e *UndeliveredError) Is(target error) bool { return target == ErrUndelivered }

// Permanent marks err as permanent: a handler that returns it terminates the
// message instead of asking for a redelivery; the message goes to the
// subscription's dead-letter topic if it has one. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// RetryAfter asks for a redelivery after d instead of the subscription's
// backoff schedule, as a handler that learned a downstream's Retry-After
// would. RetryAfter(d, nil) is nil. A non-positive d means the schedule.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &RetryError{After: d, Err: err}
}

// RetryError is a handler error that carries the delay before the message
// is redelivered; see [RetryAfter].
type RetryError struct {
	After time.Duration
	Err   error
}

// Error gives the delay and the underlying error.
func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.After)
}

// Unwrap returns the underlying error.
func (e *RetryError) Unwrap() error { return e.Err }

// PanicError is the error a handler's panic becomes under the [Recover]
// middleware. The panic is not swallowed: it is returned as the handler's
// error, redelivered like any failure, and ends in the dead-letter topic
// (with the value in its headers) when attempts run out.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the stack of the panicking goroutine
}

// Error gives the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("pubsub: handler panicked: %v", e.Value) }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
