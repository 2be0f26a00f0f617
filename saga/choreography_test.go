package saga_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/pubsub"
	"github.com/distkit/distkit/saga"
)

// choreography is a trip booked by events: requested -> flight -> hotel ->
// car; a car failure sends compensating events back up the chain.
type choreography struct {
	broker        *pubsub.MemoryBroker
	pm            *saga.ProcessManager
	flight, hotel *service
	car           *service
	fnRuns        atomic.Int32
	flaky         atomic.Int32 // hotel fails this many times before working
}

func startChoreography(t *testing.T, ctx context.Context, stall func(context.Context, saga.Instance), skipCar func(string) bool) *choreography {
	t.Helper()
	b, err := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ch := &choreography{broker: b, flight: newService("flight", nil), hotel: newService("hotel", nil), car: newService("car", nil)}
	ch.pm, err = saga.NewProcessManager(saga.ProcessManagerConfig{
		Completed: []string{"car.booked"}, Failed: []string{"flight.cancelled"},
		StallTimeout: 30 * time.Second, OnStall: stall,
	})
	if err != nil {
		t.Fatal(err)
	}
	key := func(ev saga.Event, step string, kind saga.Kind) saga.Key {
		return saga.Key{SagaID: ev.SagaID, Step: step, Kind: kind}
	}
	participant := func(name string, fn func(ctx context.Context, ev saga.Event) ([]saga.Emit, error)) pubsub.Handler {
		h, err := saga.Participant(saga.ParticipantConfig{Name: name, Publisher: b}, func(ctx context.Context, ev saga.Event) ([]saga.Emit, error) {
			ch.fnRuns.Add(1)
			return fn(ctx, ev)
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	r, _ := pubsub.NewRouter(b, pubsub.RouterConfig{})
	fast := pubsub.SubscribeConfig{Backoff: []time.Duration{time.Second}}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Handle("flight", "trip.requested", participant("flight", func(ctx context.Context, ev saga.Event) ([]saga.Emit, error) {
		if _, err := ch.flight.book(ctx, key(ev, "flight", saga.Action), false); err != nil {
			return nil, err
		}
		return []saga.Emit{{Topic: "flight.booked"}}, nil
	}), fast))
	must(r.Handle("flight-undo", "hotel.cancelled", participant("flight", func(ctx context.Context, ev saga.Event) ([]saga.Emit, error) {
		if err := ch.flight.cancel(ctx, key(ev, "flight", saga.Compensation)); err != nil {
			return nil, err
		}
		return []saga.Emit{{Topic: "flight.cancelled"}}, nil
	}), fast))
	must(r.Handle("hotel", "flight.booked", participant("hotel", func(ctx context.Context, ev saga.Event) ([]saga.Emit, error) {
		if ch.flaky.Add(-1) >= 0 {
			return nil, errors.New("hotel database busy")
		}
		if _, err := ch.hotel.book(ctx, key(ev, "hotel", saga.Action), false); err != nil {
			return nil, err
		}
		return []saga.Emit{{Topic: "hotel.booked"}}, nil
	}), fast))
	must(r.Handle("hotel-undo", "car.failed", participant("hotel", func(ctx context.Context, ev saga.Event) ([]saga.Emit, error) {
		if err := ch.hotel.cancel(ctx, key(ev, "hotel", saga.Compensation)); err != nil {
			return nil, err
		}
		return []saga.Emit{{Topic: "hotel.cancelled"}}, nil
	}), fast))
	must(r.Handle("car", "hotel.booked", participant("car", func(ctx context.Context, ev saga.Event) ([]saga.Emit, error) {
		if skipCar != nil && skipCar(ev.SagaID) {
			return nil, nil // the car service swallows the event: the saga stalls
		}
		_, err := ch.car.book(ctx, key(ev, "car", saga.Action), strings.HasPrefix(ev.SagaID, "nocar"))
		if errors.Is(err, saga.ErrFailed) {
			return []saga.Emit{{Topic: "car.failed", Payload: []byte(err.Error())}}, nil
		}
		if err != nil {
			return nil, err
		}
		return []saga.Emit{{Topic: "car.booked"}}, nil
	}), fast))
	must(r.Handle("process-manager", "*.*", ch.pm.Handle, pubsub.SubscribeConfig{}))
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Run(ctx) })
	t.Cleanup(func() {
		wg.Wait()
		_ = b.Close()
	})
	<-r.Ready()
	return ch
}

func TestChoreographyCompletesAndCompensates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		ch := startChoreography(t, ctx, nil, nil)
		ch.flaky.Store(1) // the first hotel delivery fails and is redelivered
		for _, id := range []string{"ok-1", "nocar-2"} {
			if err := saga.Publish(ctx, ch.broker, "trip.requested", id, nil); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		time.Sleep(5 * time.Second) // redelivery after the backoff
		synctest.Wait()
		ok, _ := ch.pm.Instance("ok-1")
		if ok.State != saga.InstanceCompleted || strings.Join(ok.Events, " ") != "trip.requested flight.booked hotel.booked car.booked" {
			t.Errorf("ok-1: %s %v", ok.State, ok.Events)
		}
		failed, _ := ch.pm.Instance("nocar-2")
		want := "trip.requested flight.booked hotel.booked car.failed hotel.cancelled flight.cancelled"
		if failed.State != saga.InstanceFailed || strings.Join(failed.Events, " ") != want {
			t.Errorf("nocar-2: %s %v; want failed %s", failed.State, failed.Events, want)
		}
		for _, svc := range []*service{ch.flight, ch.hotel} {
			if b, c := svc.counts("nocar-2"); b != 1 || c != 1 {
				t.Errorf("%s for nocar-2: booked %d cancelled %d", svc.name, b, c)
			}
			if b, c := svc.counts("ok-1"); b != 1 || c != 0 {
				t.Errorf("%s for ok-1: booked %d cancelled %d", svc.name, b, c)
			}
		}
		if b, _ := ch.car.counts("nocar-2"); b != 0 {
			t.Errorf("car booked for nocar-2")
		}
		// Republishing an event (same saga, same topic, a new message ID)
		// is not handled again by the participant.
		runs := ch.fnRuns.Load()
		m := &pubsub.Message{Headers: map[string]string{saga.HeaderSagaID: "ok-1"}}
		if err := ch.broker.Publish(ctx, "trip.requested", m); err != nil {
			t.Fatal(err)
		}
		// Publishing the same saga event again is dropped by the broker.
		if err := saga.Publish(ctx, ch.broker, "trip.requested", "ok-1", nil); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := ch.fnRuns.Load(); got != runs {
			t.Errorf("a repeated event ran the participant again (%d runs, then %d)", runs, got)
		}
		if b, _ := ch.flight.counts("ok-1"); b != 1 {
			t.Errorf("flight booked %d times for ok-1", b)
		}
		if got := ch.pm.Instances(saga.InstanceCompleted); len(got) != 1 || got[0].SagaID != "ok-1" {
			t.Errorf("completed instances %+v", got)
		}
		cancel()
	})
}

func TestProcessManagerTimesOutStalledSagas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var mu sync.Mutex
		var stalledAt []time.Duration
		start := time.Now()
		var ch *choreography
		onStall := func(ctx context.Context, inst saga.Instance) {
			mu.Lock()
			stalledAt = append(stalledAt, time.Since(start))
			mu.Unlock()
			// The timeout turns into a compensating event.
			if err := saga.Publish(ctx, ch.broker, "car.failed", inst.SagaID, []byte("timed out")); err != nil {
				t.Error(err)
			}
		}
		ch = startChoreography(t, ctx, onStall, func(id string) bool { return id == "silent" })
		var wg sync.WaitGroup
		var runErr error
		wg.Go(func() { runErr = ch.pm.Run(ctx) })
		if err := saga.Publish(ctx, ch.broker, "trip.requested", "silent", nil); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if inst, _ := ch.pm.Instance("silent"); inst.State != saga.InstanceActive {
			t.Fatalf("silent is %s before the timeout", inst.State)
		}
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if inst, _ := ch.pm.Instance("silent"); inst.State != saga.InstanceActive {
			t.Fatalf("silent is %s before the timeout", inst.State)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		inst, _ := ch.pm.Instance("silent")
		if inst.State != saga.InstanceFailed || !slices.Contains(inst.Events, "flight.cancelled") {
			t.Errorf("after the stall: %s %v; want compensated", inst.State, inst.Events)
		}
		if len(stalledAt) != 1 || stalledAt[0] != 30*time.Second {
			t.Errorf("stalled at %v, want once at 30s", stalledAt)
		}
		for _, svc := range []*service{ch.flight, ch.hotel} {
			if b, c := svc.counts("silent"); b != 1 || c != 1 {
				t.Errorf("%s: booked %d cancelled %d", svc.name, b, c)
			}
		}
		cancel()
		wg.Wait()
		if !errors.Is(runErr, context.Canceled) {
			t.Errorf("Run returned %v after cancellation, want context.Canceled", runErr)
		}
	})
}

func TestChoreographyRejectsBadInput(t *testing.T) {
	b, _ := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	defer b.Close()
	if _, err := saga.Participant(saga.ParticipantConfig{Publisher: b}, func(context.Context, saga.Event) ([]saga.Emit, error) { return nil, nil }); !errors.Is(err, saga.ErrInvalidConfig) {
		t.Errorf("no name: %v", err)
	}
	if _, err := saga.Participant(saga.ParticipantConfig{Name: "x"}, func(context.Context, saga.Event) ([]saga.Emit, error) { return nil, nil }); !errors.Is(err, saga.ErrInvalidConfig) {
		t.Errorf("no publisher: %v", err)
	}
	if _, err := saga.Participant(saga.ParticipantConfig{Name: "x", Publisher: b}, nil); !errors.Is(err, saga.ErrInvalidConfig) {
		t.Errorf("nil fn: %v", err)
	}
	h, _ := saga.Participant(saga.ParticipantConfig{Name: "x", Publisher: b}, func(context.Context, saga.Event) ([]saga.Emit, error) { return nil, nil })
	err := h(context.Background(), &pubsub.Message{ID: "m", Topic: "t"})
	if !errors.Is(err, saga.ErrNoSagaID) || !errors.Is(err, pubsub.ErrPermanent) {
		t.Errorf("message without saga ID: %v", err)
	}
	if err := saga.Publish(context.Background(), b, "t", "", nil); !errors.Is(err, saga.ErrNoSagaID) {
		t.Errorf("Publish without saga ID: %v", err)
	}
	for _, cfg := range []saga.ProcessManagerConfig{
		{},
		{Completed: []string{"a..b"}},
		{Failed: []string{"x"}, StallTimeout: -1},
		{Failed: []string{"x"}, MaxFinished: -1},
	} {
		if _, err := saga.NewProcessManager(cfg); !errors.Is(err, saga.ErrInvalidConfig) {
			t.Errorf("NewProcessManager(%+v) = %v", cfg, err)
		}
	}
	pm, _ := saga.NewProcessManager(saga.ProcessManagerConfig{Completed: []string{"done"}, MaxFinished: 2})
	if err := pm.Handle(context.Background(), &pubsub.Message{ID: "m"}); !errors.Is(err, saga.ErrNoSagaID) {
		t.Errorf("Handle without saga ID: %v", err)
	}
	for _, id := range []string{"a", "b", "c"} {
		_ = pm.Handle(context.Background(), &pubsub.Message{ID: id, Topic: "done", Headers: map[string]string{saga.HeaderSagaID: id}})
	}
	if got := pm.Instances(); len(got) != 2 || got[0].SagaID != "b" {
		t.Errorf("MaxFinished 2 kept %+v; want b and c", got)
	}
}
