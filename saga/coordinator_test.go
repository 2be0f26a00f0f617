package saga_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/saga"
)

// trip is flight, then hotel and car in parallel.
type trip struct {
	events             *eventLog
	flight, hotel, car *service
	def                *saga.Definition
}

func newTrip(t testing.TB, carFail func(string) bool) *trip {
	tr := &trip{events: &eventLog{}}
	tr.flight = newService("flight", tr.events)
	tr.hotel = newService("hotel", tr.events)
	tr.car = newService("car", tr.events)
	tr.def = mustDefinition(t, "trip",
		step(tr.flight, nil, never),
		step(tr.hotel, []string{"flight"}, never),
		step(tr.car, []string{"flight"}, carFail),
	)
	return tr
}

func TestExecuteCompletes(t *testing.T) {
	tr := newTrip(t, never)
	c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, tr.def)
	st, err := c.Execute(context.Background(), "trip", "t1", []byte("input"))
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if st.State != saga.Completed || st.ID != "t1" || st.Saga != "trip" || string(st.Input) != "input" {
		t.Fatalf("status %+v", st)
	}
	for _, s := range st.Steps {
		if s.State != saga.StepSucceeded || s.Attempts != 1 || string(s.Output) != s.Name+"#t1" {
			t.Errorf("step %+v", s)
		}
	}
	if ev := tr.events.list(); ev[0] != "flight booked" || len(ev) != 3 {
		t.Errorf("events %v: flight must come first", ev)
	}
	got, err := c.Status(context.Background(), "t1")
	if err != nil || got.State != saga.Completed || got.Version != st.Version {
		t.Errorf("Status = %+v, %v", got, err)
	}
	if _, err := c.Execute(context.Background(), "trip", "t1", nil); !errors.Is(err, saga.ErrExists) {
		t.Errorf("second Execute with the same ID: %v, want ErrExists", err)
	}
	if b, _ := tr.flight.counts("t1"); b != 1 {
		t.Errorf("flight booked %d times", b)
	}
	if _, err := c.Execute(context.Background(), "nope", "", nil); !errors.Is(err, saga.ErrUnknownSaga) {
		t.Errorf("unknown saga: %v", err)
	}
}

func TestIndependentStepsRunInParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := func(name string, deps ...string) saga.Step {
			return saga.Step{Name: name, DependsOn: deps, Action: func(ctx context.Context, c *saga.Call) ([]byte, error) {
				time.Sleep(time.Second)
				out := name
				for _, d := range deps {
					r, ok := c.Result(d)
					if !ok {
						return nil, saga.Fail(fmt.Errorf("no result of %s", d))
					}
					out += "(" + string(r) + ")"
				}
				return []byte(out), nil
			}}
		}
		d := mustDefinition(t, "p", slow("a"), slow("b", "a"), slow("c", "a"), slow("d", "a"), slow("e", "b", "c", "d"))
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d)
		start := time.Now()
		st, err := c.Execute(t.Context(), "p", "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		// a, then b c d together, then e: three seconds, not five.
		if el := time.Since(start); el != 3*time.Second {
			t.Errorf("took %v, want 3s", el)
		}
		if out := string(st.Steps[4].Output); out != "e(b(a))(c(a))(d(a))" {
			t.Errorf("e's output %q", out)
		}
	})
}

func TestResultOnlyOfDependencies(t *testing.T) {
	var got []string
	d := mustDefinition(t, "r",
		saga.Step{Name: "a", Action: func(context.Context, *saga.Call) ([]byte, error) { return []byte("A"), nil }},
		saga.Step{Name: "b", Action: func(context.Context, *saga.Call) ([]byte, error) { return []byte("B"), nil }},
		saga.Step{Name: "c", DependsOn: []string{"a"}, Action: func(_ context.Context, c *saga.Call) ([]byte, error) {
			for _, s := range []string{"a", "b", "c", "zz"} {
				r, ok := c.Result(s)
				got = append(got, fmt.Sprintf("%s=%s/%v", s, r, ok))
			}
			return nil, nil
		}},
	)
	if _, err := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d).Execute(t.Context(), "r", "", nil); err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, " "); s != "a=A/true b=/false c=/false zz=/false" {
		t.Errorf("Result: %s", s)
	}
}

func TestBusinessFailureCompensatesInReverseDependencyOrder(t *testing.T) {
	events := &eventLog{}
	svc := map[string]*service{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		svc[n] = newService(n, events)
	}
	// a -> b -> c (fails); a -> d; e is independent and has no compensation.
	e := step(svc["e"], nil, never)
	e.Compensate = nil
	d := mustDefinition(t, "dag",
		step(svc["a"], nil, never),
		step(svc["b"], []string{"a"}, never),
		step(svc["c"], []string{"b"}, always),
		step(svc["d"], []string{"a"}, never),
		e,
	)
	c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d)
	st, err := c.Execute(t.Context(), "dag", "s", nil)
	var se *saga.Error
	if !errors.As(err, &se) || !errors.Is(err, saga.ErrCompensated) || !errors.Is(err, saga.ErrFailed) || !errors.Is(err, errNoAvailability) {
		t.Fatalf("Execute: %v; want a *saga.Error matching ErrCompensated, ErrFailed and the cause", err)
	}
	if se.Step != "c" || se.State != saga.Compensated || st.State != saga.Compensated || st.Step != "c" {
		t.Errorf("error %+v, status %s at %q", se, st.State, st.Step)
	}
	wantStates := map[string]saga.StepState{"a": saga.StepCompensated, "b": saga.StepCompensated, "c": saga.StepFailed, "d": saga.StepCompensated, "e": saga.StepSucceeded}
	for _, s := range st.Steps {
		if s.State != wantStates[s.Name] {
			t.Errorf("step %s is %s, want %s", s.Name, s.State, wantStates[s.Name])
		}
	}
	// A step is compensated only after every step that depends on it.
	for _, pair := range [][2]string{{"b", "a"}, {"d", "a"}} {
		if events.index(pair[0]+" cancelled") > events.index(pair[1]+" cancelled") {
			t.Errorf("%s was compensated after %s: %v", pair[0], pair[1], events.list())
		}
	}
	if b, cc := svc["c"].counts("s"); b != 0 || cc != 0 {
		t.Errorf("the failed step had effects: booked %d cancelled %d", b, cc)
	}
}

func TestCompensatedErrorSurvivesReplay(t *testing.T) {
	tr := newTrip(t, always)
	store := saga.NewMemoryStore()
	c := mustCoordinator(t, store, saga.Config{}, tr.def)
	if _, err := c.Execute(t.Context(), "trip", "t", nil); !errors.Is(err, saga.ErrCompensated) {
		t.Fatal(err)
	}
	other := mustCoordinator(t, store, saga.Config{}, tr.def)
	st, err := other.Resume(t.Context(), "t")
	if st.State != saga.Compensated || !errors.Is(err, saga.ErrCompensated) || !errors.Is(err, saga.ErrFailed) ||
		!strings.Contains(err.Error(), "no availability") {
		t.Fatalf("Resume of a compensated saga = %s, %v", st.State, err)
	}
	if v, _ := other.Status(t.Context(), "t"); v.Version != st.Version {
		t.Errorf("Resume of a finished saga wrote records")
	}
}

func TestUnknownOutcomeRetriesWithBackoffThenParks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts []time.Duration
		start := time.Now()
		healthy := atomic.Bool{}
		flaky := saga.Step{Name: "flaky", Action: func(_ context.Context, c *saga.Call) ([]byte, error) {
			attempts = append(attempts, time.Since(start))
			if healthy.Load() {
				return []byte("ok"), nil
			}
			return nil, errors.New("connection reset")
		}, Compensate: func(context.Context, *saga.Call) error { return nil }}
		flaky.Policy = saga.Policy{MaxAttempts: 4, Backoff: saga.Backoff{Initial: 100 * time.Millisecond, Multiplier: 3, Max: 500 * time.Millisecond, Jitter: -1}}
		d := mustDefinition(t, "f", flaky)
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d)
		st, err := c.Execute(t.Context(), "f", "f1", nil)
		if !errors.Is(err, saga.ErrStuck) || st.State != saga.Stuck || st.Parked != saga.Running || st.Step != "flaky" {
			t.Fatalf("Execute = %s (parked from %s at %q), %v; want stuck", st.State, st.Parked, st.Step, err)
		}
		want := []time.Duration{0, 100 * time.Millisecond, 400 * time.Millisecond, 900 * time.Millisecond}
		if !slices.Equal(attempts, want) {
			t.Errorf("attempts at %v, want %v (backoff 100ms, 300ms, capped 500ms)", attempts, want)
		}
		if !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), "4 attempts") {
			t.Errorf("stuck error %q should name the attempts and the last error", err)
		}
		stuck, _ := c.List(t.Context(), saga.Query{States: []saga.State{saga.Stuck}})
		if len(stuck) != 1 || stuck[0].ID != "f1" {
			t.Errorf("List stuck = %+v", stuck)
		}
		// Recovery leaves a stuck saga to the operator.
		if sts, err := c.Recover(t.Context()); len(sts) != 0 || err != nil {
			t.Errorf("Recover touched a stuck saga: %v, %v", sts, err)
		}
		if _, err := c.Compensate(t.Context(), "zz", "x"); !errors.Is(err, saga.ErrNotFound) {
			t.Errorf("Compensate of a missing saga: %v", err)
		}
		healthy.Store(true)
		st, err = c.Retry(t.Context(), "f1")
		if err != nil || st.State != saga.Completed || st.Steps[0].Attempts != 5 {
			t.Fatalf("Retry = %s after %d attempts, %v", st.State, st.Steps[0].Attempts, err)
		}
		if _, err := c.Retry(t.Context(), "f1"); !errors.Is(err, saga.ErrFinished) {
			t.Errorf("Retry of a completed saga: %v", err)
		}
	})
}

func TestStepTimeoutIsAnUnknownOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := saga.Step{Name: "hang", Policy: saga.Policy{Timeout: 2 * time.Second, MaxAttempts: 2, Backoff: saga.Backoff{Initial: time.Second, Jitter: -1}},
			Action: func(ctx context.Context, _ *saga.Call) ([]byte, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}}
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, mustDefinition(t, "h", hang))
		start := time.Now()
		st, err := c.Execute(t.Context(), "h", "", nil)
		if !errors.Is(err, saga.ErrStuck) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Execute: %v", err)
		}
		if el := time.Since(start); el != 5*time.Second {
			t.Errorf("two 2s attempts and a 1s backoff took %v", el)
		}
		if st.Steps[0].Attempts != 2 || !st.Steps[0].Uncertain {
			t.Errorf("step %+v", st.Steps[0])
		}
	})
}

func TestUncertainStepThatLaterFailsIsCompensated(t *testing.T) {
	svc := newService("pay", nil)
	var calls atomic.Int32
	pay := saga.Step{Name: "pay", Policy: fastPolicy,
		Action: func(ctx context.Context, c *saga.Call) ([]byte, error) {
			if calls.Add(1) == 1 {
				// The effect happens but the reply is lost.
				if _, err := svc.book(ctx, c.Key(), false); err != nil {
					return nil, err
				}
				return nil, errors.New("reply lost")
			}
			return nil, saga.Fail(errors.New("card declined"))
		},
		Compensate: func(ctx context.Context, c *saga.Call) error { return svc.cancel(ctx, c.Key()) },
	}
	c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, mustDefinition(t, "u", pay))
	st, err := c.Execute(t.Context(), "u", "u1", nil)
	if !errors.Is(err, saga.ErrCompensated) {
		t.Fatal(err)
	}
	if b, cc := svc.counts("u1"); b != 1 || cc != 1 || st.Steps[0].State != saga.StepCompensated {
		t.Errorf("booked %d cancelled %d, step %s: an uncertain step must be compensated", b, cc, st.Steps[0].State)
	}
}

func TestCancellationStillCompensates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTrip(t, never)
		var compCtxErr []error
		hotel := step(tr.hotel, []string{"flight"}, never)
		hotel.Action = func(ctx context.Context, c *saga.Call) ([]byte, error) {
			<-ctx.Done() // the hotel is slow; the caller gives up
			return nil, ctx.Err()
		}
		flight := step(tr.flight, nil, never)
		flightComp := flight.Compensate
		flight.Compensate = func(ctx context.Context, c *saga.Call) error {
			time.Sleep(time.Second) // compensation takes a while after the cancellation
			compCtxErr = append(compCtxErr, ctx.Err())
			return flightComp(ctx, c)
		}
		d := mustDefinition(t, "trip", flight, hotel, step(tr.car, []string{"flight"}, never))
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(10*time.Second, cancel)
		st, err := c.Execute(ctx, "trip", "t", nil)
		if !errors.Is(err, saga.ErrCompensated) || errors.Is(err, saga.ErrFailed) || !strings.Contains(err.Error(), "cancelled") {
			t.Fatalf("Execute after cancellation: %v", err)
		}
		for _, svc := range []*service{tr.flight, tr.car} {
			if b, cc := svc.counts("t"); b != 1 || cc != 1 {
				t.Errorf("%s booked %d, cancelled %d", svc.name, b, cc)
			}
		}
		if b, cc := tr.hotel.counts("t"); b != 0 || cc != 0 {
			t.Errorf("hotel booked %d, cancelled %d", b, cc)
		}
		if st.Steps[1].State != saga.StepCompensated {
			t.Errorf("the hotel, whose outcome was unknown, is %s; want compensated", st.Steps[1].State)
		}
		if len(compCtxErr) != 1 || compCtxErr[0] != nil {
			t.Errorf("the compensation's context: %v; want live", compCtxErr)
		}
	})
}

func TestCompensationRetriesThenParksThenForcedRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fails atomic.Int32
		fails.Store(1 << 20)
		var compAttempts atomic.Int32
		a := saga.Step{Name: "a", Action: func(context.Context, *saga.Call) ([]byte, error) { return []byte("A"), nil },
			Compensate: func(_ context.Context, c *saga.Call) error {
				compAttempts.Add(1)
				if string(c.Output) != "A" {
					return saga.Fail(fmt.Errorf("compensation got output %q", c.Output))
				}
				if fails.Add(-1) >= 0 {
					return errors.New("refund service down")
				}
				return nil
			}}
		b := saga.Step{Name: "b", DependsOn: []string{"a"}, Action: func(context.Context, *saga.Call) ([]byte, error) {
			return nil, saga.Fail(errors.New("no"))
		}}
		cfg := saga.Config{Policy: saga.Policy{CompensationAttempts: 3, Backoff: saga.Backoff{Initial: time.Second, Jitter: -1}}}
		c := mustCoordinator(t, saga.NewMemoryStore(), cfg, mustDefinition(t, "c", a, b))
		st, err := c.Execute(t.Context(), "c", "c1", nil)
		if !errors.Is(err, saga.ErrStuck) || st.Parked != saga.Compensating || compAttempts.Load() != 3 {
			t.Fatalf("Execute = %s from %s after %d compensation attempts, %v", st.State, st.Parked, compAttempts.Load(), err)
		}
		fails.Store(1)
		st, err = c.Retry(t.Context(), "c1")
		if !errors.Is(err, saga.ErrCompensated) || compAttempts.Load() != 5 || st.Steps[0].CompensationAttempts != 5 {
			t.Fatalf("Retry = %s after %d attempts, %v", st.State, compAttempts.Load(), err)
		}
	})
}

func TestCompensationThatCannotSucceedParksAtOnce(t *testing.T) {
	var attempts atomic.Int32
	a := saga.Step{Name: "a", Action: func(context.Context, *saga.Call) ([]byte, error) { return nil, nil },
		Compensate: func(context.Context, *saga.Call) error {
			attempts.Add(1)
			return saga.Fail(errors.New("goods already shipped"))
		}}
	b := saga.Step{Name: "b", DependsOn: []string{"a"}, Action: func(context.Context, *saga.Call) ([]byte, error) {
		return nil, saga.Fail(errors.New("no"))
	}}
	c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{Policy: fastPolicy}, mustDefinition(t, "c", a, b))
	_, err := c.Execute(t.Context(), "c", "", nil)
	if !errors.Is(err, saga.ErrStuck) || attempts.Load() != 1 || !strings.Contains(err.Error(), "shipped") {
		t.Fatalf("Execute: %v after %d attempts", err, attempts.Load())
	}
}

func TestCompensationTimeoutParks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := saga.Step{Name: "a", Action: func(context.Context, *saga.Call) ([]byte, error) { return nil, nil },
			Compensate: func(ctx context.Context, _ *saga.Call) error {
				<-ctx.Done()
				return ctx.Err()
			}}
		b := saga.Step{Name: "b", DependsOn: []string{"a"}, Action: func(context.Context, *saga.Call) ([]byte, error) {
			return nil, saga.Fail(errors.New("no"))
		}}
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{CompensationTimeout: time.Minute, Policy: saga.Policy{Timeout: -1}}, mustDefinition(t, "c", a, b))
		start := time.Now()
		_, err := c.Execute(t.Context(), "c", "", nil)
		if !errors.Is(err, saga.ErrStuck) || !strings.Contains(err.Error(), "compensation timeout") {
			t.Fatalf("Execute: %v", err)
		}
		if el := time.Since(start); el != time.Minute {
			t.Errorf("parked after %v, want the 1m compensation timeout", el)
		}
	})
}

func TestOperatorForcesCompensationOfARunningSaga(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTrip(t, never)
		hotel := step(tr.hotel, []string{"flight"}, never)
		hotel.Policy.Timeout = -1
		hotel.Action = func(ctx context.Context, c *saga.Call) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		d := mustDefinition(t, "trip", step(tr.flight, nil, never), hotel, step(tr.car, []string{"flight"}, never))
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d)
		done := make(chan error)
		go func() {
			_, err := c.Execute(t.Context(), "trip", "t", nil)
			done <- err
		}()
		synctest.Wait()
		st, err := c.Compensate(t.Context(), "t", "hotel hangs")
		if !errors.Is(err, saga.ErrCompensated) || !strings.Contains(err.Error(), "hotel hangs") {
			t.Fatalf("Compensate: %s, %v", st.State, err)
		}
		if err := <-done; !errors.Is(err, saga.ErrPreempted) {
			t.Errorf("the preempted Execute returned %v, want ErrPreempted", err)
		}
		if b, cc := tr.flight.counts("t"); b != 1 || cc != 1 {
			t.Errorf("flight booked %d cancelled %d", b, cc)
		}
		if _, err := c.Compensate(t.Context(), "t", "again"); !errors.Is(err, saga.ErrFinished) {
			t.Errorf("Compensate of a compensated saga: %v", err)
		}
		if _, err := c.Abort(t.Context(), "t", "x"); !errors.Is(err, saga.ErrFinished) {
			t.Errorf("Abort of a compensated saga: %v", err)
		}
	})
}

func TestOperatorAbortsAStuckSaga(t *testing.T) {
	d := mustDefinition(t, "s", saga.Step{Name: "x", Policy: saga.Policy{MaxAttempts: 1},
		Action: func(context.Context, *saga.Call) ([]byte, error) { return nil, errors.New("unknown") }})
	c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d)
	if _, err := c.Execute(t.Context(), "s", "s1", nil); !errors.Is(err, saga.ErrStuck) {
		t.Fatal(err)
	}
	if _, err := c.Execute(t.Context(), "s", "s2", nil); !errors.Is(err, saga.ErrStuck) {
		t.Fatal(err)
	}
	if _, err := c.Retry(t.Context(), "nope"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Retry of a missing saga: %v", err)
	}
	st, err := c.Abort(t.Context(), "s1", "fixed by hand")
	if err != nil || st.State != saga.Aborted || !strings.Contains(st.Cause, "fixed by hand") {
		t.Fatalf("Abort = %+v, %v", st, err)
	}
	if _, err := c.Retry(t.Context(), "s1"); !errors.Is(err, saga.ErrFinished) {
		t.Errorf("Retry of an aborted saga: %v", err)
	}
	got, _ := c.Status(t.Context(), "s1")
	if !errors.Is(got.Err(), saga.ErrAborted) {
		t.Errorf("Status.Err of an aborted saga: %v", got.Err())
	}
	for _, tc := range []struct {
		state saga.State
		want  string
	}{{saga.Aborted, "[s1]"}, {saga.Stuck, "[s2]"}, {saga.Completed, "[]"}} {
		sums, _ := c.List(t.Context(), saga.Query{States: []saga.State{tc.state}})
		var ids []string
		for _, s := range sums {
			ids = append(ids, s.ID)
		}
		if fmt.Sprint(ids) != tc.want && !(tc.want == "[]" && len(ids) == 0) {
			t.Errorf("List %s = %v, want %s", tc.state, ids, tc.want)
		}
	}
}

func TestRetryOfARunningSagaIsRefused(t *testing.T) {
	store := saga.NewMemoryStore()
	ctx := t.Context()
	if _, err := store.Append(ctx, "r", 0, saga.Record{Type: saga.RecordStarted, State: saga.Running, Saga: "trip"}); err != nil {
		t.Fatal(err)
	}
	c := mustCoordinator(t, store, saga.Config{}, newTrip(t, never).def)
	if _, err := c.Retry(ctx, "r"); !errors.Is(err, saga.ErrNotStuck) {
		t.Errorf("Retry of a running saga: %v", err)
	}
}

func TestPanicInAStepIsRecordedThenReraised(t *testing.T) {
	store := saga.NewMemoryStore()
	var boom atomic.Bool
	boom.Store(true)
	d := mustDefinition(t, "p", saga.Step{Name: "x", Action: func(context.Context, *saga.Call) ([]byte, error) {
		if boom.Load() {
			panic("kaboom")
		}
		return nil, nil
	}})
	c := mustCoordinator(t, store, saga.Config{}, d)
	func() {
		defer func() {
			if v := recover(); v != "kaboom" {
				t.Errorf("recovered %v, want the step's panic", v)
			}
		}()
		_, _ = c.Execute(t.Context(), "p", "p1", nil)
		t.Error("Execute returned instead of re-raising the panic")
	}()
	recs, _ := store.Load(t.Context(), "p1")
	last := recs[len(recs)-1]
	if last.Type != saga.RecordStepUnknown || !strings.Contains(last.Error, "panic: kaboom") {
		t.Errorf("last record %+v; want the panic recorded as an unknown outcome", last)
	}
	boom.Store(false)
	sts, err := c.Recover(t.Context())
	if err != nil || len(sts) != 1 || sts[0].State != saga.Completed {
		t.Errorf("Recover after the panic = %+v, %v", sts, err)
	}
}

func TestEveryLogLineCarriesTheSagaID(t *testing.T) {
	h := &recordingHandler{}
	tr := newTrip(t, always)
	c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{Logger: slog.New(h)}, tr.def)
	_, _ = c.Execute(t.Context(), "trip", "logged", nil)
	if len(h.recs) < 3 {
		t.Fatalf("only %d log lines", len(h.recs))
	}
	for _, r := range h.recs {
		found := false
		r.Attrs(func(a slog.Attr) bool {
			found = found || (a.Key == "saga_id" && a.Value.String() == "logged")
			return true
		})
		if !found {
			t.Errorf("log line %q has no saga_id", r.Message)
		}
	}
}

func TestResumeErrors(t *testing.T) {
	ctx := t.Context()
	store := saga.NewMemoryStore()
	tr := newTrip(t, never)
	c := mustCoordinator(t, store, saga.Config{}, tr.def)
	if _, err := c.Resume(ctx, "none"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	_, _ = store.Append(ctx, "other", 0, saga.Record{Type: saga.RecordStarted, State: saga.Running, Saga: "unknown"})
	if _, err := c.Resume(ctx, "other"); !errors.Is(err, saga.ErrUnknownSaga) {
		t.Errorf("unknown definition: %v", err)
	}
	_, _ = store.Append(ctx, "bad", 0,
		saga.Record{Type: saga.RecordStarted, State: saga.Running, Saga: "trip"},
		saga.Record{Type: saga.RecordStepSucceeded, State: saga.Running, Step: "flight", Attempt: 1})
	if _, err := c.Resume(ctx, "bad"); !errors.Is(err, saga.ErrCorruptLog) {
		t.Errorf("result without intent: %v", err)
	}
	_, _ = store.Append(ctx, "ghost", 0,
		saga.Record{Type: saga.RecordStarted, State: saga.Running, Saga: "trip"},
		saga.Record{Type: saga.RecordStepStarted, State: saga.Running, Step: "boat", Attempt: 1})
	if _, err := c.Resume(ctx, "ghost"); !errors.Is(err, saga.ErrCorruptLog) {
		t.Errorf("unknown step: %v", err)
	}
	_, err := c.Recover(ctx)
	if !errors.Is(err, saga.ErrUnknownSaga) || !errors.Is(err, saga.ErrCorruptLog) || !strings.Contains(err.Error(), `"ghost"`) {
		t.Errorf("Recover should report each saga it could not drive: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Execute(cctx, "trip", "late", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Execute with a dead context: %v", err)
	}
	if _, err := store.Load(ctx, "late"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Execute with a dead context started the saga")
	}
}

func TestConcurrentCoordinatorsOneWriterPerSaga(t *testing.T) {
	// Two coordinators recover the same unfinished sagas at once: each
	// saga is driven to its end by one of them, and every effect happens
	// once.
	for range 20 {
		store := saga.NewMemoryStore()
		tr := newTrip(t, func(id string) bool { return strings.HasSuffix(id, "3") })
		ctx := t.Context()
		for i := range 8 {
			_, _ = store.Append(ctx, fmt.Sprint("s", i), 0, saga.Record{Type: saga.RecordStarted, State: saga.Running, Saga: "trip"})
		}
		a := mustCoordinator(t, store, saga.Config{}, tr.def)
		b := mustCoordinator(t, store, saga.Config{}, tr.def)
		errs := make(chan error, 2)
		for _, c := range []*saga.Coordinator{a, b} {
			go func() { _, err := c.Recover(ctx); errs <- err }()
		}
		for range 2 {
			if err := <-errs; err != nil && !errors.Is(err, saga.ErrConflict) {
				t.Fatalf("Recover: %v", err)
			}
		}
		// Conflicts leave sagas to the winner; finish any loser left behind.
		if _, err := a.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			id := fmt.Sprint("s", i)
			st, _ := a.Status(ctx, id)
			for _, svc := range []*service{tr.flight, tr.hotel, tr.car} {
				b, c := svc.counts(id)
				switch {
				case st.State == saga.Completed && b == 1 && c == 0:
				case st.State == saga.Compensated && svc == tr.car && b == 0 && c == 0:
				case st.State == saga.Compensated && svc == tr.flight && b == 1 && c == 1:
				// The hotel runs beside the failing car: a coordinator
				// that lost the race may book it after the winner has
				// compensated it, and the barrier refuses that booking.
				case st.State == saga.Compensated && svc == tr.hotel && b == c && b <= 1:
				default:
					t.Fatalf("saga %s (%s): %s booked %d cancelled %d", id, st.State, svc.name, b, c)
				}
			}
		}
	}
}

func TestIndependentCompensationsRunInParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// a, then b c d in parallel (d fails once b and c are done); b and
		// c each take a second to compensate, and must be undone together,
		// before a.
		var order eventLog
		slowUndo := func(name string, deps ...string) saga.Step {
			return saga.Step{Name: name, DependsOn: deps,
				Action: func(context.Context, *saga.Call) ([]byte, error) { return []byte(name), nil },
				Compensate: func(context.Context, *saga.Call) error {
					time.Sleep(time.Second)
					order.add(name)
					return nil
				}}
		}
		fail := saga.Step{Name: "d", DependsOn: []string{"a"}, Action: func(context.Context, *saga.Call) ([]byte, error) {
			time.Sleep(time.Second) // after b and c have succeeded
			return nil, saga.Fail(errNoAvailability)
		}}
		d := mustDefinition(t, "p", slowUndo("a"), slowUndo("b", "a"), slowUndo("c", "a"), fail)
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, d)
		start := time.Now()
		st, err := c.Execute(t.Context(), "p", "x", nil)
		if !errors.Is(err, saga.ErrCompensated) || st.State != saga.Compensated {
			t.Fatalf("Execute = %s, %v; want compensated", st.State, err)
		}
		// 1s for d to fail, then b and c together (1s), then a (1s): 3s.
		// Compensating b and c one after the other would take 4s.
		if el := time.Since(start); el != 3*time.Second {
			t.Errorf("took %v, want 3s (b and c compensated in parallel)", el)
		}
		if got := order.list(); len(got) != 3 || got[2] != "a" {
			t.Errorf("compensation order %v; want b and c, then a", got)
		}
	})
}

func TestBackoffIsJittered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A constant 1s backoff with 50% jitter: every wait lies in
		// [0.5s, 1.5s], and the waits differ from one another.
		const attempts = 20
		var at []time.Time
		flaky := saga.Step{Name: "flaky", Action: func(context.Context, *saga.Call) ([]byte, error) {
			at = append(at, time.Now())
			return nil, errors.New("connection reset")
		}}
		flaky.Policy = saga.Policy{MaxAttempts: attempts, Backoff: saga.Backoff{Initial: time.Second, Max: time.Second, Multiplier: 1, Jitter: 0.5}}
		c := mustCoordinator(t, saga.NewMemoryStore(), saga.Config{}, mustDefinition(t, "f", flaky))
		if _, err := c.Execute(t.Context(), "f", "f1", nil); !errors.Is(err, saga.ErrStuck) {
			t.Fatalf("Execute: %v; want stuck", err)
		}
		if len(at) != attempts {
			t.Fatalf("%d attempts, want %d", len(at), attempts)
		}
		distinct := map[time.Duration]bool{}
		for i := 1; i < len(at); i++ {
			w := at[i].Sub(at[i-1])
			if w < 500*time.Millisecond || w > 1500*time.Millisecond {
				t.Errorf("wait %d was %v; want within [0.5s, 1.5s]", i, w)
			}
			distinct[w] = true
		}
		// With jitter, 19 waits drawn from a 1s-wide range are not all the
		// same; without it they all are exactly 1s.
		if len(distinct) < 2 {
			t.Errorf("all %d waits were %v: no jitter", attempts-1, at[1].Sub(at[0]))
		}
	})
}
