package saga_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/distkit/distkit/saga"
)

func Example() {
	book := func(what string) func(context.Context, *saga.Call) ([]byte, error) {
		return func(_ context.Context, c *saga.Call) ([]byte, error) {
			if what == "car" {
				return nil, saga.Fail(errors.New("no cars left"))
			}
			fmt.Println("book", what, "with key", c.Key())
			return []byte(what + "-1"), nil
		}
	}
	cancel := func(_ context.Context, c *saga.Call) error {
		fmt.Printf("cancel %s (%s)\n", c.Step, c.Output)
		return nil
	}
	trip, _ := saga.NewDefinition("trip",
		saga.Step{Name: "flight", Action: book("flight"), Compensate: cancel},
		saga.Step{Name: "hotel", DependsOn: []string{"flight"}, Action: book("hotel"), Compensate: cancel},
		saga.Step{Name: "car", DependsOn: []string{"hotel"}, Action: book("car"), Compensate: cancel},
	)
	c, _ := saga.New(saga.NewMemoryStore(), []*saga.Definition{trip}, saga.Config{})

	st, err := c.Execute(context.Background(), "trip", "trip-42", nil)
	fmt.Println(st.State, errors.Is(err, saga.ErrCompensated), errors.Is(err, saga.ErrFailed))
	fmt.Println(err)
	// Output:
	// book flight with key trip-42/flight/action
	// book hotel with key trip-42/hotel/action
	// cancel hotel (hotel-1)
	// cancel flight (flight-1)
	// compensated true true
	// saga "trip-42" compensated at step "car": no cars left
}

func ExampleCoordinator_Recover() {
	ctx := context.Background()
	store := saga.NewMemoryStore() // durable in real life: outlives the coordinator
	var crashed bool
	steps := []saga.Step{
		{Name: "charge", Action: func(context.Context, *saga.Call) ([]byte, error) { return nil, nil }},
		{Name: "ship", DependsOn: []string{"charge"}, Action: func(_ context.Context, c *saga.Call) ([]byte, error) {
			if !crashed {
				crashed = true
				panic("coordinator process dies") // the log stays behind
			}
			fmt.Println("ship, attempt", c.Attempt)
			return nil, nil
		}},
	}
	order, _ := saga.NewDefinition("order", steps...)

	first, _ := saga.New(store, []*saga.Definition{order}, saga.Config{})
	func() {
		defer func() { _ = recover() }()
		_, _ = first.Execute(ctx, "order", "order-7", nil)
	}()

	second, _ := saga.New(store, []*saga.Definition{order}, saga.Config{})
	resumed, err := second.Recover(ctx)
	fmt.Println(len(resumed), resumed[0].ID, resumed[0].State, err)
	// Output:
	// ship, attempt 2
	// 1 order-7 completed <nil>
}

func ExampleMemoryBarrier() {
	ctx := context.Background()
	var barrier saga.MemoryBarrier // inside the car rental service
	key := saga.Key{SagaID: "trip-42", Step: "car", Kind: saga.Action}
	rent := func(context.Context) ([]byte, error) {
		fmt.Println("car rented")
		return []byte("car-9"), nil
	}

	out, _ := barrier.Action(ctx, key, rent)   // first delivery: rents
	again, _ := barrier.Action(ctx, key, rent) // retry: same answer, no second car
	fmt.Println(string(out), string(again))

	// A compensation whose action never arrived is a recorded no-op, and
	// the action arriving late is refused.
	late := saga.Key{SagaID: "trip-43", Step: "car", Kind: saga.Compensation}
	applied, _ := barrier.Compensate(ctx, late, func(context.Context) error { return nil })
	_, err := barrier.Action(ctx, saga.Key{SagaID: "trip-43", Step: "car", Kind: saga.Action}, rent)
	fmt.Println(applied, errors.Is(err, saga.ErrLateAction))
	// Output:
	// car rented
	// car-9 car-9
	// false true
}
