package election_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/distkit/distkit/election"
)

// A node campaigns on a lease store, leads with a fencing token, and the
// resource refuses the token of a deposed leader.
func Example() {
	ctx := context.Background()
	store := election.NewMemoryStore()
	el, _ := election.NewLease(store, election.LeaseConfig{ID: "node-1"})
	go el.Run(ctx)
	defer el.Close()

	term, err := el.Campaign(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("leader", term.Leader().ID, "token", term.Token())

	var fence election.Fence
	fmt.Println(fence.Check(term.Token()))
	fmt.Println(fence.Check(term.Token() + 1)) // a successor writes
	err = fence.Check(term.Token())            // the old leader, too late
	fmt.Println(errors.Is(err, election.ErrStaleToken), err)
	// Output:
	// leader node-1 token 1
	// <nil>
	// <nil>
	// true election: stale fencing token 1 (a leader with token 2 has written)
}

// Resign ends the term; its context says why.
func ExampleTerm_Context() {
	ctx := context.Background()
	el, _ := election.NewLease(election.NewMemoryStore(), election.LeaseConfig{ID: "node-1"})
	go el.Run(ctx)
	defer el.Close()

	term, _ := el.Campaign(ctx)
	_ = el.Resign(ctx)
	<-term.Context().Done()
	fmt.Println(context.Cause(term.Context()))
	// Output: election: resigned
}

// Observe reports every change of leader, including "no leader".
func ExampleObservation() {
	ctx := context.Background()
	store := election.NewMemoryStore()
	a, _ := election.NewLease(store, election.LeaseConfig{ID: "a"})
	go a.Run(ctx)
	defer a.Close()

	obs := a.Observe()
	ev, _ := obs.Next(ctx)
	fmt.Printf("leader %q\n", ev.Leader.ID)
	term, _ := a.Campaign(ctx)
	ev, _ = obs.Next(ctx)
	fmt.Printf("leader %q token %d self %v\n", ev.Leader.ID, ev.Leader.Token, ev.Self)
	_ = a.Resign(ctx)
	<-term.Done()
	ev, _ = obs.Next(ctx)
	fmt.Printf("leader %q\n", ev.Leader.ID)
	// Output:
	// leader ""
	// leader "a" token 1 self true
	// leader ""
}

// Invalid timing is refused at construction.
func ExampleNewLease_invalidConfig() {
	_, err := election.NewLease(election.NewMemoryStore(), election.LeaseConfig{ID: "n", LeaseDuration: 5e9, RenewDeadline: 10e9})
	fmt.Println(errors.Is(err, election.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// election: invalid config: LeaseDuration: 5s must be greater than RenewDeadline 10s
}
