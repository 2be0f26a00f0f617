package eventsource_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/distkit/distkit/eventsource"
)

// The account aggregate used across the tests and benchmarks.

type Opened struct{ Owner string }
type Deposited struct{ Amount int64 }
type Withdrawn struct{ Amount int64 }

var errOverdraft = errors.New("insufficient funds")

type account struct {
	Owner   string
	Open    bool
	Balance int64
	Applied int // events applied over the account's life (kept in snapshots)
	// Replayed counts the events applied since this value was created or
	// decoded: it tells a snapshot load from a full replay.
	Replayed int `json:"-"`
}

func (a *account) Apply(e any) error {
	switch e := e.(type) {
	case Opened:
		a.Owner, a.Open = e.Owner, true
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	default:
		return fmt.Errorf("account: unexpected event %T", e)
	}
	a.Applied++
	a.Replayed++
	return nil
}

func deposit(n int64) func(*account) ([]any, error) {
	return func(a *account) ([]any, error) {
		if !a.Open {
			return []any{Opened{Owner: "ann"}, Deposited{Amount: n}}, nil
		}
		return []any{Deposited{Amount: n}}, nil
	}
}

func withdraw(n int64) func(*account) ([]any, error) {
	return func(a *account) ([]any, error) {
		if a.Balance < n {
			return nil, errOverdraft
		}
		return []any{Withdrawn{Amount: n}}, nil
	}
}

func accountRegistry(tb testing.TB) *eventsource.Registry {
	tb.Helper()
	reg := eventsource.NewRegistry(nil)
	for _, err := range []error{
		eventsource.Register[Opened](reg, "account.opened", 1),
		eventsource.Register[Deposited](reg, "account.deposited", 1),
		eventsource.Register[Withdrawn](reg, "account.withdrawn", 1),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return reg
}
