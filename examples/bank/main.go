// Command bank shows event sourcing on bank accounts: every deposit,
// withdrawal and transfer is an event; balances are derived by replaying
// them. It walks through a business rule that rejects overdrafts, an
// atomic transfer across two accounts, two tellers racing on one account
// (a concurrency conflict, then its retry), many tellers depositing at
// once, a time-travel query, and a balance projection that is followed
// live and then rebuilt from zero. It stops on its own.
//
//	go run ./examples/bank [-tellers 8] [-deposits 25]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/distkit/distkit/eventsource"
)

func main() {
	if err := run(context.Background(), os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bank:", err)
		os.Exit(1)
	}
}

// Events. Amounts are in cents.
type (
	Opened         struct{ Owner string }
	Deposited      struct{ Amount int64 }
	Withdrawn      struct{ Amount int64 }
	TransferredOut struct {
		To     string
		Amount int64
	}
	TransferredIn struct {
		From   string
		Amount int64
	}
)

var errOverdraft = errors.New("insufficient funds")

// Account is the state of one account, rebuilt from its events.
type Account struct {
	Owner   string
	Open    bool
	Balance int64
}

// Apply implements eventsource.Aggregate.
func (a *Account) Apply(e any) error {
	switch e := e.(type) {
	case Opened:
		a.Owner, a.Open = e.Owner, true
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	case TransferredOut:
		a.Balance -= e.Amount
	case TransferredIn:
		a.Balance += e.Amount
	default:
		return fmt.Errorf("account: unknown event %T", e)
	}
	return nil
}

// Commands: each decides on the current state and returns the events.

func open(owner string, initial int64) func(*Account) ([]any, error) {
	return func(a *Account) ([]any, error) {
		if a.Open {
			return nil, fmt.Errorf("account of %s already open", a.Owner)
		}
		return []any{Opened{Owner: owner}, Deposited{Amount: initial}}, nil
	}
}

func deposit(n int64) func(*Account) ([]any, error) {
	return func(a *Account) ([]any, error) {
		if !a.Open {
			return nil, errors.New("account not open")
		}
		return []any{Deposited{Amount: n}}, nil
	}
}

func withdraw(n int64) func(*Account) ([]any, error) {
	return func(a *Account) ([]any, error) {
		if a.Balance < n {
			return nil, fmt.Errorf("%w: balance %d, asked %d", errOverdraft, a.Balance, n)
		}
		return []any{Withdrawn{Amount: n}}, nil
	}
}

func newRegistry() (*eventsource.Registry, error) {
	reg := eventsource.NewRegistry(nil)
	err := errors.Join(
		eventsource.Register[Opened](reg, "account.opened", 1),
		eventsource.Register[Deposited](reg, "account.deposited", 1),
		eventsource.Register[Withdrawn](reg, "account.withdrawn", 1),
		eventsource.Register[TransferredOut](reg, "account.transferred_out", 1),
		eventsource.Register[TransferredIn](reg, "account.transferred_in", 1),
	)
	if err != nil {
		return nil, err
	}
	return reg, reg.Validate()
}

type bank struct {
	w        io.Writer
	store    *eventsource.MemoryStore
	reg      *eventsource.Registry
	accounts *eventsource.Repository[*Account] // conflicts are returned
	retrying *eventsource.Repository[*Account] // conflicts are retried
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("bank", flag.ContinueOnError)
	fs.SetOutput(w)
	tellers := fs.Int("tellers", 8, "concurrent tellers in the deposit rush")
	deposits := fs.Int("deposits", 25, "deposits per teller")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tellers < 1 || *deposits < 1 {
		return errors.New("-tellers and -deposits must be at least 1")
	}
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	b := &bank{w: w, store: eventsource.NewMemoryStore(), reg: reg}
	snapshots := eventsource.NewMemorySnapshotStore()
	cfg := eventsource.RepositoryConfig[*Account]{Type: "account", Snapshots: snapshots, SnapshotEvery: 50}
	if b.accounts, err = eventsource.NewRepository(b.store, reg, cfg); err != nil {
		return err
	}
	cfg.ConflictRetries = 100
	if b.retrying, err = eventsource.NewRepository(b.store, reg, cfg); err != nil {
		return err
	}

	// The live balance projection follows the log from the start.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	live := newBalances(reg)
	projector, err := eventsource.NewProjector(b.store, live, eventsource.ProjectorConfig{
		Filter: eventsource.Filter{Categories: []string{"account"}},
	})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	projErr := make(chan error, 1)
	wg.Go(func() { projErr <- projector.Run(ctx) })
	defer wg.Wait() // after cancel (deferred later, so it runs first)
	defer cancel()

	for _, step := range []func(context.Context) error{
		b.basics, b.transfers, b.race, func(ctx context.Context) error { return b.rush(ctx, *tellers, *deposits) },
		b.timeTravel,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return b.projections(ctx, live, projErr)
}

func (b *bank) exec(ctx context.Context, id string, cmd func(*Account) ([]any, error)) (eventsource.Result[*Account], error) {
	return b.accounts.Execute(ctx, id, cmd)
}

func (b *bank) basics(ctx context.Context) error {
	fmt.Fprintln(b.w, "== accounts, deposits and withdrawals")
	for _, o := range []struct {
		id      string
		initial int64
	}{{"alice", 10000}, {"bob", 5000}} {
		res, err := b.exec(ctx, o.id, open(o.id, o.initial))
		if err != nil {
			return err
		}
		fmt.Fprintf(b.w, "%s opens with %d -> balance %d (version %d)\n", o.id, o.initial, res.State.Balance, res.Version)
	}
	if _, err := b.exec(ctx, "alice", open("mallory", 1)); err == nil {
		return errors.New("an account opened twice")
	} else {
		fmt.Fprintf(b.w, "opening alice again -> rejected: %v\n", err)
	}
	res, err := b.exec(ctx, "alice", deposit(4000))
	if err != nil {
		return err
	}
	fmt.Fprintf(b.w, "alice deposits 4000 -> balance %d (version %d)\n", res.State.Balance, res.Version)
	_, err = b.exec(ctx, "bob", withdraw(8000))
	if !errors.Is(err, errOverdraft) {
		return fmt.Errorf("overdraft not rejected: %v", err)
	}
	fmt.Fprintf(b.w, "bob withdraws 8000 -> rejected: %v\n", err)
	if res, err = b.exec(ctx, "bob", withdraw(3000)); err != nil {
		return err
	}
	fmt.Fprintf(b.w, "bob withdraws 3000 -> balance %d (version %d)\n", res.State.Balance, res.Version)
	return nil
}

// transfer moves money between two accounts in one atomic append across
// both streams, each expecting the version it was loaded at.
func (b *bank) transfer(ctx context.Context, from, to string, amount int64) error {
	for attempt := 0; ; attempt++ {
		src, srcV, err := b.accounts.Load(ctx, from)
		if err != nil {
			return err
		}
		_, dstV, err := b.accounts.Load(ctx, to)
		if err != nil {
			return err
		}
		if src.Balance < amount {
			return fmt.Errorf("%w: balance %d, asked %d", errOverdraft, src.Balance, amount)
		}
		out, err := b.reg.Encode(TransferredOut{To: to, Amount: amount})
		if err != nil {
			return err
		}
		in, err := b.reg.Encode(TransferredIn{From: from, Amount: amount})
		if err != nil {
			return err
		}
		_, err = b.store.AppendStreams(ctx,
			eventsource.StreamAppend{StreamID: b.accounts.StreamID(from), Expected: eventsource.Exact(srcV), Events: []eventsource.EventData{out}},
			eventsource.StreamAppend{StreamID: b.accounts.StreamID(to), Expected: eventsource.Exact(dstV), Events: []eventsource.EventData{in}},
		)
		if errors.Is(err, eventsource.ErrConcurrencyConflict) && attempt < 10 {
			continue
		}
		return err
	}
}

func (b *bank) transfers(ctx context.Context) error {
	fmt.Fprintln(b.w, "== transfers (atomic across two accounts)")
	if err := b.transfer(ctx, "alice", "bob", 6000); err != nil {
		return err
	}
	alice, av, _ := b.accounts.Load(ctx, "alice")
	bob, bv, _ := b.accounts.Load(ctx, "bob")
	fmt.Fprintf(b.w, "alice -> bob 6000: alice %d (version %d), bob %d (version %d)\n", alice.Balance, av, bob.Balance, bv)
	err := b.transfer(ctx, "bob", "alice", 50000)
	if !errors.Is(err, errOverdraft) {
		return fmt.Errorf("overdrawing transfer not rejected: %v", err)
	}
	head, _ := b.store.Head(ctx)
	fmt.Fprintf(b.w, "bob -> alice 50000 -> rejected: %v; log still has %d events\n", err, head)
	return nil
}

// race has two tellers work on alice's account at once: B loads it, A
// commits a deposit, then B tries to commit a withdrawal decided on what
// it loaded.
func (b *bank) race(ctx context.Context) error {
	fmt.Fprintln(b.w, "== two tellers, one account")
	for _, repo := range []*eventsource.Repository[*Account]{b.accounts, b.retrying} {
		loaded, committed, finished := make(chan uint64, 1), make(chan struct{}), make(chan struct{})
		var tellerB eventsource.Result[*Account]
		var errB error
		go func() {
			defer close(finished)
			first := true
			tellerB, errB = repo.Execute(ctx, "alice", func(a *Account) ([]any, error) {
				if first { // only the first attempt races; a retry sees A's deposit
					first = false
					_, v, err := b.accounts.Load(ctx, "alice")
					if err != nil {
						return nil, err
					}
					loaded <- v
					<-committed
				}
				return withdraw(2500)(a)
			})
		}()
		var v uint64
		select {
		case v = <-loaded:
		case <-finished: // teller B failed before deciding
			return errB
		}
		res, err := b.exec(ctx, "alice", deposit(100))
		close(committed)
		<-finished
		if err != nil {
			return err
		}
		fmt.Fprintf(b.w, "teller B loads alice at version %d; teller A deposits 100 first (version %d)\n", v, res.Version)
		var conflict *eventsource.ConcurrencyError
		switch {
		case errors.As(errB, &conflict):
			fmt.Fprintf(b.w, "teller B withdraws 2500 -> conflict: expected %v, stream at version %d\n", conflict.Expected, conflict.Actual)
		case errB != nil:
			return errB
		default:
			fmt.Fprintf(b.w, "teller B withdraws 2500 with retry -> ok after %d attempts: balance %d (version %d)\n",
				tellerB.Attempts, tellerB.State.Balance, tellerB.Version)
		}
	}
	return nil
}

// rush has many tellers deposit into one account at once, each retrying
// on conflict: nothing is lost and nothing is counted twice.
func (b *bank) rush(ctx context.Context, tellers, deposits int) error {
	fmt.Fprintln(b.w, "== deposit rush")
	before, _, err := b.accounts.Load(ctx, "bob")
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, tellers)
	for t := range tellers {
		wg.Go(func() {
			for range deposits {
				if _, err := b.retrying.Execute(ctx, "bob", deposit(1)); err != nil {
					errs[t] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	after, _, err := b.accounts.Load(ctx, "bob")
	if err != nil {
		return err
	}
	want := before.Balance + int64(tellers*deposits)
	fmt.Fprintf(b.w, "%d tellers x %d deposits of 1 into bob: balance %d -> %d (want %d)\n",
		tellers, deposits, before.Balance, after.Balance, want)
	if after.Balance != want {
		return fmt.Errorf("deposit rush lost money: %d != %d", after.Balance, want)
	}
	return nil
}

func (b *bank) timeTravel(ctx context.Context) error {
	fmt.Fprintln(b.w, "== time travel")
	now, v, err := b.accounts.Load(ctx, "alice")
	if err != nil {
		return err
	}
	for _, at := range []uint64{2, 3, 4} {
		then, tv, err := b.accounts.LoadVersion(ctx, "alice", at)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.w, "alice as of version %d: balance %d\n", tv, then.Balance)
	}
	fmt.Fprintf(b.w, "alice now (version %d): balance %d\n", v, now.Balance)
	// By time: the commit time of alice's transfer, then the state then.
	for ev, err := range b.store.ReadStream(ctx, b.accounts.StreamID("alice"), eventsource.StreamQuery{From: 4, To: 4}) {
		if err != nil {
			return err
		}
		then, tv, err := b.accounts.LoadAsOf(ctx, "alice", ev.Time)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.w, "alice as of the instant of her transfer: balance %d (version %d)\n", then.Balance, tv)
	}
	return nil
}

// balances is the read model: the balance of every account.
func newBalances(reg *eventsource.Registry) *eventsource.MemoryProjection[map[string]int64] {
	return eventsource.NewMemoryProjection(map[string]int64{}, func(m *map[string]int64, ev eventsource.Event) error {
		v, err := reg.Decode(ev)
		if err != nil {
			return err
		}
		id := strings.TrimPrefix(ev.StreamID, "account-")
		switch e := v.(type) {
		case Deposited:
			(*m)[id] += e.Amount
		case Withdrawn:
			(*m)[id] -= e.Amount
		case TransferredOut:
			(*m)[id] -= e.Amount
		case TransferredIn:
			(*m)[id] += e.Amount
		}
		return nil
	})
}

func read(p *eventsource.MemoryProjection[map[string]int64]) (map[string]int64, uint64) {
	var m map[string]int64
	var cp uint64
	p.Read(func(s map[string]int64, c uint64) { m, cp = maps.Clone(s), c })
	return m, cp
}

func (b *bank) projections(ctx context.Context, live *eventsource.MemoryProjection[map[string]int64], projErr <-chan error) error {
	fmt.Fprintln(b.w, "== balance projection")
	head, err := b.store.Head(ctx)
	if err != nil {
		return err
	}
	// The live projection is eventually consistent: wait until its
	// checkpoint reaches the head (the position is the consistency token).
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan error, 1)
	go func() {
		select {
		case err := <-projErr: // the projector stopped early: stop waiting
			stopped <- err
			cancel()
		case <-waitCtx.Done():
		}
	}()
	if _, err := live.WaitFor(waitCtx, head); err != nil {
		select {
		case perr := <-stopped:
			return fmt.Errorf("projector stopped: %w", perr)
		default:
			return fmt.Errorf("live projection did not catch up: %w", err)
		}
	}
	liveBal, liveCP := read(live)
	fresh := newBalances(b.reg)
	cp, err := eventsource.Rebuild(ctx, b.store, fresh, eventsource.ProjectorConfig{})
	if err != nil {
		return err
	}
	rebuilt, _ := read(fresh)
	for _, id := range slices.Sorted(maps.Keys(rebuilt)) {
		agg, _, err := b.accounts.Load(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.w, "%s: rebuilt %d, live %d, aggregate %d\n", id, rebuilt[id], liveBal[id], agg.Balance)
		if rebuilt[id] != agg.Balance {
			return fmt.Errorf("projection of %s disagrees with its aggregate", id)
		}
	}
	fmt.Fprintf(b.w, "rebuilt from zero to position %d; live projection at %d; equal: %v\n", cp, liveCP, maps.Equal(rebuilt, liveBal))
	if !maps.Equal(rebuilt, liveBal) {
		return errors.New("rebuilt projection differs from the live one")
	}
	return nil
}
