package eventsource_test

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/eventsource"
)

// naiveStore is the baseline: a map of per-stream slices and one global
// slice behind one mutex, implementing the same contract (it passes the
// conformance suite, see TestNaiveStoreConformance) in the most direct way.
type naiveStore struct {
	mu      sync.Mutex
	streams map[string][]eventsource.Event
	log     []eventsource.Event
	batches [][2]uint64 // first and last position of the append that stored each event
	ids     map[string]uint64
	last    time.Time
	notify  chan struct{}
}

func newNaiveStore() *naiveStore {
	return &naiveStore{streams: map[string][]eventsource.Event{}, ids: map[string]uint64{}, notify: make(chan struct{})}
}

func (s *naiveStore) Append(ctx context.Context, stream string, exp eventsource.ExpectedVersion, evs ...eventsource.EventData) (eventsource.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventsource.AppendResult{}, err
	}
	appends := [1]eventsource.StreamAppend{{StreamID: stream, Expected: exp, Events: evs}}
	var results [1]eventsource.AppendResult
	if err := s.commit(appends[:], results[:]); err != nil {
		return eventsource.AppendResult{}, err
	}
	return results[0], nil
}

func (s *naiveStore) AppendStreams(ctx context.Context, appends ...eventsource.StreamAppend) ([]eventsource.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(appends) == 0 {
		return nil, fmt.Errorf("%w: no streams", eventsource.ErrInvalidAppend)
	}
	results := make([]eventsource.AppendResult, len(appends))
	if err := s.commit(appends, results); err != nil {
		return nil, err
	}
	return results, nil
}

func (s *naiveStore) commit(appends []eventsource.StreamAppend, results []eventsource.AppendResult) error {
	var idBuf [4]string
	ids := idBuf[:0]
	for i, a := range appends {
		if a.StreamID == "" || len(a.Events) == 0 || a.Expected < eventsource.StreamExists {
			return fmt.Errorf("%w: bad stream part", eventsource.ErrInvalidAppend)
		}
		for _, b := range appends[:i] {
			if b.StreamID == a.StreamID {
				return fmt.Errorf("%w: stream twice", eventsource.ErrInvalidAppend)
			}
		}
		for _, e := range a.Events {
			if e.Type == "" || e.SchemaVersion < 0 {
				return fmt.Errorf("%w: bad event", eventsource.ErrInvalidAppend)
			}
			id := e.ID
			if id == "" {
				id = eventsource.NewID()
			}
			if slices.Contains(ids, id) {
				return fmt.Errorf("%w: repeated ID", eventsource.ErrInvalidAppend)
			}
			ids = append(ids, id)
		}
	}
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.ids[ids[0]]; ok { // re-send?
		b := s.batches[p-1]
		if b[0] != p || b[1]-b[0]+1 != uint64(len(ids)) {
			return eventsource.ErrDuplicateEventID
		}
		k := 0
		for i, a := range appends {
			for j := range a.Events {
				e := s.log[p-1+uint64(k)]
				if e.ID != ids[k] || e.StreamID != a.StreamID {
					return eventsource.ErrDuplicateEventID
				}
				if j == 0 {
					results[i] = eventsource.AppendResult{StreamID: a.StreamID, FirstVersion: e.Version, FirstPosition: e.Position}
				}
				results[i].Version, results[i].Position, results[i].Time = e.Version, e.Position, e.Time
				k++
			}
		}
		return nil
	}
	for _, id := range ids {
		if _, ok := s.ids[id]; ok {
			return eventsource.ErrDuplicateEventID
		}
	}
	for _, a := range appends {
		v := uint64(len(s.streams[a.StreamID]))
		ok := a.Expected == eventsource.Any || (a.Expected == eventsource.StreamExists && v > 0) || (a.Expected >= 0 && uint64(a.Expected) == v)
		if !ok {
			return &eventsource.ConcurrencyError{StreamID: a.StreamID, Expected: a.Expected, Actual: v}
		}
	}
	if now.Before(s.last) {
		now = s.last
	}
	s.last = now
	first := uint64(len(s.log)) + 1
	k := 0
	for i, a := range appends {
		for j, e := range a.Events {
			ev := eventsource.Event{
				StreamID: a.StreamID, Version: uint64(len(s.streams[a.StreamID])) + 1, Position: uint64(len(s.log)) + 1,
				ID: ids[k], Type: e.Type, SchemaVersion: max(e.SchemaVersion, 1), Time: now,
				Data: slices.Clone(e.Data), Metadata: cloneMD(e.Metadata),
			}
			s.streams[a.StreamID] = append(s.streams[a.StreamID], ev)
			s.log = append(s.log, ev)
			s.ids[ev.ID] = ev.Position
			if j == 0 {
				results[i] = eventsource.AppendResult{StreamID: a.StreamID, FirstVersion: ev.Version, FirstPosition: ev.Position}
			}
			results[i].Version, results[i].Position, results[i].Time = ev.Version, ev.Position, now
			k++
		}
	}
	for range ids {
		s.batches = append(s.batches, [2]uint64{first, uint64(len(s.log))})
	}
	close(s.notify)
	s.notify = make(chan struct{})
	return nil
}

func cloneMD(m eventsource.Metadata) eventsource.Metadata {
	if m.Headers != nil {
		h := make(map[string]string, len(m.Headers))
		for k, v := range m.Headers {
			h[k] = v
		}
		m.Headers = h
	}
	return m
}

func copyEvent(e eventsource.Event) eventsource.Event {
	e.Data = slices.Clone(e.Data)
	e.Metadata = cloneMD(e.Metadata)
	return e
}

func (s *naiveStore) ReadStream(ctx context.Context, stream string, q eventsource.StreamQuery) iter.Seq2[eventsource.Event, error] {
	return func(yield func(eventsource.Event, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(eventsource.Event{}, err)
			return
		}
		s.mu.Lock()
		evs := s.streams[stream]
		s.mu.Unlock()
		for _, e := range evs {
			if e.Version < q.From || (q.To > 0 && e.Version > q.To) || (!q.AsOf.IsZero() && e.Time.After(q.AsOf)) {
				continue
			}
			if !yield(copyEvent(e), nil) {
				return
			}
		}
	}
}

func (s *naiveStore) ReadAll(ctx context.Context, from uint64, f eventsource.Filter) iter.Seq2[eventsource.Event, error] {
	return func(yield func(eventsource.Event, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(eventsource.Event{}, err)
			return
		}
		s.mu.Lock()
		log := s.log
		s.mu.Unlock()
		for i := max(from, 1) - 1; i < uint64(len(log)); i++ {
			if f.Match(&log[i]) && !yield(copyEvent(log[i]), nil) {
				return
			}
		}
	}
}

func (s *naiveStore) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.streams[stream])), nil
}

func (s *naiveStore) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.log)), nil
}

func (s *naiveStore) Wait(ctx context.Context, after uint64) (uint64, error) {
	for {
		s.mu.Lock()
		h, ch := uint64(len(s.log)), s.notify
		s.mu.Unlock()
		if h > after {
			return h, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return h, ctx.Err()
		}
	}
}

var payload = []byte(`{"account":"acct-000042","amount":1250,"currency":"EUR","memo":"invoice 2025-0042 settlement"}`)

func benchStores() []struct {
	name string
	new  func() eventsource.Store
} {
	return []struct {
		name string
		new  func() eventsource.Store
	}{
		{"store=memory", func() eventsource.Store { return eventsource.NewMemoryStore() }},
		{"store=naive", func() eventsource.Store { return newNaiveStore() }},
	}
}

// BenchmarkAppend measures single-event appends (store-assigned IDs, a
// 97-byte payload, round robin over 1,000 streams with an exact expected
// version). The target: >= 500,000 appends/s for the memory store.
func BenchmarkAppend(b *testing.B) {
	streams := make([]string, 1000)
	for i := range streams {
		streams[i] = "account-" + strconv.Itoa(i)
	}
	for _, st := range benchStores() {
		b.Run(st.name, func(b *testing.B) {
			s := st.new()
			ctx := context.Background()
			versions := make([]uint64, len(streams))
			i := 0
			for b.Loop() {
				k := i % len(streams)
				if _, err := s.Append(ctx, streams[k], eventsource.Exact(versions[k]), eventsource.EventData{Type: "account.deposited", Data: payload}); err != nil {
					b.Fatal(err)
				}
				versions[k]++
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkAppendParallel measures contended single-event appends from
// GOMAXPROCS goroutines, each to its own streams (expected version Any).
func BenchmarkAppendParallel(b *testing.B) {
	for _, st := range benchStores() {
		b.Run(st.name, func(b *testing.B) {
			s := st.new()
			ctx := context.Background()
			var g atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				id := g.Add(1)
				streams := make([]string, 100)
				for i := range streams {
					streams[i] = fmt.Sprintf("account-%d_%d", id, i)
				}
				i := 0
				for pb.Next() {
					if _, err := s.Append(ctx, streams[i%len(streams)], eventsource.Any, eventsource.EventData{Type: "account.deposited", Data: payload}); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkReplayAll measures reading the whole global log (200,000
// events) through ReadAll. The target: >= 5,000,000 events/s.
func BenchmarkReplayAll(b *testing.B) {
	const n = 200_000
	for _, st := range benchStores() {
		b.Run(st.name, func(b *testing.B) {
			s := st.new()
			ctx := context.Background()
			for i := range n / 4 {
				d := eventsource.EventData{Type: "account.deposited", Data: payload}
				if _, err := s.Append(ctx, "account-"+strconv.Itoa(i%500), eventsource.Any, d, d, d, d); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				count := 0
				for e, err := range s.ReadAll(ctx, 0, eventsource.Filter{}) {
					if err != nil {
						b.Fatal(err)
					}
					count += len(e.Data) & 1
					count++
				}
				if count < n {
					b.Fatalf("read %d events, want %d", count, n)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkLoadAggregate loads an account with 10,000 events through a
// Repository, with and without a snapshot at version 9,900. The issue's
// target: the snapshot load at least 20x faster.
func BenchmarkLoadAggregate(b *testing.B) {
	const events, snapAt = 10_000, 9_900
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	reg := accountRegistry(b)
	plain, err := eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*account]{Type: "account"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := plain.Execute(ctx, "1", func(*account) ([]any, error) { return []any{Opened{Owner: "ann"}}, nil }); err != nil {
		b.Fatal(err)
	}
	for v := 2; v <= events; v += 100 {
		if _, err := plain.Execute(ctx, "1", func(*account) ([]any, error) {
			evs := make([]any, 100)
			for i := range evs {
				evs[i] = Deposited{Amount: 1}
			}
			if v+100 > events {
				evs = evs[:events-v+1]
			}
			return evs, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	snaps := eventsource.NewMemorySnapshotStore()
	withSnap, err := eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*account]{
		Type: "account", Snapshots: snaps, SnapshotEvery: 1 << 40, // never write one: use the one below
	})
	if err != nil {
		b.Fatal(err)
	}
	state, v, err := plain.LoadVersion(ctx, "1", snapAt)
	if err != nil || v != snapAt {
		b.Fatalf("LoadVersion: %v, %v", v, err)
	}
	data, _ := eventsource.JSON.Marshal(state)
	var snapTime time.Time
	for e := range s.ReadStream(ctx, "account-1", eventsource.StreamQuery{From: snapAt, To: snapAt}) {
		snapTime = e.Time
	}
	if err := snaps.SaveSnapshot(ctx, eventsource.Snapshot{StreamID: "account-1", AggregateType: "account", Version: snapAt, SchemaVersion: 1, Time: snapTime, Data: data}); err != nil {
		b.Fatal(err)
	}

	for _, c := range []struct {
		name string
		repo *eventsource.Repository[*account]
		want int // events replayed by the load
	}{
		{"snapshot=none", plain, events},
		{"snapshot=9900", withSnap, events - snapAt},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				st, v, err := c.repo.Load(ctx, "1")
				if err != nil || v != events || st.Replayed != c.want || st.Applied != events || st.Balance != events-1 {
					b.Fatalf("Load: version %d, %+v, %v", v, st, err)
				}
			}
		})
	}
}

// BenchmarkExecute measures a command round trip through a Repository on
// the memory store, over 100 accounts: load (from a snapshot at most 100
// events old, so up to 100 JSON events are decoded; that dominates),
// decide, encode, append with the loaded version, apply, snapshot by the
// default policy.
func BenchmarkExecute(b *testing.B) {
	ctx := context.Background()
	repo, err := eventsource.NewRepository(eventsource.NewMemoryStore(), accountRegistry(b), eventsource.RepositoryConfig[*account]{
		Type: "account", Snapshots: eventsource.NewMemorySnapshotStore(),
	})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	i := 0
	for b.Loop() {
		if _, err := repo.Execute(ctx, ids[i%len(ids)], deposit(1)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
