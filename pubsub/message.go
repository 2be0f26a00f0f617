package pubsub

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"sync"
	"time"
)

// Well-known header names. Headers are metadata carried with a message;
// names are lower case by convention.
const (
	// HeaderCorrelationID groups every message of one business flow (an
	// order, a saga). It is copied from the publishing context; see
	// [ContextWithCorrelationID].
	HeaderCorrelationID = "correlation-id"
	// HeaderCausationID is the ID of the message whose handler published
	// this one.
	HeaderCausationID = "causation-id"
	// HeaderTraceParent and HeaderTraceState carry W3C Trace Context.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
	// HeaderContentType names the payload encoding, set by [Marshal].
	HeaderContentType = "content-type"

	// Headers of a dead-lettered message.
	HeaderDeadLetterID            = "dead-letter-id"             // ID of the original message
	HeaderDeadLetterTopic         = "dead-letter-topic"          // topic of the original message
	HeaderDeadLetterSubscription  = "dead-letter-subscription"   // name of the subscription that gave up
	HeaderDeadLetterReason        = "dead-letter-reason"         // "max-deliver" or "permanent"
	HeaderDeadLetterError         = "dead-letter-error"          // the last handler error
	HeaderDeadLetterAttempts      = "dead-letter-attempts"       // deliveries made, decimal
	HeaderDeadLetterFirstDelivery = "dead-letter-first-delivery" // RFC 3339 with nanoseconds
	HeaderDeadLetterLastDelivery  = "dead-letter-last-delivery"  // RFC 3339 with nanoseconds
)

// A Message is what publishers send and handlers receive: an opaque payload
// with an identity, an ordering key and metadata.
//
// Publish copies the Message struct, so the caller may reuse it, but the
// Payload and Headers are shared with every subscription and must not be
// modified after Publish. A handler receives its own copy of the struct
// and must treat Payload and Headers as read-only; use [Message.Clone] to
// derive a modified message.
type Message struct {
	// ID identifies the message for deduplication and idempotent
	// consumers. [NewMessage] sets a unique one; Publish assigns one when
	// it is empty. Republishing a message with the same ID within the
	// broker's dedup window delivers it once.
	ID string

	// Topic is set by the broker to the topic the message was published to.
	Topic string

	// Key orders messages: with per-key ordering (a concurrent
	// subscription or a consumer group) messages with the same non-empty
	// Key are handled one at a time, in publish order.
	Key string

	// Payload is the message body. The broker never inspects it.
	Payload []byte

	// Headers is the message metadata (correlation, tracing, content
	// type, dead-letter details). May be nil.
	Headers map[string]string

	// PublishedAt is set by the broker when the message is accepted.
	PublishedAt time.Time

	// Seq is the broker's sequence number for the message, increasing in
	// publish order within a topic. Zero if the backend has none.
	Seq uint64

	// Attempt counts deliveries of this message to this subscription:
	// 1 on the first delivery, 2 on the first redelivery, and so on.
	Attempt int
}

// NewMessage returns a message with a new unique ID and the given payload.
func NewMessage(payload []byte) *Message {
	return &Message{ID: NewID(), Payload: payload}
}

// Header returns the value of header name, or "" if it is not set.
func (m *Message) Header(name string) string { return m.Headers[name] }

// Clone returns a copy of m whose Headers map can be modified freely. The
// Payload is shared.
func (m *Message) Clone() *Message {
	c := *m
	c.Headers = maps.Clone(m.Headers)
	return &c
}

// NewID returns a new message ID: 32 hexadecimal characters, a random
// per-process prefix followed by a counter, unique across processes with
// overwhelming probability. It is safe for concurrent use and allocates
// only once per 128 IDs.
func NewID() string { return ids.next() }

var ids idGen

// idGen hands out IDs carved from a batch string, so an ID costs no
// allocation: a substring shares the batch's memory.
type idGen struct {
	mu     sync.Mutex
	prefix [16]byte
	n      uint64
	batch  string
	off    int
}

const (
	hexDigits = "0123456789abcdef"
	idLen     = 32
	idBatch   = 128
)

func (g *idGen) next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.off == len(g.batch) {
		if g.n == 0 {
			var r [8]byte
			_, _ = rand.Read(r[:]) // never fails; see crypto/rand.Read
			hex.Encode(g.prefix[:], r[:])
		}
		buf := make([]byte, 0, idLen*idBatch)
		for range idBatch {
			g.n++
			buf = append(buf, g.prefix[:]...)
			for shift := 60; shift >= 0; shift -= 4 {
				buf = append(buf, hexDigits[(g.n>>shift)&0xf])
			}
		}
		g.batch = string(buf)
		g.off = 0
	}
	id := g.batch[g.off : g.off+idLen]
	g.off += idLen
	return id
}
