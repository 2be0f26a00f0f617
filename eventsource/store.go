package eventsource

import (
	"context"
	"fmt"
	"iter"
)

// Store is an append-only event log: streams with optimistic concurrency
// and one global order. [MemoryStore] is the reference implementation;
// every implementation must pass the conformance suite in package
// eventsourcetest, which checks each rule written here.
//
// Implementations are safe for concurrent use. Every method honours ctx:
// when it is done, the method returns (or the iterator yields) an error
// wrapping ctx.Err() and the log is unchanged.
type Store interface {
	// Append adds events to the end of one stream, atomically, if the
	// stream is in the expected state. The events get versions that
	// continue the stream and global positions that continue the log, in
	// the order given, and all become visible to readers at once.
	//
	// It returns a [*ConcurrencyError] (errors.Is ErrConcurrencyConflict)
	// carrying the expected and actual versions when the stream does not
	// match, and an error wrapping [ErrInvalidAppend] for a malformed
	// append; in both cases nothing is stored.
	//
	// Appends are idempotent by event ID. When the first event's ID is
	// already stored and the stored events with these IDs are exactly this
	// append (same stream, same IDs in the same order, stored together by
	// one append), Append stores nothing and returns the original result,
	// whatever the stream's version is now: a caller that timed out can
	// re-send. Any other reuse of a stored ID returns
	// [ErrDuplicateEventID]. The store remembers IDs for as long as it
	// holds the events: this is durable deduplication, not a cache.
	Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...EventData) (AppendResult, error)

	// AppendStreams appends to several streams atomically: either every
	// stream's expectation holds and all events are stored, with
	// consecutive global positions in the order given, or nothing is. A
	// stream may appear only once. The results are in the order of the
	// appends. Errors and idempotency are as for Append, applied to the
	// whole batch: a re-send must repeat every stream's events.
	AppendStreams(ctx context.Context, appends ...StreamAppend) ([]AppendResult, error)

	// ReadStream returns the events of one stream selected by q, in version
	// order. A stream with no events yields nothing. The iterator reads
	// lazily: it yields every event of the range committed before iteration
	// began, and may yield events committed since. Events yielded are copies
	// the caller may keep and modify.
	ReadStream(ctx context.Context, streamID string, q StreamQuery) iter.Seq2[Event, error]

	// ReadAll returns the events of the global log from position from
	// (0 and 1 both mean the start) that match f, in position order. It
	// yields every matching event up to at least the position [Store.Head]
	// returned before ReadAll was called, never skips a committed event and
	// never yields an uncommitted one. Events yielded are copies.
	ReadAll(ctx context.Context, from uint64, f Filter) iter.Seq2[Event, error]

	// StreamVersion returns the version of a stream: the version of its
	// last event, or 0 when it has none.
	StreamVersion(ctx context.Context, streamID string) (uint64, error)

	// Head returns the position of the last committed event, 0 for an
	// empty log. Every event at or before it is visible to ReadAll.
	Head(ctx context.Context) (uint64, error)

	// Wait blocks until the head is past after, then returns the head. It
	// returns at once when the head already is. On cancellation it returns
	// an error wrapping ctx.Err().
	Wait(ctx context.Context, after uint64) (uint64, error)
}

// Subscribe follows the global log: a catch-up subscription. It yields the
// events matching f after position after (the subscriber's checkpoint; 0
// starts at the beginning), in position order, first the stored ones, then
// each new one as it commits, until ctx is done, when it yields a final
// error wrapping ctx.Err(). It also ends after yielding a store error.
//
// Subscribe never drops or skips an event and never yields one twice. There
// is no buffer to overflow: the subscriber pulls, so one that falls behind
// simply reads from the log (catch-up mode) until it is current again, and
// then waits on [Store.Wait] (live mode). Writers are never slowed by a slow
// subscriber.
//
// The checkpoint is the subscriber's: record ev.Position after handling an
// event and pass it back as after to resume. To receive only new events,
// pass the current [Store.Head]. With a filter, the positions
// of skipped events are not reported, so a resumed subscription may re-scan
// them (and yields nothing extra); a [Projector] records those too.
func Subscribe(ctx context.Context, s Store, after uint64, f Filter) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		cursor := after
		for {
			head, err := s.Head(ctx)
			if err != nil {
				yield(Event{}, err)
				return
			}
			if head > cursor {
				for ev, err := range s.ReadAll(ctx, cursor+1, f) {
					if err != nil {
						yield(Event{}, err)
						return
					}
					cursor = ev.Position
					if !yield(ev, nil) {
						return
					}
				}
				// ReadAll saw every event up to head, matching or not.
				cursor = max(cursor, head)
			}
			if _, err := s.Wait(ctx, cursor); err != nil {
				yield(Event{}, fmt.Errorf("eventsource: subscription after position %d: %w", cursor, err))
				return
			}
		}
	}
}
