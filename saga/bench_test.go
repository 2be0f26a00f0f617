package saga_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/saga"
)

func noopSteps(n int, linear bool) []saga.Step {
	steps := make([]saga.Step, n)
	for i := range steps {
		steps[i] = saga.Step{
			Name:       fmt.Sprint("s", i),
			Action:     func(context.Context, *saga.Call) ([]byte, error) { return nil, nil },
			Compensate: func(context.Context, *saga.Call) error { return nil },
		}
		if linear && i > 0 {
			steps[i].DependsOn = []string{steps[i-1].Name}
		}
	}
	return steps
}

// BenchmarkDirectCalls is the baseline: the same no-op step functions
// called in a loop, with no saga around them.
func BenchmarkDirectCalls(b *testing.B) {
	steps := noopSteps(10, true)
	ctx := context.Background()
	for b.Loop() {
		for i := range steps {
			c := &saga.Call{SagaID: "x", Step: steps[i].Name, Kind: saga.Action, Attempt: 1}
			if _, err := steps[i].Action(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSaga runs linear sagas of 1 and 10 no-op steps on the memory
// store; the difference between the two, divided by 9, is the
// orchestrator's overhead per step. Finished sagas are deleted from the
// store, so the heap does not grow with b.N.
func BenchmarkSaga(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprint("steps=", n), func(b *testing.B) {
			d := mustDefinition(b, "bench", noopSteps(n, true)...)
			store := saga.NewMemoryStore()
			c := mustCoordinator(b, store, saga.Config{}, d)
			ctx := context.Background()
			for b.Loop() {
				st, err := c.Execute(ctx, "bench", "", nil)
				if err != nil {
					b.Fatal(err)
				}
				store.Delete(st.ID) // keep the heap steady: measure the orchestrator, not a growing store
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/step")
		})
	}
}

// BenchmarkThreeStepSaga is throughput: 3-step sagas (one step, then two
// in parallel) executed concurrently from every P, on the memory store and
// on the eventsource-backed store.
func BenchmarkThreeStepSaga(b *testing.B) {
	stores := map[string]func() saga.Store{
		"memory": func() saga.Store { return saga.NewMemoryStore() },
		"eventsource": func() saga.Store {
			s, _ := saga.NewEventStore(eventsource.NewMemoryStore(), saga.EventStoreConfig{})
			return s
		},
	}
	for _, name := range []string{"memory", "eventsource"} {
		b.Run(name, func(b *testing.B) {
			steps := noopSteps(3, false)
			steps[1].DependsOn = []string{"s0"}
			steps[2].DependsOn = []string{"s0"}
			c := mustCoordinator(b, stores[name](), saga.Config{}, mustDefinition(b, "trip", steps...))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := c.Execute(ctx, "trip", "", nil); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sagas/s")
		})
	}
}

// BenchmarkCompensation is the cost of a failing 3-step saga: two steps
// done, the third fails, both compensated.
func BenchmarkCompensation(b *testing.B) {
	steps := noopSteps(3, true)
	steps[2].Action = func(context.Context, *saga.Call) ([]byte, error) { return nil, saga.Fail(errNoAvailability) }
	c := mustCoordinator(b, saga.NewMemoryStore(), saga.Config{}, mustDefinition(b, "f", steps...))
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Execute(ctx, "f", "", nil); err == nil {
			b.Fatal("no failure")
		}
	}
}
