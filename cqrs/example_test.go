package cqrs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
)

// Deposit is a command; Deposited the event it causes; Balance a query.
type (
	Deposit struct {
		Account string
		Amount  int
	}
	Deposited struct{ Amount int }
	Balance   struct{ Account string }
)

type Account struct{ Balance int }

func (a *Account) Apply(e any) error { a.Balance += e.(Deposited).Amount; return nil }

func (d Deposit) Validate() error {
	if d.Amount <= 0 {
		return errors.New("amount must be positive")
	}
	return nil
}

func balances() *cqrs.Table[int] {
	return cqrs.NewTable(func(tx *cqrs.TableTx[int], ev eventsource.Event) error {
		var d Deposited
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		n, _ := tx.Get(ev.StreamID)
		tx.Put(ev.StreamID, n+d.Amount)
		return nil
	})
}

// setup wires the command side (a repository behind a command bus) and
// the query side (a read model behind a query bus) over one store.
func setup(ctx context.Context) (*cqrs.CommandBus, *cqrs.QueryBus, *cqrs.ReadModel[*cqrs.Table[int]]) {
	store := eventsource.NewMemoryStore()
	reg := eventsource.NewRegistry(nil)
	_ = eventsource.Register[Deposited](reg, "deposited", 1)
	accounts, _ := eventsource.NewRepository(store, reg, eventsource.RepositoryConfig[*Account]{Type: "account"})
	cmds, _ := cqrs.NewCommandBus(cqrs.CommandBusConfig{})
	_ = cqrs.HandleCommand(cmds, cqrs.OnAggregate(accounts, func(d Deposit) string { return d.Account },
		func(_ context.Context, d Deposit, _ *Account) ([]any, error) { return []any{Deposited{d.Amount}}, nil }))

	rm, _ := cqrs.NewReadModel(ctx, store, balances(), cqrs.ReadModelConfig[*cqrs.Table[int]]{Name: "balances", New: balances})
	queries, _ := cqrs.NewQueryBus(cqrs.QueryBusConfig{MaxWait: 100 * time.Millisecond})
	_ = cqrs.HandleQuery(queries, rm, func(_ context.Context, t *cqrs.Table[int], q Balance) (int, error) {
		n, _ := t.Get("account-" + q.Account)
		return n, nil
	})
	return cmds, queries, rm
}

// A command returns a token; a query that carries it reads the write.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmds, queries, rm := setup(ctx)
	go rm.Run(ctx) // the read model follows the log

	res, err := cmds.Dispatch(ctx, Deposit{Account: "ada", Amount: 30})
	fmt.Println("deposit:", res.Token, err)
	balance, err := cqrs.AskAfter[int](ctx, queries, res.Token, Balance{Account: "ada"})
	fmt.Println("balance:", balance, err)

	_, err = cmds.Dispatch(ctx, Deposit{Account: "ada", Amount: -5})
	fmt.Println("invalid:", errors.Is(err, cqrs.ErrInvalidCommand), err)
	// Output:
	// deposit: 1 <nil>
	// balance: 30 <nil>
	// invalid: true cqrs: invalid command cqrs_test.Deposit: amount must be positive
}

// A query whose read model has not caught up with its token fails with
// ErrNotConsistent after MaxWait; without the token it reads stale data.
func ExampleAskAfter_notConsistent() {
	ctx := context.Background()
	cmds, queries, _ := setup(ctx) // nothing runs the read model

	res, _ := cmds.Dispatch(ctx, Deposit{Account: "bob", Amount: 10})
	_, err := cqrs.AskAfter[int](ctx, queries, res.Token, Balance{Account: "bob"})
	fmt.Println(errors.Is(err, cqrs.ErrNotConsistent), errors.Is(err, context.DeadlineExceeded))

	stale, err := cqrs.Ask[int](ctx, queries, Balance{Account: "bob"})
	fmt.Println("stale balance:", stale, err)
	// Output:
	// true true
	// stale balance: 0 <nil>
}

// Rebuild replays the log into a new copy and swaps it in; queries keep
// being answered meanwhile.
func ExampleReadModel_Rebuild() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmds, queries, rm := setup(ctx)
	go rm.Run(ctx)
	var tok cqrs.Token
	for range 3 {
		res, _ := cmds.Dispatch(ctx, Deposit{Account: "cy", Amount: 5})
		tok = res.Token
	}
	old, err := rm.Rebuild(ctx)
	fmt.Println("swapped:", old != rm.Current(), err)
	balance, _ := cqrs.AskAfter[int](ctx, queries, tok, Balance{Account: "cy"})
	fmt.Println("balance:", balance, "rebuilds:", rm.Stats().Rebuilds)
	// Output:
	// swapped: true <nil>
	// balance: 15 rebuilds: 1
}
