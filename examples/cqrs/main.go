// Command cqrs is an order service built with CQRS on an event-sourced
// write side. Commands (place, cancel) are validated and checked against
// the order aggregate, and emit events; two read models, orders by
// customer and revenue per day, answer queries. Each read model runs as
// several replicas fed from the same log, as separate query processes
// would be. It shows reading your own write with a consistency token (and
// what happens without one), writers and token-carrying readers running
// concurrently across replicas, a read model rebuilt and swapped while it
// serves, and a replica fed over pubsub that loses a message, whose drift
// the reconciler finds and repairs. It stops on its own.
//
//	go run ./examples/cqrs [-writers 4] [-orders 50] [-replicas 3] [-seed 1]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/pubsub"
)

func main() {
	if err := run(context.Background(), os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cqrs:", err)
		os.Exit(1)
	}
}

// Commands.
type (
	PlaceOrder struct {
		OrderID, Customer, Day string
		Amount                 int64 // cents
	}
	CancelOrder struct{ OrderID string }
)

// Validate checks the command's own fields; rules that need state are
// the aggregate's.
func (c PlaceOrder) Validate() error {
	var errs []error
	if c.OrderID == "" || strings.Contains(c.OrderID, "-") {
		errs = append(errs, errors.New("order ID must be non-empty and contain no '-'"))
	}
	if c.Customer == "" {
		errs = append(errs, errors.New("customer is required"))
	}
	if _, err := time.Parse(time.DateOnly, c.Day); err != nil {
		errs = append(errs, fmt.Errorf("day %q is not YYYY-MM-DD", c.Day))
	}
	if c.Amount <= 0 {
		errs = append(errs, errors.New("amount must be positive"))
	}
	return errors.Join(errs...)
}

// Events carry what the read models need.
type (
	OrderPlaced struct {
		Customer, Day string
		Amount        int64
	}
	OrderCancelled struct {
		Customer, Day string
		Amount        int64
	}
)

// Order is the write model.
type Order struct {
	Placed, Cancelled bool
	Customer, Day     string
	Amount            int64
}

func (o *Order) Apply(e any) error {
	switch e := e.(type) {
	case OrderPlaced:
		o.Placed, o.Customer, o.Day, o.Amount = true, e.Customer, e.Day, e.Amount
	case OrderCancelled:
		o.Cancelled = true
	}
	return nil
}

var (
	errExists       = errors.New("order already exists")
	errUnknownOrder = errors.New("no such order")
	errCancelled    = errors.New("order already cancelled")
)

// Queries and their answers.
type (
	OrdersOf    struct{ Customer string }
	RevenueOn   struct{ Day string }
	AllRevenue  struct{}
	OrderRecord struct {
		ID        string
		Amount    int64
		Cancelled bool
	}
)

// The read models: tables fed by these functions.

func newByCustomer() *cqrs.Table[[]OrderRecord] {
	return cqrs.NewTable(func(tx *cqrs.TableTx[[]OrderRecord], ev eventsource.Event) error {
		id := strings.TrimPrefix(ev.StreamID, "order-")
		switch ev.Type {
		case "order.placed":
			var e OrderPlaced
			if err := json.Unmarshal(ev.Data, &e); err != nil {
				return err
			}
			rows, _ := tx.Get(e.Customer)
			tx.Put(e.Customer, append(slices.Clip(rows), OrderRecord{ID: id, Amount: e.Amount}))
		case "order.cancelled":
			var e OrderCancelled
			if err := json.Unmarshal(ev.Data, &e); err != nil {
				return err
			}
			rows, _ := tx.Get(e.Customer)
			rows = slices.Clone(rows) // never modify a stored value in place
			for i := range rows {
				if rows[i].ID == id {
					rows[i].Cancelled = true
				}
			}
			tx.Put(e.Customer, rows)
		}
		return nil
	})
}

func newRevenue() *cqrs.Table[int64] {
	return cqrs.NewTable(func(tx *cqrs.TableTx[int64], ev eventsource.Event) error {
		var e OrderPlaced // OrderCancelled has the same shape
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		sum, _ := tx.Get(e.Day)
		if ev.Type == "order.cancelled" {
			e.Amount = -e.Amount
		}
		tx.Put(e.Day, sum+e.Amount)
		return nil
	})
}

// replica is one query-side process: its own copies of both read models,
// fed from the log, behind its own query bus.
type replica struct {
	name       string
	byCustomer *cqrs.ReadModel[*cqrs.Table[[]OrderRecord]]
	revenue    *cqrs.ReadModel[*cqrs.Table[int64]]
	queries    *cqrs.QueryBus
}

func newReplica(ctx context.Context, name string, store eventsource.Store, maxWait time.Duration) (*replica, error) {
	r := &replica{name: name}
	var err error
	if r.byCustomer, err = cqrs.NewReadModel(ctx, store, newByCustomer(), cqrs.ReadModelConfig[*cqrs.Table[[]OrderRecord]]{
		Name: name + "/orders-by-customer", New: newByCustomer,
	}); err != nil {
		return nil, err
	}
	if r.revenue, err = cqrs.NewReadModel(ctx, store, newRevenue(), cqrs.ReadModelConfig[*cqrs.Table[int64]]{
		Name: name + "/revenue-per-day", New: newRevenue,
	}); err != nil {
		return nil, err
	}
	if r.queries, err = cqrs.NewQueryBus(cqrs.QueryBusConfig{MaxWait: maxWait}); err != nil {
		return nil, err
	}
	return r, errors.Join(
		cqrs.HandleQuery(r.queries, r.byCustomer, func(_ context.Context, t *cqrs.Table[[]OrderRecord], q OrdersOf) ([]OrderRecord, error) {
			rows, _ := t.Get(q.Customer)
			return rows, nil
		}),
		cqrs.HandleQuery(r.queries, r.revenue, func(_ context.Context, t *cqrs.Table[int64], q RevenueOn) (int64, error) {
			sum, _ := t.Get(q.Day)
			return sum, nil
		}),
		cqrs.HandleQuery(r.queries, r.revenue, func(_ context.Context, t *cqrs.Table[int64], _ AllRevenue) (map[string]int64, error) {
			all := map[string]int64{}
			t.Read(func(_ func(string) (int64, bool), each func(func(string, int64) bool), _ uint64) {
				each(func(day string, sum int64) bool { all[day] = sum; return true })
			})
			return all, nil
		}),
	)
}

// start feeds both read models until ctx ends; wg waits for them.
func (r *replica) start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { _ = r.byCustomer.Run(ctx) })
	wg.Go(func() { _ = r.revenue.Run(ctx) })
}

func money(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("cqrs", flag.ContinueOnError)
	fs.SetOutput(w)
	writers := fs.Int("writers", 4, "concurrent writers")
	orders := fs.Int("orders", 50, "orders per writer")
	replicas := fs.Int("replicas", 3, "read-model replicas")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *writers < 1 || *orders < 1 || *replicas < 2 {
		return fmt.Errorf("need -writers >= 1, -orders >= 1 and -replicas >= 2")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var feeds sync.WaitGroup
	defer feeds.Wait()
	defer cancel() // stop the feeds before waiting for them

	// The write side: an event store, the order aggregate, a command bus.
	store := eventsource.NewMemoryStore()
	reg := eventsource.NewRegistry(nil)
	if err := errors.Join(
		eventsource.Register[OrderPlaced](reg, "order.placed", 1),
		eventsource.Register[OrderCancelled](reg, "order.cancelled", 1),
	); err != nil {
		return err
	}
	orderRepo, err := eventsource.NewRepository(store, reg, eventsource.RepositoryConfig[*Order]{Type: "order"})
	if err != nil {
		return err
	}
	cmds, err := cqrs.NewCommandBus(cqrs.CommandBusConfig{MaxInFlight: 8})
	if err != nil {
		return err
	}
	cmds.Use(cqrs.Correlation(), cqrs.RetryConflicts(cqrs.RetryConfig{}), cqrs.Timeout(5*time.Second))
	if err := errors.Join(
		cqrs.HandleCommand(cmds, cqrs.OnAggregate(orderRepo, func(c PlaceOrder) string { return c.OrderID },
			func(_ context.Context, c PlaceOrder, o *Order) ([]any, error) {
				if o.Placed {
					return nil, fmt.Errorf("%w: %s", errExists, c.OrderID)
				}
				return []any{OrderPlaced{Customer: c.Customer, Day: c.Day, Amount: c.Amount}}, nil
			})),
		cqrs.HandleCommand(cmds, cqrs.OnAggregate(orderRepo, func(c CancelOrder) string { return c.OrderID },
			func(_ context.Context, c CancelOrder, o *Order) ([]any, error) {
				switch {
				case !o.Placed:
					return nil, fmt.Errorf("%w: %s", errUnknownOrder, c.OrderID)
				case o.Cancelled:
					return nil, fmt.Errorf("%w: %s", errCancelled, c.OrderID)
				}
				return []any{OrderCancelled{Customer: o.Customer, Day: o.Day, Amount: o.Amount}}, nil
			})),
	); err != nil {
		return err
	}

	// The read side: replicas fed from the same log.
	reps := make([]*replica, *replicas)
	for i := range reps {
		if reps[i], err = newReplica(ctx, fmt.Sprint("replica-", i+1), store, 2*time.Second); err != nil {
			return err
		}
	}
	// Replica 1 starts late, to show a stale read and a token's wait.
	for _, r := range reps[1:] {
		r.start(ctx, &feeds)
	}

	fmt.Fprintln(w, "== commands: validation and business rules")
	res, err := cmds.Dispatch(ctx, PlaceOrder{OrderID: "o1", Customer: "ada", Day: "2025-03-01", Amount: 4200})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "place o1 for ada, 42.00 on 2025-03-01 -> stored, token %s\n", res.Token)
	_, err = cmds.Dispatch(ctx, PlaceOrder{OrderID: "o2", Customer: "", Day: "March 1st", Amount: -1})
	fmt.Fprintf(w, "place o2 with bad fields -> invalid: %v (%s)\n", errors.Is(err, cqrs.ErrInvalidCommand),
		strings.ReplaceAll(err.Error(), "\n", "; "))
	_, err = cmds.Dispatch(ctx, PlaceOrder{OrderID: "o1", Customer: "ada", Day: "2025-03-01", Amount: 100})
	fmt.Fprintf(w, "place o1 again -> rejected: %v\n", err)
	_, err = cmds.Dispatch(ctx, CancelOrder{OrderID: "nope"})
	fmt.Fprintf(w, "cancel an unknown order -> rejected: %v\n", err)
	_, err = cmds.Dispatch(ctx, struct{ Refund string }{"o1"})
	fmt.Fprintf(w, "a command nobody handles -> %v\n", errors.Is(err, cqrs.ErrNoHandler))

	fmt.Fprintln(w, "\n== read your writes")
	late := reps[0]
	stale, err := cqrs.Ask[[]OrderRecord](ctx, late.queries, OrdersOf{Customer: "ada"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s (not fed yet), no token -> %d orders for ada: a stale read\n", late.name, len(stale))
	quick, qcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = cqrs.AskAfter[[]OrderRecord](quick, late.queries, res.Token, OrdersOf{Customer: "ada"})
	qcancel()
	fmt.Fprintf(w, "%s, token %s, 50ms budget -> not yet consistent: %v\n", late.name, res.Token, errors.Is(err, cqrs.ErrNotConsistent))
	late.start(ctx, &feeds)
	got, err := cqrs.AskAfter[[]OrderRecord](ctx, late.queries, res.Token, OrdersOf{Customer: "ada"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s fed, token %s -> ada has %v\n", late.name, res.Token, got)
	res, err = cmds.Dispatch(ctx, CancelOrder{OrderID: "o1"})
	if err != nil {
		return err
	}
	for _, r := range reps {
		got, err := cqrs.AskAfter[[]OrderRecord](ctx, r.queries, res.Token, OrdersOf{Customer: "ada"})
		if err != nil {
			return err
		}
		rev, err := cqrs.AskAfter[int64](ctx, r.queries, res.Token, RevenueOn{Day: "2025-03-01"})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "cancel o1 (token %s), ask %s -> ada %v, revenue on 2025-03-01 %s\n", res.Token, r.name, got, money(rev))
	}

	fmt.Fprintf(w, "\n== %d writers x %d orders, readers with tokens on %d replicas, one rebuild\n", *writers, *orders, *replicas)
	rng := rand.New(rand.NewPCG(*seed, 7))
	type plan struct {
		cmd    PlaceOrder
		cancel bool
	}
	plans := make([][]plan, *writers)
	customers := []string{"ada", "bob", "cy", "dee", "eve", "fay", "gus"}
	for wi := range plans {
		for i := range *orders {
			plans[wi] = append(plans[wi], plan{
				cmd: PlaceOrder{
					OrderID:  fmt.Sprintf("w%dn%d", wi, i),
					Customer: customers[rng.IntN(len(customers))],
					Day:      fmt.Sprintf("2025-03-%02d", 1+rng.IntN(7)),
					Amount:   int64(100 + rng.IntN(20000)),
				},
				cancel: rng.IntN(10) == 0,
			})
		}
	}
	var (
		placed, cancelled, reads, staleReads atomic.Int64
		loadErr                              = make(chan error, *writers)
		load                                 sync.WaitGroup
		rebuildDone                          = make(chan error, 1)
	)
	for wi, ps := range plans {
		load.Go(func() {
			for i, p := range ps {
				res, err := cmds.Dispatch(ctx, p.cmd)
				if err != nil {
					loadErr <- err
					return
				}
				placed.Add(1)
				if p.cancel {
					if res, err = cmds.Dispatch(ctx, CancelOrder{OrderID: p.cmd.OrderID}); err != nil {
						loadErr <- err
						return
					}
					cancelled.Add(1)
				}
				// Read the write back from any replica: the token makes it safe.
				r := reps[(wi+i)%len(reps)]
				got, err := cqrs.AskAfter[[]OrderRecord](ctx, r.queries, res.Token, OrdersOf{Customer: p.cmd.Customer})
				if err != nil {
					loadErr <- err
					return
				}
				reads.Add(1)
				i := slices.IndexFunc(got, func(o OrderRecord) bool { return o.ID == p.cmd.OrderID })
				if i < 0 || got[i].Cancelled != p.cancel {
					staleReads.Add(1)
				}
			}
		})
	}
	go func() { _, err := reps[1].revenue.Rebuild(ctx); rebuildDone <- err }()
	load.Wait()
	close(loadErr)
	if err := <-loadErr; err != nil {
		return err
	}
	if err := <-rebuildDone; err != nil {
		return err
	}
	fmt.Fprintf(w, "placed %d, cancelled %d; %d reads with tokens, %d older than their token\n",
		placed.Load(), cancelled.Load(), reads.Load(), staleReads.Load())
	fmt.Fprintf(w, "%s revenue rebuilt into a shadow copy and swapped while serving: %d rebuild(s)\n",
		reps[1].name, reps[1].revenue.Stats().Rebuilds)

	// Every replica, asked with the last token, agrees with a replay of the log.
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	want := map[string]int64{}
	for ev, err := range store.ReadAll(ctx, 0, eventsource.Filter{}) {
		if err != nil {
			return err
		}
		var e OrderPlaced
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		if ev.Type == "order.cancelled" {
			e.Amount = -e.Amount
		}
		want[e.Day] += e.Amount
	}
	for _, r := range reps {
		all, err := cqrs.AskAfter[map[string]int64](ctx, r.queries, cqrs.Token(head), AllRevenue{})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s at position %d: revenue per day matches a replay of the log: %v\n", r.name, head, equal(all, want))
	}
	days := make([]string, 0, len(want))
	for d := range want {
		days = append(days, d)
	}
	slices.Sort(days)
	for _, d := range days {
		fmt.Fprintf(w, "  %s  %10s\n", d, money(want[d]))
	}

	fmt.Fprintln(w, "\n== a replica fed over pubsub loses a message; the reconciler repairs it")
	return pubsubReplica(ctx, w, store, want, head)
}

// lossy drops the nth message published through it.
type lossy struct {
	pubsub.Publisher
	n, seen int
	dropped string
}

func (l *lossy) Publish(ctx context.Context, topic string, msgs ...*pubsub.Message) error {
	l.seen++
	if l.seen == l.n && len(msgs) == 1 {
		l.dropped = msgs[0].Header(cqrs.HeaderEventPosition)
		return nil // gone
	}
	return l.Publisher.Publish(ctx, topic, msgs...)
}

func pubsubReplica(ctx context.Context, w io.Writer, store eventsource.Store, want map[string]int64, head uint64) error {
	broker, err := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	if err != nil {
		return err
	}
	defer broker.Close()
	remote, err := cqrs.NewReadModel(ctx, store, newRevenue(), cqrs.ReadModelConfig[*cqrs.Table[int64]]{Name: "remote/revenue-per-day", New: newRevenue})
	if err != nil {
		return err
	}
	sub, err := broker.Subscribe(ctx, "orders.>", remote.Handle, pubsub.SubscribeConfig{})
	if err != nil {
		return err
	}
	defer sub.Close()
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	pub := &lossy{Publisher: broker, n: int(head / 2)}
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		_, _ = cqrs.Forward(fctx, store, 0, eventsource.Filter{}, pub, func(ev eventsource.Event) string {
			return "orders." + strings.ReplaceAll(ev.Type, "order.", "")
		})
	}()
	if err := remote.WaitFor(ctx, cqrs.Token(head)); err != nil {
		return err
	}
	stop()
	<-forwarded
	rows := func() map[string]int64 {
		all := map[string]int64{}
		remote.Current().Read(func(_ func(string) (int64, bool), each func(func(string, int64) bool), _ uint64) {
			each(func(d string, v int64) bool { all[d] = v; return true })
		})
		return all
	}
	fmt.Fprintf(w, "forwarded %d events, dropped the one at position %s; remote replica at position %d matches the log: %v\n",
		head, pub.dropped, remote.Stats().Checkpoint, equal(rows(), want))
	rec, err := cqrs.NewReconciler(remote, cqrs.ReconcilerConfig{MaxRows: 3})
	if err != nil {
		return err
	}
	var repaired []string
	passes := 0
	for {
		rep, err := rec.Pass(ctx)
		if err != nil {
			return err
		}
		passes++
		repaired = append(repaired, rep.Repaired...)
		if rep.SweepDone {
			break
		}
	}
	fmt.Fprintf(w, "reconciler: %d passes of at most ~3 rows, repaired %v; matches the log: %v\n", passes, repaired, equal(rows(), want))
	return nil
}

func equal(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
