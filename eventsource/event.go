package eventsource

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Event is one committed fact in a [Store]: immutable once appended.
//
// A stream's events have versions 1, 2, 3, ... with no gaps; the whole log's
// events have positions 1, 2, 3, ... with no gaps, in commit order. Time is
// assigned by the store when the event commits and never decreases along the
// global log, so the events of a stream up to a time are a prefix of the
// stream (see [StreamQuery.AsOf]).
type Event struct {
	// StreamID names the stream the event belongs to.
	StreamID string
	// Version is the event's number within its stream, from 1.
	Version uint64
	// Position is the event's number in the global log, from 1.
	Position uint64
	// ID identifies the event across the whole store. Appending an event
	// whose ID is already stored is idempotent (see [Store.Append]).
	ID string
	// Type names the kind of event, such as "account.deposited".
	Type string
	// SchemaVersion is the version of the payload's schema, from 1. A
	// [Registry] upcasts old versions to the current one when decoding.
	SchemaVersion int
	// Time is when the store committed the event, in UTC.
	Time time.Time
	// Data is the encoded payload; the store treats it as opaque bytes.
	Data []byte
	// Metadata carries correlation, causation and free-form headers.
	Metadata Metadata
}

// EventData is an event proposed for appending: the parts the caller
// chooses. The store assigns the stream, version, position and time.
type EventData struct {
	// ID identifies the event across the whole store. Empty means the store
	// assigns a fresh ID (see [NewID]); give an explicit ID to make a retried
	// append idempotent.
	ID string
	// Type names the kind of event; it must not be empty.
	Type string
	// SchemaVersion is the payload's schema version; 0 means 1. Negative is
	// an error.
	SchemaVersion int
	// Data is the encoded payload. The store copies it.
	Data []byte
	// Metadata is stored with the event. The store copies its headers.
	Metadata Metadata
}

// Metadata is what an event carries besides its payload.
type Metadata struct {
	// CorrelationID ties together every event caused by one request or
	// business transaction.
	CorrelationID string
	// CausationID is the ID of the command or event that directly caused
	// this one.
	CausationID string
	// Headers holds any other key/value pairs (tenant, user, trace IDs).
	// nil and empty are equivalent.
	Headers map[string]string
}

func (m Metadata) clone() Metadata {
	if m.Headers != nil {
		m.Headers = maps.Clone(m.Headers)
	}
	return m
}

// ExpectedVersion is the state a stream must be in for an append to
// succeed: [Any], [NoStream], [StreamExists], or an exact version made with
// [Exact]. The zero value is [NoStream]: an append that forgets to say what
// it expects can only create a new stream, never silently overwrite history.
type ExpectedVersion int64

const (
	// NoStream expects the stream to have no events. It equals Exact(0).
	NoStream ExpectedVersion = 0
	// Any skips the check: the events go at the end of the stream, whatever
	// its version.
	Any ExpectedVersion = -1
	// StreamExists expects the stream to have at least one event.
	StreamExists ExpectedVersion = -2
)

// Exact expects the stream's current version to be v (0 means no events).
func Exact(v uint64) ExpectedVersion { return ExpectedVersion(v) }

// String returns "any", "no stream", "stream exists" or the exact version.
func (e ExpectedVersion) String() string {
	switch {
	case e == Any:
		return "any"
	case e == NoStream:
		return "no stream"
	case e == StreamExists:
		return "stream exists"
	case e > 0:
		return "version " + strconv.FormatUint(uint64(e), 10)
	default:
		return "invalid(" + strconv.FormatInt(int64(e), 10) + ")"
	}
}

// matches reports whether a stream at version actual satisfies e.
func (e ExpectedVersion) matches(actual uint64) bool {
	switch {
	case e == Any:
		return true
	case e == StreamExists:
		return actual > 0
	default:
		return e >= 0 && uint64(e) == actual
	}
}

func (e ExpectedVersion) valid() bool { return e >= StreamExists }

// StreamAppend is one stream's part of an atomic multi-stream append
// ([Store.AppendStreams]).
type StreamAppend struct {
	// StreamID names the stream; it must not be empty.
	StreamID string
	// Expected is the state the stream must be in.
	Expected ExpectedVersion
	// Events are appended in order; there must be at least one.
	Events []EventData
}

// AppendResult describes a successful append to one stream.
type AppendResult struct {
	// StreamID is the stream appended to.
	StreamID string
	// FirstVersion and Version are the versions of the first and last
	// events appended; Version is the stream's version after the append,
	// which is what the next append should expect.
	FirstVersion, Version uint64
	// FirstPosition and Position are the global positions of the first and
	// last events appended. Position is the token a reader can wait for to
	// see its own write (cqrs consistency tokens are positions).
	FirstPosition, Position uint64
	// Time is the commit time of the events.
	Time time.Time
}

// StreamQuery selects a range of one stream for [Store.ReadStream]. The
// zero value selects the whole stream.
type StreamQuery struct {
	// From is the first version to return; 0 and 1 both mean the start.
	From uint64
	// To is the last version to return; 0 means the stream's current end.
	// Reading up to a version is time travel by version.
	To uint64
	// AsOf, when not zero, stops before the first event committed after it:
	// the stream as it was at that instant.
	AsOf time.Time
}

// Filter selects events of the global log by stream category and event
// type. The zero value selects every event. An event matches when its
// category is one of Categories (or Categories is empty) and its type is
// one of Types (or Types is empty).
type Filter struct {
	// Categories lists stream categories (see [Category]).
	Categories []string
	// Types lists event types.
	Types []string
}

// Match reports whether ev is selected by f.
func (f Filter) Match(ev *Event) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, ev.Type) {
		return false
	}
	if len(f.Categories) > 0 && !slices.Contains(f.Categories, Category(ev.StreamID)) {
		return false
	}
	return true
}

// IsZero reports whether f selects everything.
func (f Filter) IsZero() bool { return len(f.Categories) == 0 && len(f.Types) == 0 }

// Category returns the category of a stream: the part of its ID before the
// first '-', or the whole ID when it has none. "account-42" is in category
// "account". A [Repository] names its streams "<Type>-<id>".
func Category(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

// NewID returns a fresh event ID: a version 7 UUID in canonical lowercase
// form (RFC 9562): 48 bits of Unix milliseconds, a 12-bit sequence within
// the millisecond, then 62 random bits. IDs from one process are strictly
// increasing in the order NewID returns them, so they sort by creation time,
// keep database indexes compact, and let [MemoryStore] index them in an
// append-only array. It is safe for concurrent use.
func NewID() string { return newID(time.Now()) }

// v7clock is the last (milliseconds<<12 | sequence) handed out by newID.
var v7clock atomic.Uint64

func newID(now time.Time) string {
	tick := uint64(now.UnixMilli()) << 12
	for {
		last := v7clock.Load()
		next := tick
		if next <= last {
			next = last + 1 // same millisecond (or the clock stepped back): count on
		}
		if v7clock.CompareAndSwap(last, next) {
			tick = next
			break
		}
	}
	hi := tick>>12<<16 | 0x7<<12 | tick&0xfff // ms, version 7, sequence
	lo := rand.Uint64()>>2 | 1<<63            // RFC 9562 variant, random bits
	var s [36]byte
	hexInto(s[0:8], hi>>32)
	s[8] = '-'
	hexInto(s[9:13], hi>>16)
	s[13] = '-'
	hexInto(s[14:18], hi)
	s[18] = '-'
	hexInto(s[19:23], lo>>48)
	s[23] = '-'
	hexInto(s[24:36], lo)
	return string(s[:])
}

// hexInto writes the low 4*len(dst) bits of v into dst as lowercase hex.
func hexInto(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}
