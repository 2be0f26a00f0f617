package eventsource_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/distkit/distkit/eventsource"
)

// Events of the examples' wallet aggregate.
type (
	Credited struct{ Amount int }
	Debited  struct{ Amount int }
)

// Wallet is the state of a wallet, rebuilt from its events.
type Wallet struct{ Balance int }

// Apply implements eventsource.Aggregate.
func (w *Wallet) Apply(e any) error {
	switch e := e.(type) {
	case Credited:
		w.Balance += e.Amount
	case Debited:
		w.Balance -= e.Amount
	}
	return nil
}

var errNoFunds = errors.New("insufficient funds")

func debit(n int) func(*Wallet) ([]any, error) {
	return func(w *Wallet) ([]any, error) {
		if w.Balance < n {
			return nil, errNoFunds // a business rule: nothing is stored
		}
		return []any{Debited{Amount: n}}, nil
	}
}

func walletRegistry() *eventsource.Registry {
	reg := eventsource.NewRegistry(nil)
	_ = eventsource.Register[Credited](reg, "wallet.credited", 1)
	_ = eventsource.Register[Debited](reg, "wallet.debited", 1)
	return reg
}

// A repository runs commands against aggregates: load, decide, append with
// the loaded version.
func Example() {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	wallets, err := eventsource.NewRepository(store, walletRegistry(), eventsource.RepositoryConfig[*Wallet]{Type: "wallet"})
	if err != nil {
		panic(err)
	}
	res, _ := wallets.Execute(ctx, "7", func(*Wallet) ([]any, error) {
		return []any{Credited{Amount: 50}}, nil
	})
	fmt.Println("balance", res.State.Balance, "version", res.Version)
	res, _ = wallets.Execute(ctx, "7", debit(20))
	fmt.Println("balance", res.State.Balance, "version", res.Version)
	_, err = wallets.Execute(ctx, "7", debit(100))
	fmt.Println(err)
	// Output:
	// balance 50 version 1
	// balance 30 version 2
	// insufficient funds
}

// Snapshots spare a load most of the replay. When the state's shape
// changes, raise SnapshotSchemaVersion: old snapshots are then discarded
// and the stream replayed; a load never fails because of a snapshot.
func ExampleRepository_snapshots() {
	ctx := context.Background()
	store, snaps := eventsource.NewMemoryStore(), eventsource.NewMemorySnapshotStore()
	cfg := eventsource.RepositoryConfig[*Wallet]{Type: "wallet", Snapshots: snaps, SnapshotEvery: 3}
	wallets, _ := eventsource.NewRepository(store, walletRegistry(), cfg)
	for range 4 {
		_, _ = wallets.Execute(ctx, "7", func(*Wallet) ([]any, error) { return []any{Credited{Amount: 10}}, nil })
	}
	snap, _ := snaps.LoadSnapshot(ctx, "wallet-7")
	fmt.Println("snapshot at version", snap.Version, "schema", snap.SchemaVersion)

	cfg.SnapshotSchemaVersion = 2 // the new code's state
	wallets, _ = eventsource.NewRepository(store, walletRegistry(), cfg)
	w, v, err := wallets.Load(ctx, "7")
	fmt.Println("balance", w.Balance, "version", v, err)
	snap, _ = snaps.LoadSnapshot(ctx, "wallet-7")
	fmt.Println("snapshot at version", snap.Version, "schema", snap.SchemaVersion)
	// Output:
	// snapshot at version 3 schema 1
	// balance 40 version 4 <nil>
	// snapshot at version 4 schema 2
}

// Appends state what they expect of the stream; a writer that lost a race
// gets a ConcurrencyError and should reload and decide again.
func ExampleConcurrencyError() {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	ev := eventsource.EventData{Type: "note.added", Data: []byte(`"hi"`)}

	res, _ := store.Append(ctx, "note-1", eventsource.NoStream, ev)
	fmt.Println("created at version", res.Version)
	// Two writers both loaded version 1; the first one wins.
	_, _ = store.Append(ctx, "note-1", eventsource.Exact(1), ev)
	_, err := store.Append(ctx, "note-1", eventsource.Exact(1), ev)
	var conflict *eventsource.ConcurrencyError
	if errors.As(err, &conflict) {
		fmt.Println("expected", conflict.Expected, "but stream is at", conflict.Actual)
	}
	// Output:
	// created at version 1
	// expected version 1 but stream is at 2
}

// Re-sending an append with the same event IDs (after a timeout, say)
// returns the original result and stores nothing twice.
func ExampleStore_idempotentAppend() {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	ev := eventsource.EventData{ID: "evt-1", Type: "order.placed"}
	first, _ := store.Append(ctx, "order-9", eventsource.NoStream, ev)
	again, err := store.Append(ctx, "order-9", eventsource.NoStream, ev)
	head, _ := store.Head(ctx)
	fmt.Println(first == again, err, "events stored:", head)
	// Output:
	// true <nil> events stored: 1
}

// Subscribe follows the global log: the stored events first, then new ones
// as they commit, in position order, until the context ends.
func ExampleSubscribe() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := eventsource.NewMemoryStore()
	_, _ = store.Append(ctx, "cart-1", eventsource.Any, eventsource.EventData{Type: "cart.added"})
	_, _ = store.Append(ctx, "user-1", eventsource.Any, eventsource.EventData{Type: "user.joined"})

	carts := eventsource.Filter{Categories: []string{"cart"}}
	for ev, err := range eventsource.Subscribe(ctx, store, 0, carts) {
		if err != nil {
			fmt.Println(errors.Is(err, context.Canceled))
			break
		}
		fmt.Println(ev.Position, ev.StreamID, ev.Type)
		if ev.Position == 1 { // caught up: write while following
			_, _ = store.Append(ctx, "cart-2", eventsource.Any, eventsource.EventData{Type: "cart.added"})
		} else {
			cancel()
		}
	}
	// Output:
	// 1 cart-1 cart.added
	// 3 cart-2 cart.added
	// true
}

// An upcaster turns events stored in an old schema into the current type
// when they are read.
func ExampleRegistry_AddUpcaster() {
	type TransferredV1 struct{ Cents int }
	type Transferred struct{ Amount, Fee int } // version 2

	reg := eventsource.NewRegistry(nil)
	_ = eventsource.Register[Transferred](reg, "transferred", 2)
	_ = reg.AddUpcaster(eventsource.Upcaster{
		FromType: "transferred", FromVersion: 1, ToVersion: 2,
		Func: eventsource.UpcastWith(nil, func(old TransferredV1) (Transferred, error) {
			return Transferred{Amount: old.Cents}, nil
		}),
	})
	if err := reg.Validate(); err != nil {
		panic(err)
	}
	old := eventsource.Event{Type: "transferred", SchemaVersion: 1, Data: []byte(`{"Cents":250}`)}
	v, _ := reg.Decode(old)
	fmt.Printf("%+v\n", v)
	_, err := reg.Decode(eventsource.Event{Type: "refunded", SchemaVersion: 1})
	fmt.Println(err)
	// Output:
	// {Amount:250 Fee:0}
	// eventsource: unknown event: type "refunded" schema version 1: type not registered
}

// LoadVersion answers what an aggregate looked like at an earlier version.
func ExampleRepository_LoadVersion() {
	ctx := context.Background()
	wallets, _ := eventsource.NewRepository(eventsource.NewMemoryStore(), walletRegistry(),
		eventsource.RepositoryConfig[*Wallet]{Type: "wallet"})
	for _, n := range []int{10, 20, 30} {
		_, _ = wallets.Execute(ctx, "1", func(*Wallet) ([]any, error) { return []any{Credited{Amount: n}}, nil })
	}
	then, v, _ := wallets.LoadVersion(ctx, "1", 2)
	now, _, _ := wallets.Load(ctx, "1")
	fmt.Println("at version", v, "balance", then.Balance, "- now", now.Balance)
	// Output:
	// at version 2 balance 30 - now 60
}

// A projector feeds a read model from the global log; the checkpoint is
// kept with the model, so a restart resumes exactly where it stopped.
func ExampleProjector() {
	ctx := context.Background()
	store := eventsource.NewMemoryStore()
	reg := walletRegistry()
	wallets, _ := eventsource.NewRepository(store, reg, eventsource.RepositoryConfig[*Wallet]{Type: "wallet"})
	_, _ = wallets.Execute(ctx, "a", func(*Wallet) ([]any, error) { return []any{Credited{Amount: 5}}, nil })
	_, _ = wallets.Execute(ctx, "b", func(*Wallet) ([]any, error) { return []any{Credited{Amount: 7}}, nil })

	total := eventsource.NewMemoryProjection(0, func(sum *int, ev eventsource.Event) error {
		v, err := reg.Decode(ev)
		if c, ok := v.(Credited); ok {
			*sum += c.Amount
		}
		return err
	})
	p, _ := eventsource.NewProjector(store, total, eventsource.ProjectorConfig{})
	_, _ = p.CatchUp(ctx) // or p.Run(ctx) to keep following
	total.Read(func(sum int, checkpoint uint64) {
		fmt.Println("total", sum, "as of position", checkpoint)
	})
	// Output:
	// total 12 as of position 2
}
