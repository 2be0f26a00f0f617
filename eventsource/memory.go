package eventsource

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var _ Store = (*MemoryStore)(nil)

const (
	segShift = 8
	segSize  = 1 << segShift // events per log segment: small enough to zero in cache
	segMask  = segSize - 1

	arenaChunk    = 64 << 10 // payload arena chunk size
	arenaMaxEvent = 4 << 10  // payloads larger than this get their own allocation

	ctxCheckEvery = 256 // iterators check ctx once per this many events
)

// record is one committed event plus the bounds of the append that stored
// it, which idempotent re-sends are checked against.
type record struct {
	ev                    Event
	batchFirst, batchLast uint64
}

type segment [segSize]record

type memStream struct {
	id        string   // the store's own copy, shared by the stream's events
	positions []uint64 // positions[v-1] is the global position of version v
}

// MemoryStore is the in-memory reference [Store]. Its behaviour is the
// contract every adapter must match; it passes the eventsourcetest suite.
//
// Appends are linearizable: one mutex orders them, so global positions
// equal commit order, and an append's events become visible to readers all
// at once when the head advances. Reads of the global log take no lock.
// The log lives in fixed-size segments that never move, payloads are
// copied into large shared chunks on append, and every event handed out is
// a copy, so callers can neither alter the log nor be altered by it. Event
// IDs in [NewID]'s form, which mostly arrive in increasing order, are
// indexed in an append-only sorted array; any other ID in a hash map.
//
// The zero value is an empty store ready to use. A MemoryStore is safe for
// concurrent use and starts no goroutines. It keeps everything in memory
// for its lifetime; see [MemoryStore.Stats] to watch its size.
type MemoryStore struct {
	head atomic.Uint64              // position of the last committed event
	dir  atomic.Pointer[[]*segment] // the log's segments, copy-on-grow

	mu       sync.Mutex
	streams  map[string]*memStream
	ids      idIndex
	lastTime time.Time
	waitCh   chan struct{} // closed and cleared by the next commit; nil when no one waits
	arena    []byte
	bytes    int64
}

// NewMemoryStore returns an empty store. It is equivalent to new(MemoryStore).
func NewMemoryStore() *MemoryStore { return new(MemoryStore) }

// MemoryStats describes the size of a [MemoryStore].
type MemoryStats struct {
	// Events is the number of events stored (equal to the head position).
	Events uint64
	// Streams is the number of streams with at least one event.
	Streams int
	// PayloadBytes is the total size of the events' Data.
	PayloadBytes int64
}

// Stats returns the store's current size.
func (m *MemoryStore) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return MemoryStats{Events: m.head.Load(), Streams: len(m.streams), PayloadBytes: m.bytes}
}

// Append implements [Store.Append].
func (m *MemoryStore) Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...EventData) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, fmt.Errorf("eventsource: append to %q: %w", streamID, err)
	}
	appends := [1]StreamAppend{{StreamID: streamID, Expected: expected, Events: events}}
	var results [1]AppendResult
	if err := m.append(appends[:], results[:]); err != nil {
		return AppendResult{}, err
	}
	return results[0], nil
}

// AppendStreams implements [Store.AppendStreams].
func (m *MemoryStore) AppendStreams(ctx context.Context, appends ...StreamAppend) ([]AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eventsource: append: %w", err)
	}
	if len(appends) == 0 {
		return nil, invalidf("no streams")
	}
	results := make([]AppendResult, len(appends))
	if err := m.append(appends, results); err != nil {
		return nil, err
	}
	return results, nil
}

// validate checks an append without the lock and returns the event IDs to
// store, generating the missing ones.
func validate(appends []StreamAppend, ids []string, now time.Time) ([]string, error) {
	for i, a := range appends {
		if a.StreamID == "" {
			return nil, invalidf("empty stream ID")
		}
		if !a.Expected.valid() {
			return nil, invalidf("stream %q: invalid expected version %d", a.StreamID, int64(a.Expected))
		}
		if len(a.Events) == 0 {
			return nil, invalidf("stream %q: no events", a.StreamID)
		}
		for _, b := range appends[:i] {
			if b.StreamID == a.StreamID {
				return nil, invalidf("stream %q named twice", a.StreamID)
			}
		}
		for j := range a.Events {
			e := &a.Events[j]
			if e.Type == "" {
				return nil, invalidf("stream %q event %d: empty type", a.StreamID, j)
			}
			if e.SchemaVersion < 0 {
				return nil, invalidf("stream %q event %d: negative schema version %d", a.StreamID, j, e.SchemaVersion)
			}
			id := e.ID
			if id == "" {
				id = newID(now)
			}
			ids = append(ids, id)
		}
	}
	if len(ids) > 1 {
		if len(ids) <= 16 {
			for i := 1; i < len(ids); i++ {
				if slices.Contains(ids[:i], ids[i]) {
					return nil, invalidf("event ID %q repeated", ids[i])
				}
			}
		} else {
			seen := make(map[string]struct{}, len(ids))
			for _, id := range ids {
				if _, dup := seen[id]; dup {
					return nil, invalidf("event ID %q repeated", id)
				}
				seen[id] = struct{}{}
			}
		}
	}
	return ids, nil
}

func (m *MemoryStore) append(appends []StreamAppend, results []AppendResult) error {
	now := time.Now().UTC()
	var idBuf [4]string
	ids, err := validate(appends, idBuf[:0], now)
	if err != nil {
		return err
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.streams == nil {
		m.streams = make(map[string]*memStream)
		m.ids.init()
	}

	// Idempotency: a stored first ID means a re-send (or a misuse).
	var keyBuf [4]idKey
	keys := keyBuf[:0]
	for i, id := range ids {
		key := makeIDKey(id)
		keys = append(keys, key)
		if pos, found := m.ids.lookup(key, m.idAt); found {
			if i == 0 {
				return m.resend(appends, ids, pos, results)
			}
			r := m.record(pos)
			return fmt.Errorf("%w: %q is event %d of stream %q", ErrDuplicateEventID, id, r.ev.Version, r.ev.StreamID)
		}
	}

	var streamBuf [1]*memStream
	streams := streamBuf[:0]
	for _, a := range appends {
		s := m.streams[a.StreamID]
		var version uint64
		if s != nil {
			version = uint64(len(s.positions))
		}
		if !a.Expected.matches(version) {
			return &ConcurrencyError{StreamID: a.StreamID, Expected: a.Expected, Actual: version}
		}
		streams = append(streams, s)
	}

	if now.Before(m.lastTime) {
		now = m.lastTime // time never goes backwards along the log
	}
	m.lastTime = now
	head := m.head.Load()
	first, last := head+1, head+uint64(len(ids))
	pos := head
	k := 0
	for i, a := range appends {
		s := streams[i]
		if s == nil {
			s = &memStream{id: strings.Clone(a.StreamID)}
			m.streams[s.id] = s
		}
		res := &results[i]
		res.StreamID = s.id
		res.FirstVersion = uint64(len(s.positions)) + 1
		res.FirstPosition = pos + 1
		for j := range a.Events {
			e := &a.Events[j]
			pos++
			r := m.slot(pos)
			r.batchFirst, r.batchLast = first, last
			r.ev = Event{
				StreamID:      s.id,
				Version:       uint64(len(s.positions)) + 1,
				Position:      pos,
				ID:            ids[k],
				Type:          e.Type,
				SchemaVersion: max(e.SchemaVersion, 1),
				Time:          now,
				Data:          m.copyData(e.Data),
				Metadata:      e.Metadata.clone(),
			}
			s.positions = append(s.positions, pos)
			m.ids.insert(keys[k], pos)
			k++
		}
		res.Version = uint64(len(s.positions))
		res.Position = pos
		res.Time = now
	}
	m.head.Store(last)
	if m.waitCh != nil {
		close(m.waitCh)
		m.waitCh = nil
	}
	return nil
}

// idAt returns the ID of the committed event at pos. Caller holds mu.
func (m *MemoryStore) idAt(pos uint64) string { return m.record(pos).ev.ID }

// resend handles an append whose first event ID is stored at position pos:
// it fills results with the original outcome when the append is an exact
// re-send of the one that stored the events, and fails otherwise.
func (m *MemoryStore) resend(appends []StreamAppend, ids []string, pos uint64, results []AppendResult) error {
	r := m.record(pos)
	if r.batchFirst != pos || r.batchLast-r.batchFirst+1 != uint64(len(ids)) {
		return fmt.Errorf("%w: %q is event %d of stream %q, stored by a different append",
			ErrDuplicateEventID, ids[0], r.ev.Version, r.ev.StreamID)
	}
	k := 0
	for i, a := range appends {
		for j := range a.Events {
			r := m.record(pos + uint64(k))
			if r.ev.ID != ids[k] || r.ev.StreamID != a.StreamID {
				return fmt.Errorf("%w: append re-sends %q but differs from the append that stored it",
					ErrDuplicateEventID, ids[0])
			}
			if j == 0 {
				results[i].StreamID = r.ev.StreamID
				results[i].FirstVersion = r.ev.Version
				results[i].FirstPosition = r.ev.Position
			}
			results[i].Version = r.ev.Version
			results[i].Position = r.ev.Position
			results[i].Time = r.ev.Time
			k++
		}
	}
	return nil
}

// slot returns the record for a new position, growing the log. Caller
// holds mu.
func (m *MemoryStore) slot(pos uint64) *record {
	idx := (pos - 1) >> segShift
	var dir []*segment
	if p := m.dir.Load(); p != nil {
		dir = *p
	}
	if idx >= uint64(len(dir)) {
		// Readers keep their shorter view: append writes only past its
		// end (or copies), then the longer view is published.
		grown := append(dir, new(segment))
		m.dir.Store(&grown)
		dir = grown
	}
	return &dir[idx][(pos-1)&segMask]
}

// record returns the committed record at pos (1 <= pos <= head).
func (m *MemoryStore) record(pos uint64) *record {
	dir := *m.dir.Load()
	return &dir[(pos-1)>>segShift][(pos-1)&segMask]
}

// copyData copies a payload into the arena. Caller holds mu.
func (m *MemoryStore) copyData(b []byte) []byte {
	if b == nil {
		return nil
	}
	m.bytes += int64(len(b))
	n := len(b)
	if n > arenaMaxEvent {
		return append([]byte(nil), b...)
	}
	if n > cap(m.arena)-len(m.arena) {
		m.arena = make([]byte, 0, arenaChunk)
	}
	off := len(m.arena)
	m.arena = append(m.arena, b...)
	return m.arena[off : off+n : off+n]
}

// copyOut returns a copy of r's event that the caller owns.
func copyOut(r *record) Event {
	ev := r.ev
	if ev.Data != nil {
		data := make([]byte, len(ev.Data)) // make+copy: not zeroed first
		copy(data, ev.Data)
		ev.Data = data
	}
	if ev.Metadata.Headers != nil {
		ev.Metadata.Headers = maps.Clone(ev.Metadata.Headers)
	}
	return ev
}

// ReadStream implements [Store.ReadStream].
func (m *MemoryStore) ReadStream(ctx context.Context, streamID string, q StreamQuery) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(Event{}, fmt.Errorf("eventsource: read stream %q: %w", streamID, err))
			return
		}
		m.mu.Lock()
		var positions []uint64
		if s := m.streams[streamID]; s != nil {
			positions = s.positions // committed prefix; never rewritten
		}
		m.mu.Unlock()
		if len(positions) == 0 {
			return
		}
		dir := *m.dir.Load() // covers every position above
		record := func(pos uint64) *record { return &dir[(pos-1)>>segShift][(pos-1)&segMask] }

		from := max(q.From, 1)
		to := uint64(len(positions))
		if q.To > 0 && q.To < to {
			to = q.To
		}
		if from > to {
			return
		}
		if !q.AsOf.IsZero() {
			// Times never decrease along the log: binary search the cut.
			lo := from - 1
			n := sort.Search(int(to-lo), func(i int) bool {
				return record(positions[lo+uint64(i)]).ev.Time.After(q.AsOf)
			})
			to = lo + uint64(n)
		}
		for v := from; v <= to; v++ {
			if (v-from)%ctxCheckEvery == ctxCheckEvery-1 {
				if err := ctx.Err(); err != nil {
					yield(Event{}, fmt.Errorf("eventsource: read stream %q: %w", streamID, err))
					return
				}
			}
			if !yield(copyOut(record(positions[v-1])), nil) {
				return
			}
		}
	}
}

// ReadAll implements [Store.ReadAll].
func (m *MemoryStore) ReadAll(ctx context.Context, from uint64, f Filter) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		pos := max(from, 1)
		all := f.IsZero()
		for n := 0; ; {
			head := m.head.Load()
			if pos > head {
				return
			}
			dir := *m.dir.Load()
			for ; pos <= head; pos++ {
				if n%ctxCheckEvery == 0 {
					if err := ctx.Err(); err != nil {
						yield(Event{}, fmt.Errorf("eventsource: read all from %d: %w", pos, err))
						return
					}
				}
				n++
				r := &dir[(pos-1)>>segShift][(pos-1)&segMask]
				if !all && !f.Match(&r.ev) {
					continue
				}
				if !yield(copyOut(r), nil) {
					return
				}
			}
		}
	}
}

// StreamVersion implements [Store.StreamVersion].
func (m *MemoryStore) StreamVersion(ctx context.Context, streamID string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("eventsource: stream version of %q: %w", streamID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[streamID]; s != nil {
		return uint64(len(s.positions)), nil
	}
	return 0, nil
}

// Head implements [Store.Head].
func (m *MemoryStore) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("eventsource: head: %w", err)
	}
	return m.head.Load(), nil
}

// Wait implements [Store.Wait].
func (m *MemoryStore) Wait(ctx context.Context, after uint64) (uint64, error) {
	for {
		if h := m.head.Load(); h > after {
			return h, nil
		}
		if err := ctx.Err(); err != nil {
			return m.head.Load(), fmt.Errorf("eventsource: wait for position %d: %w", after+1, err)
		}
		m.mu.Lock()
		if h := m.head.Load(); h > after {
			m.mu.Unlock()
			return h, nil
		}
		if m.waitCh == nil {
			m.waitCh = make(chan struct{})
		}
		ch := m.waitCh
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}
