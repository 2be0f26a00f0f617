package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/distkit/distkit/eventsource"
)

// DefaultCategory is the stream category of an [EventStore] whose
// [EventStoreConfig.Category] is empty: saga "trip-42" is kept in stream
// "saga-trip-42".
const DefaultCategory = "saga"

// EventStoreConfig configures an [EventStore]. The zero value is valid.
type EventStoreConfig struct {
	// Category is the stream category of the saga logs (empty means
	// [DefaultCategory]). It must not contain '-'. Give each coordinator
	// deployment sharing an event store its own category.
	Category string
}

// EventStore is a [Store] that keeps each saga's log as one stream of an
// eventsource.Store: stream "<category>-<saga ID>", one event per record,
// of the record's type, with the saga ID as correlation ID. The stream's
// optimistic concurrency gives one writer per saga, and the stream is the
// saga's audit trail, readable with any eventsource tool.
//
// List is answered from an index built by reading the category's events
// from the event store's global log; each call first catches up with the
// log, so a coordinator in a new process sees every saga written before.
//
// It is safe for concurrent use.
type EventStore struct {
	es     eventsource.Store
	prefix string
	filter eventsource.Filter

	mu       sync.Mutex // guards the index and serializes catching up
	position uint64
	index    map[string]*Summary
}

var _ Store = (*EventStore)(nil)

// NewEventStore returns a saga store over es. It returns an error
// wrapping [ErrInvalidConfig] for a nil es or an invalid category.
func NewEventStore(es eventsource.Store, cfg EventStoreConfig) (*EventStore, error) {
	if es == nil {
		return nil, fmt.Errorf("%w: nil eventsource.Store", ErrInvalidConfig)
	}
	if cfg.Category == "" {
		cfg.Category = DefaultCategory
	}
	if strings.Contains(cfg.Category, "-") {
		return nil, fmt.Errorf("%w: EventStoreConfig.Category %q contains '-'", ErrInvalidConfig, cfg.Category)
	}
	return &EventStore{
		es:     es,
		prefix: cfg.Category + "-",
		filter: eventsource.Filter{Categories: []string{cfg.Category}},
		index:  make(map[string]*Summary),
	}, nil
}

// storedRecord is the payload of a record's event; the record's type is
// the event's type and its version the event's version.
type storedRecord struct {
	State   State  `json:"state"`
	Saga    string `json:"saga,omitempty"`
	Step    string `json:"step,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	Data    []byte `json:"data,omitempty"`
	Error   string `json:"error,omitempty"`
	Time    int64  `json:"time"`
}

// Append implements [Store.Append]. A conflict reported by the event
// store is returned as a [*ConflictError]; other errors of the event
// store are wrapped.
func (s *EventStore) Append(ctx context.Context, sagaID string, expected uint64, records ...Record) (uint64, error) {
	if sagaID == "" {
		return 0, fmt.Errorf("%w: empty saga ID", ErrInvalidAppend)
	}
	if len(records) == 0 {
		return 0, fmt.Errorf("%w: no records for saga %q", ErrInvalidAppend, sagaID)
	}
	events := make([]eventsource.EventData, len(records))
	for i, r := range records {
		var t int64
		if !r.Time.IsZero() {
			t = r.Time.UnixNano()
		}
		data, err := json.Marshal(storedRecord{Time: t, State: r.State, Saga: r.Saga, Step: r.Step, Attempt: r.Attempt,
			Data: r.Data, Error: r.Error})
		if err != nil {
			return 0, fmt.Errorf("saga: encoding record of %q: %w", sagaID, err)
		}
		if r.Type == "" {
			return 0, fmt.Errorf("%w: record %d of saga %q has no type", ErrInvalidAppend, i, sagaID)
		}
		events[i] = eventsource.EventData{
			ID:       eventsource.NewID(),
			Type:     string(r.Type),
			Data:     data,
			Metadata: eventsource.Metadata{CorrelationID: sagaID},
		}
	}
	res, err := s.es.Append(ctx, s.prefix+sagaID, eventsource.Exact(expected), events...)
	if err != nil {
		var ce *eventsource.ConcurrencyError
		if errors.As(err, &ce) {
			return 0, &ConflictError{SagaID: sagaID, Expected: expected, Actual: ce.Actual}
		}
		return 0, fmt.Errorf("saga: append to %q: %w", sagaID, err)
	}
	return res.Version, nil
}

// Load implements [Store.Load].
func (s *EventStore) Load(ctx context.Context, sagaID string) ([]Record, error) {
	var out []Record
	for ev, err := range s.es.ReadStream(ctx, s.prefix+sagaID, eventsource.StreamQuery{}) {
		if err != nil {
			return nil, fmt.Errorf("saga: load %q: %w", sagaID, err)
		}
		r, err := decodeRecord(&ev)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("saga: load %q: %w", sagaID, err)
		}
		return nil, fmt.Errorf("%w: %q", ErrNotFound, sagaID)
	}
	return out, nil
}

// List implements [Store.List]. It reads the events appended since the
// last call before answering.
func (s *EventStore) List(ctx context.Context, q Query) ([]Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ev, err := range s.es.ReadAll(ctx, s.position+1, s.filter) {
		if err != nil {
			return nil, fmt.Errorf("saga: list: %w", err)
		}
		r, err := decodeRecord(&ev)
		if err != nil {
			return nil, err
		}
		id := strings.TrimPrefix(ev.StreamID, s.prefix)
		sum := s.index[id]
		if sum == nil {
			sum = &Summary{ID: id, Name: r.Saga, Created: r.Time}
			s.index[id] = sum
		}
		sum.State, sum.Version, sum.Updated = r.State, r.Version, r.Time
		s.position = ev.Position
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	var out []Summary
	for id, sum := range s.index {
		if id > q.After && q.matches(sum.State) {
			out = append(out, *sum)
		}
	}
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.ID, b.ID) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func decodeRecord(ev *eventsource.Event) (Record, error) {
	var sr storedRecord
	if err := json.Unmarshal(ev.Data, &sr); err != nil {
		return Record{}, fmt.Errorf("%w: event %s of stream %q: %w", ErrCorruptLog, ev.ID, ev.StreamID, err)
	}
	r := Record{Version: ev.Version, Type: RecordType(ev.Type), State: sr.State, Saga: sr.Saga, Step: sr.Step,
		Attempt: sr.Attempt, Data: sr.Data, Error: sr.Error}
	if sr.Time != 0 {
		r.Time = timeFromUnixNano(sr.Time)
	}
	return r, nil
}
