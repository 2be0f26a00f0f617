package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
)

// SumAll asks for the sum over every counter. Every test event adds 1, so
// a complete copy at checkpoint c sums to c.
type SumAll struct{}

func readSum(_ context.Context, t *cqrs.Table[int], _ SumAll) (Total, error) {
	var ans Total
	t.Read(func(_ func(string) (int, bool), each func(func(string, int) bool), cp uint64) {
		each(func(_ string, v int) bool { ans.Total += v; return true })
		ans.Checkpoint = cp
	})
	return ans, nil
}

// raiseTo sets *v to max(*v, x).
func raiseTo(v *atomic.Uint64, x uint64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// runModel runs rm.Run until the test ends.
func runModel[P eventsource.Projection](t *testing.T, rm *cqrs.ReadModel[P]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rm.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestQueryRouting(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
	f.add(t, ctx, "a", 3)
	require.NoError(t, cqrs.HandleQuery(f.queries, f.totals, readSum))

	t.Run("typed answer", func(t *testing.T) {
		res := f.add(t, ctx, "a", 4)
		got, err := cqrs.AskAfter[Total](ctx, f.queries, 0, TotalOf{Counter: "a"})
		require.NoError(t, err)
		assert.Equal(t, Total{}, got, "nothing fed the model yet: a stale read is what Ask promises")
		runModel(t, f.totals)
		got, err = cqrs.AskAfter[Total](ctx, f.queries, res.Token, TotalOf{Counter: "a"})
		require.NoError(t, err)
		assert.Equal(t, Total{Total: 7, Checkpoint: 2}, got)
	})
	t.Run("unregistered", func(t *testing.T) {
		_, err := cqrs.Ask[Total](ctx, f.queries, Ping{})
		require.ErrorIs(t, err, cqrs.ErrNoHandler)
	})
	t.Run("wrong result type", func(t *testing.T) {
		_, err := cqrs.Ask[int](ctx, f.queries, TotalOf{Counter: "a"})
		require.ErrorIs(t, err, cqrs.ErrNoHandler)
		assert.Contains(t, err.Error(), "answers cqrs_test.Total, not int")
	})
	t.Run("duplicate", func(t *testing.T) {
		err := cqrs.HandleQuery(f.queries, f.totals, readTotal)
		require.ErrorIs(t, err, cqrs.ErrDuplicateHandler)
	})
	t.Run("bad registrations", func(t *testing.T) {
		type Q struct{}
		h := func(context.Context, *cqrs.Table[int], Q) (int, error) { return 0, nil }
		require.ErrorIs(t, cqrs.HandleQuery(nil, f.totals, h), cqrs.ErrInvalidConfig)
		require.ErrorIs(t, cqrs.HandleQuery[Q, int, *cqrs.Table[int]](f.queries, nil, h), cqrs.ErrInvalidConfig)
		require.ErrorIs(t, cqrs.HandleQuery[Q, int](f.queries, f.totals, nil), cqrs.ErrInvalidConfig)
		_, err := cqrs.NewQueryBus(cqrs.QueryBusConfig{MaxInFlight: -1})
		require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
	})
}

func TestAskAfterWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
		res := f.add(t, ctx, "a", 2)
		got := make(chan Total, 1)
		go func() {
			ans, err := cqrs.AskAfter[Total](ctx, f.queries, res.Token, TotalOf{Counter: "a"})
			assert.NoError(t, err)
			got <- ans
		}()
		synctest.Wait()
		require.Empty(t, got, "answered before the read model had the write")
		time.Sleep(time.Second) // the feed starts late, within MaxWait
		runModel(t, f.totals)
		assert.Equal(t, Total{Total: 2, Checkpoint: 1}, <-got)
	})
}

func TestAskAfterNotConsistent(t *testing.T) {
	inBubble := func(name string, fn func(t *testing.T, f *fixture, tok cqrs.Token)) {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
				res := f.add(t, context.Background(), "a", 2)
				fn(t, f, res.Token)
			})
		})
	}
	ctx := context.Background()
	inBubble("MaxWait", func(t *testing.T, f *fixture, tok cqrs.Token) {
		start := time.Now()
		_, err := cqrs.AskAfter[Total](ctx, f.queries, tok, TotalOf{Counter: "a"})
		require.ErrorIs(t, err, cqrs.ErrNotConsistent)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, cqrs.DefaultMaxWait, time.Since(start))
		var nc *cqrs.NotConsistentError
		require.ErrorAs(t, err, &nc)
		assert.Equal(t, cqrs.NotConsistentError{Model: "totals", Token: 1, Checkpoint: 0, Err: context.DeadlineExceeded}, *nc)
	})
	inBubble("caller's context", func(t *testing.T, f *fixture, tok cqrs.Token) {
		qb, err := cqrs.NewQueryBus(cqrs.QueryBusConfig{MaxWait: -1})
		require.NoError(t, err)
		require.NoError(t, cqrs.HandleQuery(qb, f.totals, readTotal))
		cctx, cancel := context.WithTimeout(ctx, time.Hour)
		defer cancel()
		start := time.Now()
		_, err = cqrs.AskAfter[Total](cctx, qb, tok, TotalOf{Counter: "a"})
		require.ErrorIs(t, err, cqrs.ErrNotConsistent)
		assert.Equal(t, time.Hour, time.Since(start))
		cctx, cancel = context.WithCancel(ctx)
		cancel()
		_, err = cqrs.AskAfter[Total](cctx, qb, tok, TotalOf{Counter: "a"})
		require.ErrorIs(t, err, context.Canceled)
	})
	inBubble("token past the log", func(t *testing.T, f *fixture, tok cqrs.Token) {
		start := time.Now()
		_, err := cqrs.AskAfter[Total](ctx, f.queries, tok+1, TotalOf{Counter: "a"})
		require.ErrorIs(t, err, cqrs.ErrInvalidToken)
		assert.Zero(t, time.Since(start), "waited for a token no write can reach")
	})
	inBubble("no token reads what is there", func(t *testing.T, f *fixture, _ cqrs.Token) {
		got, err := cqrs.Ask[Total](ctx, f.queries, TotalOf{Counter: "a"})
		require.NoError(t, err)
		assert.Equal(t, Total{}, got)
	})
}

// TestReadYourWrites runs writers and readers concurrently. Each writer
// owns a counter and, after every command, asks with the command's token:
// it must see its own total exactly. Readers ask with the latest token
// any writer got: the state they see must be at least that recent.
func TestReadYourWrites(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{BatchSize: 3})
	require.NoError(t, cqrs.HandleQuery(f.queries, f.totals, readSum))
	runModel(t, f.totals)
	const writers, commands, readers = 6, 40, 4
	var latest atomic.Uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range readers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tok := cqrs.Token(latest.Load())
				ans, err := cqrs.AskAfter[Total](ctx, f.queries, tok, SumAll{})
				if !assert.NoError(t, err) {
					return
				}
				if ans.Checkpoint < uint64(tok) || ans.Total != int(ans.Checkpoint) {
					t.Errorf("reader %d: token %d, got %+v", r, tok, ans)
					return
				}
			}
		})
	}
	var ww sync.WaitGroup
	for w := range writers {
		ww.Go(func() {
			id := fmt.Sprint("w", w)
			for i := 1; i <= commands; i++ {
				res := f.add(t, ctx, id, 1)
				raiseTo(&latest, uint64(res.Token))
				ans, err := cqrs.AskAfter[Total](ctx, f.queries, res.Token, TotalOf{Counter: id})
				if !assert.NoError(t, err) {
					return
				}
				if ans.Total != i || ans.Checkpoint < uint64(res.Token) {
					t.Errorf("writer %d after command %d (token %d): read %+v", w, i, res.Token, ans)
					return
				}
			}
		})
	}
	ww.Wait()
	close(stop)
	wg.Wait()
}

// TestRebuildNeverServesPartialModel rebuilds a read model three times
// while writers append and readers query with the latest token. Every
// answer must come from a complete copy (sum == checkpoint) at least as
// recent as the token.
func TestRebuildNeverServesPartialModel(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{BatchSize: 16})
	require.NoError(t, cqrs.HandleQuery(f.queries, f.totals, readSum))
	const history = 4000
	for i := range history { // for the rebuilds to replay
		appendRaw(t, f.store, fmt.Sprint("h", i%50), 1)
	}
	runModel(t, f.totals)
	var latest atomic.Uint64
	latest.Store(history)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res, err := f.cmds.Dispatch(ctx, Add{Counter: fmt.Sprint("c", w, "x", i%500), N: 1})
				if !assert.NoError(t, err) {
					return
				}
				raiseTo(&latest, uint64(res.Token))
			}
		})
	}
	var answers atomic.Int64
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := cqrs.Token(latest.Load())
				ans, err := cqrs.AskAfter[Total](ctx, f.queries, tok, SumAll{})
				if !assert.NoError(t, err) {
					return
				}
				answers.Add(1)
				if ans.Checkpoint < uint64(tok) || ans.Total != int(ans.Checkpoint) {
					t.Errorf("token %d: served %+v", tok, ans)
					return
				}
			}
		})
	}
	for answers.Load() < 10 {
		time.Sleep(time.Millisecond) // let readers start; not synchronisation of the property
	}
	during := answers.Load()
	for range 3 {
		before := f.totals.Current()
		old, err := f.totals.Rebuild(ctx)
		require.NoError(t, err)
		assert.Same(t, before, old)
		assert.NotSame(t, old, f.totals.Current())
	}
	during = answers.Load() - during
	close(stop)
	wg.Wait()
	assert.Positive(t, during, "no query ran during the rebuilds")
	assert.Equal(t, uint64(3), f.totals.Stats().Rebuilds)
}

// recorder is a projection that counts how often each position reaches
// it. It applies whatever it is given, without ignoring repeats, and
// sets its checkpoint to what it is told: the ReadModel must protect it.
// Its Apply is atomic (like a database transaction): with probability
// failRate it fails before changing anything.
type recorder struct {
	mu       sync.Mutex
	cp       uint64
	counts   map[uint64]int
	replayed int
	rng      *rand.Rand
	failRate float64
}

func newRecorder() *recorder { return &recorder{counts: map[uint64]int{}} }

func (r *recorder) Checkpoint(context.Context) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cp, nil
}

var errInjected = errors.New("injected fault")

func (r *recorder) Apply(ctx context.Context, events []eventsource.Event, checkpoint uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rng != nil && r.rng.Float64() < r.failRate {
		return errInjected
	}
	for _, ev := range events {
		r.counts[ev.Position]++
		if cqrs.Replaying(ctx) {
			r.replayed++
		}
	}
	r.cp = checkpoint
	return nil
}

// faultyStore fails a ReadAll after failAt() events; a negative failAt
// means no failure.
type faultyStore struct {
	eventsource.Store
	mu     sync.Mutex
	failAt func() int
}

// randomFaults fails every ReadAll after a random number of events.
func randomFaults(s eventsource.Store, rng *rand.Rand) *faultyStore {
	return &faultyStore{Store: s, failAt: func() int { return rng.IntN(40) }}
}

func (s *faultyStore) ReadAll(ctx context.Context, from uint64, f eventsource.Filter) iter.Seq2[eventsource.Event, error] {
	s.mu.Lock()
	budget := s.failAt()
	s.mu.Unlock()
	return func(yield func(eventsource.Event, error) bool) {
		n := 0
		for ev, err := range s.Store.ReadAll(ctx, from, f) {
			if err == nil && n == budget {
				yield(eventsource.Event{}, errInjected)
				return
			}
			n++
			if !yield(ev, err) {
				return
			}
		}
	}
}

// TestNoDoubleApplyAcrossCrashes feeds a durable projection through a
// store whose reads fail at random and a projection whose applies fail at
// random, restarting (a new ReadModel over the same projection, like a
// process restart) after every failure, and replaying stale batches as a
// resumed feed or a redelivery would. Every event must reach the
// projection exactly once.
func TestNoDoubleApplyAcrossCrashes(t *testing.T) {
	ctx := context.Background()
	mem := eventsource.NewMemoryStore()
	const events = 300
	for i := range events {
		appendRaw(t, mem, fmt.Sprint(i%7), 1)
	}
	all := make([]eventsource.Event, 0, events)
	for ev, err := range mem.ReadAll(ctx, 0, eventsource.Filter{}) {
		require.NoError(t, err)
		all = append(all, ev)
	}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			store := randomFaults(mem, rng)
			rec := newRecorder()
			rec.rng, rec.failRate = rng, 0.2
			restarts := 0
			for {
				rm, err := cqrs.NewReadModel(ctx, store, rec, cqrs.ReadModelConfig[*recorder]{Name: "rec", BatchSize: 1 + rng.IntN(20)})
				require.NoError(t, err)
				// A redelivery: a batch that starts with events the
				// projection already has and may go on past them.
				if cp, _ := rec.Checkpoint(ctx); cp > 0 && cp < events {
					lo := rng.IntN(int(cp))
					hi := min(events, int(cp)+rng.IntN(10))
					if err := rm.Apply(ctx, all[lo:hi], uint64(hi)); err != nil {
						require.ErrorIs(t, err, errInjected)
					}
				}
				p, err := eventsource.NewProjector(store, rm, eventsource.ProjectorConfig{BatchSize: 1 + rng.IntN(20)})
				require.NoError(t, err)
				cp, err := p.CatchUp(ctx)
				if err == nil && cp == events {
					break
				}
				require.ErrorIs(t, err, errInjected)
				restarts++
			}
			assert.Positive(t, restarts)
			for pos := uint64(1); pos <= events; pos++ {
				if rec.counts[pos] != 1 {
					t.Fatalf("position %d applied %d times after %d restarts", pos, rec.counts[pos], restarts)
				}
			}
		})
	}
}

func TestReadModelDropsRepeats(t *testing.T) {
	ctx := context.Background()
	rec := newRecorder()
	rm, err := cqrs.NewReadModel(ctx, eventsource.NewMemoryStore(), rec, cqrs.ReadModelConfig[*recorder]{Name: "rec"})
	require.NoError(t, err)
	evs := []eventsource.Event{{Position: 1}, {Position: 2}, {Position: 3}}
	require.NoError(t, rm.Apply(ctx, evs[:2], 2))
	require.NoError(t, rm.Apply(ctx, evs, 3))     // 1 and 2 again
	require.NoError(t, rm.Apply(ctx, evs[:1], 1)) // an old checkpoint
	assert.Equal(t, map[uint64]int{1: 1, 2: 1, 3: 1}, rec.counts)
	assert.Equal(t, uint64(3), rec.cp, "checkpoint moved back")
	assert.Equal(t, cqrs.ReadModelStats{Checkpoint: 3, Events: 3, Batches: 2}, rm.Stats())
}

func TestSideEffectsSuppressedDuringRebuild(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	effects := map[uint64]int{}
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{
		BatchSize: 8,
		SideEffects: func(_ context.Context, evs []eventsource.Event) error {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range evs {
				effects[ev.Position]++
			}
			return nil
		},
	})
	for i := range 300 {
		appendRaw(t, f.store, fmt.Sprint(i%9), 1)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	fed := make(chan error, 1)
	go func() { fed <- f.totals.Run(runCtx) }()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 300 {
			f.add(t, ctx, fmt.Sprint(i%5), 1)
		}
	})
	for range 3 {
		_, err := f.totals.Rebuild(ctx)
		require.NoError(t, err)
	}
	wg.Wait()
	res := f.add(t, ctx, "last", 1)
	require.NoError(t, f.totals.WaitFor(ctx, res.Token))
	// WaitFor returns once the event is applied; its side effects run
	// just after, on the feeding goroutine. Stopping the feed waits for
	// them.
	stop()
	require.ErrorIs(t, <-fed, context.Canceled)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, effects, 601)
	for pos, n := range effects {
		if n != 1 {
			t.Errorf("position %d: side effects ran %d times", pos, n)
		}
	}
}

func TestRebuildReplaysWithReplayingContext(t *testing.T) {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	for i := range 10 {
		appendRaw(t, store, fmt.Sprint(i), 1)
	}
	live := newRecorder()
	var shadow *recorder
	rm, err := cqrs.NewReadModel(ctx, store, live, cqrs.ReadModelConfig[*recorder]{
		Name: "rec",
		New:  func() *recorder { shadow = newRecorder(); return shadow },
	})
	require.NoError(t, err)
	p, err := eventsource.NewProjector(store, rm, eventsource.ProjectorConfig{})
	require.NoError(t, err)
	_, err = p.CatchUp(ctx)
	require.NoError(t, err)
	_, err = rm.Rebuild(ctx)
	require.NoError(t, err)
	assert.Zero(t, live.replayed)
	assert.Equal(t, 10, shadow.replayed)
	assert.Same(t, shadow, rm.Current())
}

func TestRebuildErrors(t *testing.T) {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	appendRaw(t, store, "a", 1)
	t.Run("no New", func(t *testing.T) {
		rm, err := cqrs.NewReadModel(ctx, store, newRecorder(), cqrs.ReadModelConfig[*recorder]{Name: "x"})
		require.NoError(t, err)
		_, err = rm.Rebuild(ctx)
		require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
	})
	t.Run("New returns a non-empty copy", func(t *testing.T) {
		rm, err := cqrs.NewReadModel(ctx, store, newRecorder(), cqrs.ReadModelConfig[*recorder]{
			Name: "x", New: func() *recorder { r := newRecorder(); r.cp = 5; return r }})
		require.NoError(t, err)
		_, err = rm.Rebuild(ctx)
		require.ErrorIs(t, err, eventsource.ErrProjectionNotEmpty)
	})
	t.Run("New returns nil", func(t *testing.T) {
		rm, err := cqrs.NewReadModel(ctx, store, newRecorder(), cqrs.ReadModelConfig[*recorder]{
			Name: "x", New: func() *recorder { return nil }})
		require.NoError(t, err)
		_, err = rm.Rebuild(ctx)
		require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
	})
	t.Run("one at a time; a failed rebuild keeps the serving copy", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		live := newRecorder()
		rm, err := cqrs.NewReadModel(ctx, store, live, cqrs.ReadModelConfig[*recorder]{Name: "x", New: func() *recorder {
			close(entered)
			<-release
			r := newRecorder()
			r.rng, r.failRate = rand.New(rand.NewPCG(1, 1)), 1
			return r
		}})
		require.NoError(t, err)
		require.NoError(t, rm.Apply(ctx, []eventsource.Event{{Position: 1}}, 1))
		done := make(chan error)
		go func() { _, err := rm.Rebuild(ctx); done <- err }()
		<-entered
		_, err = rm.Rebuild(ctx)
		require.ErrorIs(t, err, cqrs.ErrRebuildInProgress)
		close(release)
		require.ErrorIs(t, <-done, errInjected)
		assert.Same(t, live, rm.Current())
	})
}

func TestReadModelConfigErrors(t *testing.T) {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	for name, tc := range map[string]struct {
		store eventsource.Store
		p     *recorder
		cfg   cqrs.ReadModelConfig[*recorder]
	}{
		"nil store":         {nil, newRecorder(), cqrs.ReadModelConfig[*recorder]{Name: "x"}},
		"nil projection":    {store, nil, cqrs.ReadModelConfig[*recorder]{Name: "x"}},
		"no name":           {store, newRecorder(), cqrs.ReadModelConfig[*recorder]{}},
		"negative batch":    {store, newRecorder(), cqrs.ReadModelConfig[*recorder]{Name: "x", BatchSize: -1}},
		"negative interval": {store, newRecorder(), cqrs.ReadModelConfig[*recorder]{Name: "x", PollInterval: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cqrs.NewReadModel(ctx, tc.store, tc.p, tc.cfg)
			require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
		})
	}
}

// TestWaitForPolls shows a query process waiting on a read model that
// another process feeds: it sees progress only by polling.
func TestWaitForPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := eventsource.NewMemoryStore()
		shared := newTotals() // the "database" both processes use
		feeder, err := cqrs.NewReadModel(ctx, store, shared, cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "writer side"})
		require.NoError(t, err)
		runModel(t, feeder)
		polling, err := cqrs.NewReadModel(ctx, store, shared, cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "reader side", PollInterval: 50 * time.Millisecond})
		require.NoError(t, err)
		deaf, err := cqrs.NewReadModel(ctx, store, shared, cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "no polling"})
		require.NoError(t, err)

		tok := cqrs.Token(appendRaw(t, store, "a", 1))
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		require.NoError(t, polling.WaitFor(wctx, tok))
		assert.Equal(t, 50*time.Millisecond, time.Since(start))
		require.ErrorIs(t, deaf.WaitFor(wctx, tok), cqrs.ErrNotConsistent)
	})
}
