package circuitbreaker_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/distkit/distkit/circuitbreaker"
)

func ExampleBreaker_Do() {
	b, err := circuitbreaker.New(circuitbreaker.Config{Name: "inventory", ConsecutiveFailures: 2})
	if err != nil {
		panic(err)
	}
	down := errors.New("connection refused")
	for i := range 4 {
		err := b.Do(context.Background(), func(context.Context) error { return down })
		var rej *circuitbreaker.RejectedError
		switch {
		case errors.As(err, &rej):
			fmt.Printf("call %d: rejected, %s breaker\n", i, rej.State)
		case err != nil:
			fmt.Printf("call %d: failed: %v\n", i, err)
		}
	}
	fmt.Println(b.State(), b.Snapshot().Rejected)
	// Output:
	// call 0: failed: connection refused
	// call 1: failed: connection refused
	// call 2: rejected, open breaker
	// call 3: rejected, open breaker
	// open 2
}

// The two-step form, for calls that cannot be wrapped in a function, such
// as a response that is read elsewhere.
func ExampleBreaker_Allow() {
	b, err := circuitbreaker.New(circuitbreaker.Config{})
	if err != nil {
		panic(err)
	}
	done, err := b.Allow()
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	// ... start the call, and when its outcome is known:
	done(nil)
	fmt.Println(b.Snapshot().Calls)
	// Output:
	// 1
}

func ExampleFallback() {
	b, err := circuitbreaker.New(circuitbreaker.Config{})
	if err != nil {
		panic(err)
	}
	b.ForceOpen() // as if the dependency had been failing
	price, err := circuitbreaker.Fallback(context.Background(), b,
		func(context.Context) (int, error) { return 42, nil },
		func(_ context.Context, err error) (int, error) {
			if errors.Is(err, circuitbreaker.ErrOpen) {
				return 40, nil // the last known price
			}
			return 0, err
		})
	fmt.Println(price, err)
	// Output:
	// 40 <nil>
}

func ExampleCall() {
	b, err := circuitbreaker.New(circuitbreaker.Config{})
	if err != nil {
		panic(err)
	}
	user, err := circuitbreaker.Call(context.Background(), b, func(context.Context) (string, error) {
		return "ada", nil
	})
	fmt.Println(user, err)
	// Output:
	// ada <nil>
}

func ExampleGroup() {
	g, err := circuitbreaker.NewGroup(circuitbreaker.GroupConfig{
		Breaker:     circuitbreaker.Config{ConsecutiveFailures: 1},
		MaxBreakers: 100,
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_ = g.Do(ctx, "db-1:5432", func(context.Context) error { return errors.New("timeout") })
	err = g.Do(ctx, "db-1:5432", func(context.Context) error { return nil })
	fmt.Println("db-1:", errors.Is(err, circuitbreaker.ErrOpen))
	err = g.Do(ctx, "db-2:5432", func(context.Context) error { return nil })
	fmt.Println("db-2:", err)
	// Output:
	// db-1: true
	// db-2: <nil>
}

func ExampleConfig_failureRate() {
	b, err := circuitbreaker.New(circuitbreaker.Config{
		FailureRate: 0.5, // trip when half of...
		WindowCalls: 10,  // ...the last 10 calls failed...
		MinCalls:    4,   // ...once at least 4 were made
	})
	if err != nil {
		panic(err)
	}
	for _, fails := range []bool{false, true, false, true} {
		_ = b.Do(context.Background(), func(context.Context) error {
			if fails {
				return errors.New("503")
			}
			return nil
		})
		if s := b.Snapshot(); s.State == circuitbreaker.StateClosed {
			fmt.Printf("%d/%d failed\n", s.Failures, s.Calls)
		}
	}
	fmt.Println(b.State())
	// Output:
	// 0/1 failed
	// 1/2 failed
	// 1/3 failed
	// open
}
