package saga_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/saga"
)

var soak = flag.Bool("soak", false, "run the crash-injection proof over 5000 seeds instead of 1000")

var (
	errCrashed   = errors.New("coordinator crashed")
	errLostReply = errors.New("reply lost")
)

// crashPlan kills one coordinator at its at-th step boundary: before or
// after a log append, before a service call, after a service call. From
// then on the coordinator can write nothing and call nothing, like a
// process that died.
type crashPlan struct {
	at   int64
	n    atomic.Int64
	dead atomic.Bool
}

func (p *crashPlan) hit() bool {
	if p.dead.Load() {
		return true
	}
	if p.n.Add(1) == p.at {
		p.dead.Store(true)
		return true
	}
	return false
}

// crashStore is the log as seen by one coordinator: durable underneath,
// unreachable once the coordinator has crashed. A crash after an append
// loses the reply, not the record.
type crashStore struct {
	saga.Store
	plan *crashPlan
}

func (s crashStore) Append(ctx context.Context, id string, expected uint64, recs ...saga.Record) (uint64, error) {
	if s.plan.hit() {
		return 0, errCrashed
	}
	v, err := s.Store.Append(ctx, id, expected, recs...)
	if err == nil && s.plan.hit() {
		return 0, errCrashed
	}
	return v, err
}

func (s crashStore) Load(ctx context.Context, id string) ([]saga.Record, error) {
	if s.plan.dead.Load() {
		return nil, errCrashed
	}
	return s.Store.Load(ctx, id)
}

// crashHarness runs trip sagas through coordinators that crash at random
// boundaries, each replaced by a new coordinator that recovers.
type crashHarness struct {
	seed     uint64
	plan     atomic.Pointer[crashPlan]
	services []*service
	fails    map[string]map[string]bool // saga -> step -> business failure

	mu      sync.Mutex
	transit []func() // action requests still in the network when their sender died
}

// chance reports an event of probability 1/n decided by the seed and the
// labels alone, so it does not depend on goroutine scheduling.
func (h *crashHarness) chance(n uint32, labels ...any) bool {
	f := fnv.New32a()
	fmt.Fprint(f, h.seed, labels)
	return f.Sum32()%n == 0
}

func (h *crashHarness) definition(t testing.TB) *saga.Definition {
	deps := map[string][]string{"flight": nil, "hotel": {"flight"}, "car": {"flight"}, "pay": {"hotel", "car"}}
	var steps []saga.Step
	for _, svc := range h.services {
		steps = append(steps, saga.Step{
			Name:      svc.name,
			DependsOn: deps[svc.name],
			Action: func(ctx context.Context, c *saga.Call) ([]byte, error) {
				p := h.plan.Load()
				fail := h.fails[c.SagaID][svc.name]
				if p.hit() {
					// The request was sent; its sender died. It is
					// delivered after the saga has ended.
					key := c.Key()
					h.mu.Lock()
					h.transit = append(h.transit, func() { _, _ = svc.book(context.Background(), key, fail) })
					h.mu.Unlock()
					return nil, errCrashed
				}
				out, err := svc.book(ctx, c.Key(), fail)
				if p.hit() {
					return nil, errCrashed
				}
				if err == nil && c.Attempt <= 2 && h.chance(5, "lost", c.SagaID, svc.name, c.Attempt) {
					return nil, errLostReply // the effect happened; the coordinator does not know
				}
				return out, err
			},
			Compensate: func(ctx context.Context, c *saga.Call) error {
				p := h.plan.Load()
				if p.hit() {
					return errCrashed
				}
				err := svc.cancel(ctx, c.Key())
				if p.hit() {
					return errCrashed
				}
				if err == nil && c.Attempt <= 2 && h.chance(5, "lostc", c.SagaID, svc.name, c.Attempt) {
					return errLostReply
				}
				return err
			},
		})
	}
	return mustDefinition(t, "trip", steps...)
}

func TestCrashRecoveryExactlyOnce(t *testing.T) {
	seeds := 1000
	if *soak {
		seeds = 5000
	}
	for seed := range seeds {
		if !runCrashSeed(t, uint64(seed)) {
			t.Fatalf("seed %d failed (rerun with -run 'TestCrashRecoveryExactlyOnce' and this seed to debug)", seed)
		}
	}
}

// runCrashSeed runs one scenario and reports whether its invariants held.
func runCrashSeed(t *testing.T, seed uint64) bool {
	ok := true
	t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ok = crashScenario(t, seed)
		})
	})
	return ok
}

func crashScenario(t *testing.T, seed uint64) bool {
	rng := rand.New(rand.NewPCG(seed, 0x5a6a))
	h := &crashHarness{seed: seed, fails: map[string]map[string]bool{}}
	for _, n := range []string{"flight", "hotel", "car", "pay"} {
		h.services = append(h.services, newService(n, nil))
	}
	const sagas = 4
	ids := make([]string, sagas)
	for i := range ids {
		ids[i] = fmt.Sprint("s", i)
		h.fails[ids[i]] = map[string]bool{"hotel": rng.IntN(10) == 0, "car": rng.IntN(4) == 0, "pay": rng.IntN(7) == 0}
	}
	def := h.definition(t)
	var base saga.Store = saga.NewMemoryStore()
	es := eventsource.NewMemoryStore()
	useEvents := seed%2 == 1
	newCoordinator := func(plan *crashPlan) *saga.Coordinator {
		h.plan.Store(plan)
		store := base
		if useEvents { // a new process: a new index over the same event log
			store, _ = saga.NewEventStore(es, saga.EventStoreConfig{})
		}
		return mustCoordinator(t, crashStore{store, plan}, saga.Config{Policy: saga.Policy{
			Timeout: time.Second, MaxAttempts: 20, CompensationAttempts: 20,
			Backoff: saga.Backoff{Initial: 10 * time.Millisecond, Max: time.Second},
		}}, def)
	}
	plan := &crashPlan{at: 1 + rng.Int64N(130)}
	c := newCoordinator(plan)
	execErr := make([]error, sagas)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { _, execErr[i] = c.Execute(t.Context(), "trip", id, []byte(id)) })
	}
	wg.Wait()
	crashes := 0
	for round := 0; plan.dead.Load(); round++ {
		crashes++
		plan = &crashPlan{}
		if round < 4 && rng.IntN(2) == 0 {
			plan.at = 1 + rng.Int64N(60)
		}
		c = newCoordinator(plan)
		if _, err := c.Recover(t.Context()); err != nil && !plan.dead.Load() {
			t.Errorf("Recover without a crash: %v", err)
		}
	}
	// Requests that were in the network when their coordinator died
	// arrive now, after the saga has ended.
	for _, deliver := range h.transit {
		deliver()
	}

	ok := true
	var storeView saga.Store = base
	if useEvents {
		storeView, _ = saga.NewEventStore(es, saga.EventStoreConfig{})
	}
	for i, id := range ids {
		st, err := c.Status(t.Context(), id)
		if errors.Is(err, saga.ErrNotFound) {
			// Never accepted: Execute must have failed, and nothing ran.
			if execErr[i] == nil {
				t.Errorf("saga %s: Execute succeeded but the saga is not in the store", id)
				ok = false
			}
			for _, svc := range h.services {
				if b, cc := svc.counts(id); b != 0 || cc != 0 {
					t.Errorf("saga %s was never started but %s booked %d, cancelled %d", id, svc.name, b, cc)
					ok = false
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("saga %s: %v", id, err)
			ok = false
			continue
		}
		failing := h.fails[id]["hotel"] || h.fails[id]["car"] || h.fails[id]["pay"]
		switch {
		case st.State == saga.Completed && !failing:
			for _, svc := range h.services {
				if b, cc := svc.counts(id); b != 1 || cc != 0 {
					t.Errorf("completed saga %s: %s booked %d, cancelled %d; want 1, 0", id, svc.name, b, cc)
					ok = false
				}
			}
		case st.State == saga.Compensated && failing:
			for _, svc := range h.services {
				b, cc := svc.counts(id)
				if b != cc || b > 1 || (h.fails[id][svc.name] && b != 0) {
					t.Errorf("compensated saga %s: %s booked %d, cancelled %d; want equal, at most 1", id, svc.name, b, cc)
					ok = false
				}
			}
		default:
			t.Errorf("saga %s ended %s; its plan has a failing step: %v", id, st.State, failing)
			ok = false
		}
		if execErr[i] == nil && st.State != saga.Completed {
			t.Errorf("saga %s: Execute returned nil but the saga is %s", id, st.State)
			ok = false
		}
		if !ok {
			t.Logf("seed %d, %d crashes, event store %v; log of %s:", seed, crashes, useEvents, id)
			dumpLog(t, storeView, id)
		}
	}
	return ok
}
