package cqrs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/pubsub"
)

// Headers that carry an event's envelope in a pubsub message made by
// [EventMessage]. Headers of the event's own metadata are copied with the
// prefix HeaderEventMetadataPrefix.
const (
	HeaderEventStream         = "event-stream"
	HeaderEventVersion        = "event-version"
	HeaderEventPosition       = "event-position"
	HeaderEventType           = "event-type"
	HeaderEventSchema         = "event-schema-version"
	HeaderEventTime           = "event-time" // RFC 3339 with nanoseconds
	HeaderEventMetadataPrefix = "event-md-"
)

// ErrNotAnEvent is returned by [MessageEvent] for a message that does not
// carry an event envelope made by [EventMessage].
var ErrNotAnEvent = errors.New("cqrs: message does not carry an event")

// EventMessage wraps a stored event in a pubsub message: the payload is the
// event's data, the message ID is the event's ID (so a broker's publish
// deduplication drops a re-forwarded event), the key is the stream (so
// per-key ordering keeps a stream's events in order), and the rest of the
// event travels in headers, with its correlation and causation IDs in
// pubsub's own headers. [MessageEvent] is its inverse.
func EventMessage(ev eventsource.Event) *pubsub.Message {
	h := make(map[string]string, 8+len(ev.Metadata.Headers))
	h[HeaderEventStream] = ev.StreamID
	h[HeaderEventVersion] = strconv.FormatUint(ev.Version, 10)
	h[HeaderEventPosition] = strconv.FormatUint(ev.Position, 10)
	h[HeaderEventType] = ev.Type
	h[HeaderEventSchema] = strconv.Itoa(ev.SchemaVersion)
	h[HeaderEventTime] = ev.Time.UTC().Format(time.RFC3339Nano)
	if ev.Metadata.CorrelationID != "" {
		h[pubsub.HeaderCorrelationID] = ev.Metadata.CorrelationID
	}
	if ev.Metadata.CausationID != "" {
		h[pubsub.HeaderCausationID] = ev.Metadata.CausationID
	}
	for k, v := range ev.Metadata.Headers {
		h[HeaderEventMetadataPrefix+k] = v
	}
	return &pubsub.Message{ID: ev.ID, Key: ev.StreamID, Payload: ev.Data, Headers: h}
}

// MessageEvent recovers the event that [EventMessage] wrapped in m. It
// returns an error wrapping [ErrNotAnEvent] naming the first header that
// is missing or malformed.
func MessageEvent(m *pubsub.Message) (eventsource.Event, error) {
	if m == nil {
		return eventsource.Event{}, fmt.Errorf("%w: nil message", ErrNotAnEvent)
	}
	bad := func(name string) (eventsource.Event, error) {
		return eventsource.Event{}, fmt.Errorf("%w: message %s: header %q missing or malformed", ErrNotAnEvent, m.ID, name)
	}
	ev := eventsource.Event{ID: m.ID, StreamID: m.Header(HeaderEventStream), Type: m.Header(HeaderEventType), Data: m.Payload}
	var err error
	if ev.StreamID == "" {
		return bad(HeaderEventStream)
	}
	if ev.Type == "" {
		return bad(HeaderEventType)
	}
	if ev.Version, err = strconv.ParseUint(m.Header(HeaderEventVersion), 10, 64); err != nil || ev.Version == 0 {
		return bad(HeaderEventVersion)
	}
	if ev.Position, err = strconv.ParseUint(m.Header(HeaderEventPosition), 10, 64); err != nil || ev.Position == 0 {
		return bad(HeaderEventPosition)
	}
	if ev.SchemaVersion, err = strconv.Atoi(m.Header(HeaderEventSchema)); err != nil || ev.SchemaVersion < 1 {
		return bad(HeaderEventSchema)
	}
	if ev.Time, err = time.Parse(time.RFC3339Nano, m.Header(HeaderEventTime)); err != nil {
		return bad(HeaderEventTime)
	}
	ev.Metadata.CorrelationID = m.Header(pubsub.HeaderCorrelationID)
	ev.Metadata.CausationID = m.Header(pubsub.HeaderCausationID)
	for k, v := range m.Headers {
		if name, ok := strings.CutPrefix(k, HeaderEventMetadataPrefix); ok {
			if ev.Metadata.Headers == nil {
				ev.Metadata.Headers = make(map[string]string)
			}
			ev.Metadata.Headers[name] = v
		}
	}
	if m.Payload != nil {
		ev.Data = append([]byte(nil), m.Payload...)
	}
	return ev, nil
}

// Forward publishes the events of store's log after position after that
// match f, in position order, each as an [EventMessage] to the topic that
// topic names for it: the relay that lets read models in other processes
// (or other services) be fed from pubsub ([ReadModel.Handle]). It follows
// the log live until ctx ends, when it returns the position of the last
// event published and an error wrapping ctx.Err(); it returns earlier with
// the store's or the publisher's error. Resume from the position returned.
//
// Delivery to subscribers is at least once: an event whose publish
// failed, or that was published just before a crash, is published again
// on resume, and the broker's publish deduplication and the read model's
// checkpoint drop the repeat.
func Forward(ctx context.Context, store eventsource.Store, after uint64, f eventsource.Filter,
	pub pubsub.Publisher, topic func(eventsource.Event) string) (uint64, error) {
	if store == nil || pub == nil || topic == nil {
		return after, fmt.Errorf("%w: Forward needs a store, a publisher and a topic function", ErrInvalidConfig)
	}
	for ev, err := range eventsource.Subscribe(ctx, store, after, f) {
		if err != nil {
			return after, fmt.Errorf("cqrs: forward: %w", err)
		}
		if err := pub.Publish(ctx, topic(ev), EventMessage(ev)); err != nil {
			return after, fmt.Errorf("cqrs: forward event %d: %w", ev.Position, err)
		}
		after = ev.Position
	}
	return after, fmt.Errorf("cqrs: forward: %w", ctx.Err())
}

// Handle is a [pubsub.Handler] that feeds the read model from messages
// made by [EventMessage]: use it as the handler of a subscription (with
// Concurrency 1, so messages arrive in order) to run a read model fed
// from pubsub instead of from the log. Events outside the read model's
// Filter, and repeats (at or before its checkpoint: redeliveries, re-sent
// publishes), are acknowledged and dropped. A message that is not an
// event fails permanently (to the dead-letter topic, if there is one);
// an Apply failure is returned, so the message is redelivered.
//
// A pubsub feed can lose what the log cannot: a message dropped by an
// overflow policy or dead-lettered leaves the read model without that
// event. Run a [Reconciler] to find and repair such drift, or feed from
// the log ([ReadModel.Run]) where that is possible.
func (m *ReadModel[P]) Handle(ctx context.Context, msg *pubsub.Message) error {
	ev, err := MessageEvent(msg)
	if err != nil {
		return pubsub.Permanent(err)
	}
	if !m.cfg.Filter.Match(&ev) || ev.Position <= m.cp.Load() {
		return nil
	}
	return m.Apply(ctx, []eventsource.Event{ev}, ev.Position)
}
