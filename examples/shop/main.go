// Command shop is distkit's main demo: one small online shop, in one
// process, that uses every pattern in the module together. It runs on
// the in-memory implementations, narrates what happens as it happens,
// prints a summary table computed from what it observed, and stops on its
// own in a few seconds.
//
//   - Orders are event-sourced aggregates (eventsource), written through a
//     command bus and read through two read models (cqrs); one query
//     reads its own write with a consistency token.
//   - Customer records are spread over 4 shards by customer ID (shard on
//     hashring); midway a 5th shard is added and keys migrate while orders
//     keep flowing.
//   - Order events are published (pubsub) to inventory, payment and
//     shipping consumer groups; shipping is slow, payment fails now and
//     then (redelivered), and a poison message ends in the dead-letter
//     topic.
//   - Checkout is a saga (saga): reserve stock and authorise the payment
//     in parallel, then ship; a declined card compensates the
//     reservation; the coordinator crashes once mid-saga and a new one
//     resumes from the log.
//   - Payments go over HTTP to a local flaky provider through the
//     ambassador client (ambassador), whose retries and circuit breaker
//     (circuitbreaker) ride out an outage.
//   - Three projector replicas elect a leader (election, Bully on heartbeat
//     failure detection); only the leader feeds the read models, through
//     a fence; the leader is frozen and cut off, a new one takes over, and
//     the old leader's late write is refused by the fence.
//
// Usage:
//
//	go run ./examples/shop [-seed 1] [-orders 150] [-soak]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/saga"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	seed      uint64
	orders    int
	workers   int
	customers int
	pace      time.Duration // between two orders entering the shop
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("shop", flag.ContinueOnError)
	fs.SetOutput(w)
	var cfg config
	fs.Uint64Var(&cfg.seed, "seed", 1, "random seed: the same seed places the same orders")
	fs.IntVar(&cfg.orders, "orders", 150, "orders to place")
	fs.IntVar(&cfg.workers, "workers", 4, "concurrent checkout workers")
	fs.IntVar(&cfg.customers, "customers", 400, "registered customers (keys in the sharded store)")
	fs.DurationVar(&cfg.pace, "pace", 15*time.Millisecond, "time between two orders entering the shop")
	soak := fs.Bool("soak", false, "run longer: 10x the orders at a faster pace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *soak {
		cfg.orders *= 10
		cfg.pace /= 3
	}
	if cfg.orders < 40 || cfg.workers < 1 || cfg.customers < 10 || cfg.pace < 0 {
		return errors.New("need -orders >= 40, -workers >= 1, -customers >= 10 and -pace >= 0")
	}
	rep, err := shop(ctx, w, cfg)
	if err != nil {
		return err
	}
	rep.print(w)
	if problems := rep.check(); len(problems) > 0 {
		return fmt.Errorf("invariants broken:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Fprintln(w, "\nchecks: every order completed or compensated; read models equal a replay of the log;")
	fmt.Fprintln(w, "        no message lost; one leader's writes per token; every key readable after the migration")
	return nil
}

// printer serialises the narration and stamps each line with the time
// since the start.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *printer) say(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%5.2fs] "+format+"\n", append([]any{time.Since(p.start).Seconds()}, a...)...)
}

func (p *printer) act(title string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\n== %s\n", title)
}

// plan is one order the shop will receive.
type plan struct {
	id, customer string
	amount       int64
	declined     bool // the card will be declined
}

func makePlans(cfg config) []plan {
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	plans := make([]plan, cfg.orders)
	anyDeclined := false
	for i := range plans {
		plans[i] = plan{
			id:       fmt.Sprintf("o%04d", i+1),
			customer: fmt.Sprintf("c%04d", rng.IntN(cfg.customers)),
			amount:   int64(500 + rng.IntN(20000)),
			declined: rng.IntN(8) == 0,
		}
		anyDeclined = anyDeclined || plans[i].declined
	}
	if !anyDeclined { // so every run shows a compensation
		plans[len(plans)/3].declined = true
	}
	return plans
}

// shopRun is one run of the shop: its parts, its orders, and the report
// it fills in.
type shopRun struct {
	cfg config
	out *printer
	say func(format string, a ...any)
	rep *report

	// Orders: the event store, the command bus, the read side.
	store   *eventsource.MemoryStore
	cmds    *cqrs.CommandBus
	reads   *readSide
	guarded *guardedReadSide
	cluster *cluster

	customers *customers
	events    *events

	// Checkout.
	provider   *paymentServer
	payments   *paymentClient
	breakers   *breakerLog
	stock      *stockService
	shipping   *shippingService
	newCoord   func() (*saga.Coordinator, *crashable, error)
	coords     *coordinators
	crashArmed atomic.Bool
	crashed    chan string // the order whose shipment crashed coordinator A

	// The flow of orders.
	plans                           []plan
	outcomes                        []saga.State
	placed, finished, compensations atomic.Int64
	acts                            []int        // order counts at which the acts play
	allowed                         atomic.Int64 // orders may enter up to here
	errs                            chan error   // a worker's failure
	workers                         sync.WaitGroup
	stopWorkers                     context.CancelFunc
}

// shop runs the whole story and returns what it observed.
func shop(ctx context.Context, w io.Writer, cfg config) (*report, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out := &printer{w: w, start: time.Now()}
	s := &shopRun{cfg: cfg, out: out, say: out.say, rep: &report{cfg: cfg}}

	out.act("setup")
	if err := s.setupOrders(ctx); err != nil {
		return nil, err
	}
	defer s.cluster.close()
	if err := s.setupCustomers(); err != nil {
		return nil, err
	}
	if err := s.setupEvents(ctx); err != nil {
		return nil, err
	}
	defer s.events.stop()
	stopPayments, err := s.setupCheckout()
	if err != nil {
		return nil, err
	}
	defer stopPayments()

	out.act(fmt.Sprintf("orders start flowing: %d orders, one every %v, %d checkout workers", cfg.orders, cfg.pace, cfg.workers))
	s.startOrders(ctx)
	defer func() { s.stopWorkers(); s.workers.Wait() }()
	for k, act := range []func(context.Context) error{s.outage, s.reshard, s.crashCoordinator, s.failover} {
		if err := s.reached(ctx, s.acts[k]); err != nil {
			return nil, err
		}
		if err := act(ctx); err != nil {
			return nil, err
		}
		// Let the orders of the next act in.
		s.allowed.Store(int64(s.acts[min(k+2, len(s.acts)-1)]))
	}
	out.act("the remaining orders")
	if err := s.finish(ctx); err != nil {
		return nil, err
	}
	return s.rep, s.gather(ctx)
}

// setupOrders starts the write side (event store, aggregate, command
// bus) and the read side (two read models, fed by the leader of three
// projector replicas through a fence).
func (s *shopRun) setupOrders(ctx context.Context) error {
	s.store = eventsource.NewMemoryStore()
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	repo, err := eventsource.NewRepository(s.store, reg, eventsource.RepositoryConfig[*Order]{Type: "order"})
	if err != nil {
		return err
	}
	if s.cmds, err = newCommandBus(repo); err != nil {
		return err
	}
	if s.reads, err = newReadSide(ctx, s.store); err != nil {
		return err
	}
	s.guarded = &guardedReadSide{rs: s.reads}
	if s.cluster, err = startCluster(ctx, 3, s.cfg.seed, s.store, s.guarded, s.say); err != nil {
		return err
	}
	first, err := s.cluster.leader(ctx, 0)
	if err != nil {
		s.cluster.close()
		return err
	}
	s.rep.leaders = append(s.rep.leaders, fmt.Sprintf("%s (token %d)", first.id, first.token()))
	return nil
}

// setupCustomers registers the customers on four shards.
func (s *shopRun) setupCustomers() error {
	c, err := newCustomers(s.cfg.customers)
	if err != nil {
		return err
	}
	s.customers = c
	m := c.kv.Router().Map()
	s.say("customer store: %d customers on %d shards (map epoch %d); %s", len(c.keys), len(m.Shards()), m.Epoch(), c.balance())
	return nil
}

// setupEvents forwards the order events to the consumer groups.
func (s *shopRun) setupEvents(ctx context.Context) error {
	e, err := startEvents(ctx, s.store)
	if err != nil {
		return err
	}
	s.events = e
	s.say("pubsub: order events forwarded from the log to orders.*; groups inventory (2 members), payment, shipping (slow); dead letters to dead.orders")
	return nil
}

// setupCheckout starts the payment provider and the checkout saga's
// services and coordinator. The returned func stops the provider.
func (s *shopRun) setupCheckout() (stop func(), err error) {
	provider, url, stopProvider, err := startPayments()
	if err != nil {
		return nil, err
	}
	s.provider = provider
	s.breakers = &breakerLog{say: s.say, ch: make(chan struct{}, 1)}
	if s.payments, err = newPaymentClient(url, s.breakers); err != nil {
		stopProvider()
		return nil, err
	}
	stop = func() { s.payments.http.CloseIdleConnections(); stopProvider() }
	s.say("payments: provider on %s, called through the ambassador client (3 attempts, breaker opens after 5 failures)", strings.TrimPrefix(url, "http://"))

	s.stock = &stockService{held: map[string]bool{}}
	s.shipping = &shippingService{}
	def, err := checkoutDefinition(s.stock, s.payments, s.shipping)
	if err != nil {
		stop()
		return nil, err
	}
	sagaLog := saga.NewMemoryStore() // durable: it outlives coordinators
	s.newCoord = func() (*saga.Coordinator, *crashable, error) {
		cs := &crashable{Store: sagaLog}
		c, err := saga.New(cs, []*saga.Definition{def}, saga.Config{})
		return c, cs, err
	}
	coordA, storeA, err := s.newCoord()
	if err != nil {
		stop()
		return nil, err
	}
	s.coords = &coordinators{cur: coordA, store: storeA, replaced: make(chan struct{})}
	s.crashed = make(chan string, 1)
	s.shipping.onShip = func(order string) {
		if s.crashArmed.CompareAndSwap(true, false) {
			s.coords.store.down.Store(true)
			s.say("saga: coordinator A CRASHES right after %s shipped, before it could log the shipment", order)
			s.crashed <- order
		}
	}
	s.say("saga: checkout = (reserve-stock || authorise-payment) -> ship; coordinator A logs every transition")
	return stop, nil
}

// startOrders starts the feeder and the checkout workers. Orders flow on
// their own, but never more than one act ahead, so every act has orders
// flowing through it however slow the machine is.
func (s *shopRun) startOrders(ctx context.Context) {
	n := s.cfg.orders
	s.plans = makePlans(s.cfg)
	s.outcomes = make([]saga.State, n)
	s.acts = []int{n * 15 / 100, n * 35 / 100, n * 50 / 100, n * 65 / 100, n}
	s.allowed.Store(int64(s.acts[1]))
	s.errs = make(chan error, s.cfg.workers)
	wctx, stop := context.WithCancel(ctx)
	s.stopWorkers = stop
	jobs := make(chan int)
	s.workers.Go(func() {
		defer close(jobs)
		for i := range s.plans {
			for int64(i) >= s.allowed.Load() {
				select {
				case <-wctx.Done():
					return
				case <-time.After(time.Millisecond):
				}
			}
			select {
			case jobs <- i:
			case <-wctx.Done():
				return
			}
			if s.cfg.pace > 0 {
				time.Sleep(s.cfg.pace)
			}
		}
	})
	for range s.cfg.workers {
		s.workers.Go(func() {
			for i := range jobs {
				if err := s.order(wctx, i); err != nil {
					s.errs <- err
					stop()
					return
				}
			}
		})
	}
}

// order places order i, checks it out and records its outcome.
func (s *shopRun) order(ctx context.Context, i int) error {
	p := s.plans[i]
	res, err := s.cmds.Dispatch(ctx, PlaceOrder{OrderID: p.id, Customer: p.customer, Amount: p.amount})
	if err != nil {
		return err
	}
	s.placed.Add(1)
	if err := s.customers.set(p.customer, p.id, statusPlaced); err != nil {
		return err
	}
	if i == 0 {
		if err := s.readYourWrite(ctx, p, res.Token); err != nil {
			return err
		}
	}
	card := "ok"
	if p.declined {
		card = "declined"
	}
	input := fmt.Appendf(nil, `{"order":%q,"customer":%q,"amount":%d,"card":%q}`, p.id, p.customer, p.amount, card)
	st, err := s.coords.checkout(ctx, p.id, input)
	var next any
	status := statusCompleted
	switch {
	case err == nil:
		next = CompleteOrder{OrderID: p.id}
	case errors.Is(err, saga.ErrCompensated):
		status, next = statusCompensated, CompensateOrder{OrderID: p.id, Reason: st.Cause}
		if n := s.compensations.Add(1); n <= 2 {
			more := ""
			if n == 2 {
				more = "; further compensations are counted in the summary"
			}
			s.say("saga: %s compensated (%s): stock reservation released%s", p.id, st.Cause, more)
		}
	default:
		return fmt.Errorf("checkout %s: %w", p.id, err)
	}
	s.outcomes[i] = st.State
	if _, err := s.cmds.Dispatch(ctx, next); err != nil {
		return err
	}
	s.finished.Add(1)
	return s.customers.set(p.customer, p.id, status)
}

// readYourWrite asks for the customer's orders without and with the
// token of the write that placed p.
func (s *shopRun) readYourWrite(ctx context.Context, p plan, tok cqrs.Token) error {
	plain, err := cqrs.Ask[[]OrderRow](ctx, s.reads.queries, OrdersOf{Customer: p.customer})
	if err != nil {
		return err
	}
	rows, err := cqrs.AskAfter[[]OrderRow](ctx, s.reads.queries, tok, OrdersOf{Customer: p.customer})
	if err != nil {
		return err
	}
	s.rep.ryw = slices.ContainsFunc(rows, func(r OrderRow) bool { return r.ID == p.id })
	s.say("cqrs: placed %s for %s (token %s); a plain query saw %d orders, the query with the token saw %v",
		p.id, p.customer, tok, len(plain), rows)
	return nil
}

// reached waits until n orders have been placed, or a worker failed.
func (s *shopRun) reached(ctx context.Context, n int) error {
	for s.placed.Load() < int64(n) {
		select {
		case err := <-s.errs:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// waitFor polls cond until it holds, waking early on wake.
func waitFor(ctx context.Context, limit time.Duration, wake <-chan struct{}, cond func() bool) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("not within %v", limit)
		case <-wake:
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}
