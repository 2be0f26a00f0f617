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
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/pubsub"
	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/shard"
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
	declined     bool
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

// customers is the customer store, sharded by customer ID: each key holds
// a customer's orders and their statuses ("o0001=completed,o0007=placed").
type customers struct {
	kv      *shard.KV
	stripes [64]sync.Mutex // serialise read-modify-writes of one customer
	failed  atomic.Int64
}

func (c *customers) key(customer string) string { return "customer/" + customer }

func (c *customers) set(customer, order, status string) error {
	h := fnv.New32a()
	h.Write([]byte(customer))
	mu := &c.stripes[h.Sum32()%uint32(len(c.stripes))]
	mu.Lock()
	defer mu.Unlock()
	v, err := c.kv.Get(c.key(customer))
	if err != nil {
		c.failed.Add(1)
		return fmt.Errorf("customer %s: %w", customer, err)
	}
	orders := parseOrders(v)
	orders[order] = status
	c.kv.Put(c.key(customer), formatOrders(orders))
	return nil
}

func parseOrders(v []byte) map[string]string {
	out := map[string]string{}
	_, list, _ := strings.Cut(string(v), "|")
	for _, kv := range strings.Split(list, ",") {
		if k, s, ok := strings.Cut(kv, "="); ok {
			out[k] = s
		}
	}
	return out
}

func formatOrders(orders map[string]string) []byte {
	ids := make([]string, 0, len(orders))
	for id := range orders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	b.WriteString("profile|")
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id + "=" + orders[id])
	}
	return []byte(b.String())
}

// coordinators hands out the live saga coordinator; a crash swaps it for
// a new one that resumes what the old one left.
type coordinators struct {
	mu       sync.RWMutex
	cur      *saga.Coordinator
	store    *crashable
	replaced chan struct{} // closed once a new coordinator has taken over
}

// checkout runs order's saga to its end, across a coordinator crash.
func (c *coordinators) checkout(ctx context.Context, id string, input []byte) (saga.Status, error) {
	c.mu.RLock()
	st, err := c.cur.Execute(ctx, "checkout", id, input)
	c.mu.RUnlock()
	if !errors.Is(err, errCrashed) {
		return st, err
	}
	// The coordinator died under this saga. Once a new one has taken over
	// it has resumed every saga the log shows unfinished.
	select {
	case <-c.replaced:
	case <-ctx.Done():
		return st, ctx.Err()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, err = c.cur.Status(ctx, id)
	switch {
	case errors.Is(err, saga.ErrNotFound): // it never reached the log
		return c.cur.Execute(ctx, "checkout", id, input)
	case err != nil:
		return st, err
	case st.State == saga.Completed:
		return st, nil
	case st.State == saga.Compensated:
		return st, fmt.Errorf("%w: %s", saga.ErrCompensated, st.Cause)
	}
	return st, fmt.Errorf("saga %s is %s after recovery", id, st.State)
}

// tally records, per consumer group, how often it handled each event
// position.
type tally struct {
	mu   sync.Mutex
	seen map[string]map[uint64]int
	dead int
}

func (t *tally) add(group string, pos uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[group] == nil {
		t.seen[group] = map[uint64]int{}
	}
	t.seen[group][pos]++
}

func (t *tally) distinct(group string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen[group])
}

var groups = []string{"inventory", "payment", "shipping"}

func shop(ctx context.Context, w io.Writer, cfg config) (*report, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out := &printer{w: w, start: time.Now()}
	say := out.say
	rep := &report{cfg: cfg}

	out.act("setup")
	// The write side: event store, order aggregate, command bus.
	store := eventsource.NewMemoryStore()
	reg, err := newRegistry()
	if err != nil {
		return nil, err
	}
	repo, err := eventsource.NewRepository(store, reg, eventsource.RepositoryConfig[*Order]{Type: "order"})
	if err != nil {
		return nil, err
	}
	cmds, err := newCommandBus(repo)
	if err != nil {
		return nil, err
	}
	// The read side, fed only by the leading projector, through a fence.
	rs, err := newReadSide(ctx, store)
	if err != nil {
		return nil, err
	}
	guarded := &guardedReadSide{rs: rs}
	cl, err := startCluster(ctx, 3, cfg.seed, store, guarded, say)
	if err != nil {
		return nil, err
	}
	defer cl.close()
	first, err := cl.leader(ctx, 0)
	if err != nil {
		return nil, err
	}
	rep.leaders = append(rep.leaders, fmt.Sprintf("%s (token %d)", first.id, first.token()))

	// The customer store: 4 shards by customer ID.
	m, err := shard.NewHashMap(shard.HashConfig{}, "shard-0", "shard-1", "shard-2", "shard-3")
	if err != nil {
		return nil, err
	}
	kv, err := shard.NewKV(m)
	if err != nil {
		return nil, err
	}
	custs := &customers{kv: kv}
	keys := make([]string, cfg.customers)
	for i := range keys {
		keys[i] = custs.key(fmt.Sprintf("c%04d", i))
		kv.Put(keys[i], []byte("profile|"))
	}
	say("customer store: %d customers on %d shards (map epoch %d); %s", len(keys), len(m.Shards()), m.Epoch(), balance(kv))

	// Pubsub: the log is forwarded to the broker; three consumer groups
	// and a dead-letter watcher.
	broker, err := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	if err != nil {
		return nil, err
	}
	defer broker.Close()
	router, err := pubsub.NewRouter(broker, pubsub.RouterConfig{ShutdownTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	if err := router.Use(pubsub.Recover(), pubsub.Correlation()); err != nil {
		return nil, err
	}
	tl := &tally{seen: map[string]map[uint64]int{}}
	var paymentBusy atomic.Int64
	participant := func(group string, work func(eventsource.Event, *pubsub.Message) error) pubsub.Handler {
		return func(_ context.Context, msg *pubsub.Message) error {
			ev, err := cqrs.MessageEvent(msg)
			if err != nil {
				return pubsub.Permanent(err) // retrying cannot fix a malformed message
			}
			if err := work(ev, msg); err != nil {
				return err
			}
			tl.add(group, ev.Position)
			return nil
		}
	}
	sub := pubsub.SubscribeConfig{MaxDeliver: 5, Backoff: []time.Duration{2 * time.Millisecond, 10 * time.Millisecond},
		DeadLetterTopic: "dead.orders"}
	routes := []struct {
		name string
		h    pubsub.Handler
		cfg  pubsub.SubscribeConfig
	}{
		{"inventory-1", participant("inventory", func(eventsource.Event, *pubsub.Message) error { return nil }), withGroup(sub, "inventory", 2, 0)},
		{"inventory-2", participant("inventory", func(eventsource.Event, *pubsub.Message) error { return nil }), withGroup(sub, "inventory", 2, 0)},
		{"payment-1", participant("payment", func(ev eventsource.Event, msg *pubsub.Message) error {
			if ev.Position%7 == 0 && msg.Attempt == 1 {
				paymentBusy.Add(1)
				return errors.New("ledger busy") // a transient failure: redelivered
			}
			return nil
		}), withGroup(sub, "payment", 2, 0)},
		{"shipping-1", participant("shipping", func(eventsource.Event, *pubsub.Message) error {
			time.Sleep(2 * time.Millisecond) // the slow participant
			return nil
		}), withGroup(sub, "shipping", 1, 16)},
		{"dead-letters", func(context.Context, *pubsub.Message) error {
			tl.mu.Lock()
			tl.dead++
			tl.mu.Unlock()
			return nil
		}, pubsub.SubscribeConfig{}},
	}
	for _, r := range routes {
		pattern := "orders.>"
		if r.name == "dead-letters" {
			pattern = "dead.>"
		}
		if err := router.Handle(r.name, pattern, r.h, r.cfg); err != nil {
			return nil, err
		}
	}
	rctx, stopRouter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRouter()
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(rctx) }()
	select {
	case <-router.Ready():
	case err := <-routerDone:
		return nil, err
	}
	fctx, stopForward := context.WithCancel(ctx)
	defer stopForward()
	forwardDone := make(chan struct{})
	go func() {
		defer close(forwardDone)
		_, _ = cqrs.Forward(fctx, store, 0, eventsource.Filter{}, broker, func(ev eventsource.Event) string {
			return "orders." + statusOf(ev.Type)
		})
	}()
	defer func() { stopForward(); <-forwardDone }()
	say("pubsub: order events forwarded from the log to orders.*; groups inventory (2 members), payment, shipping (slow); dead letters to dead.orders")

	// Payments: a flaky provider on loopback, called through the ambassador.
	provider, payURL, stopPayments, err := startPayments()
	if err != nil {
		return nil, err
	}
	defer stopPayments()
	breakers := &breakerLog{say: say, ch: make(chan struct{}, 1)}
	payments, err := newPaymentClient(payURL, breakers)
	if err != nil {
		return nil, err
	}
	defer payments.http.CloseIdleConnections()
	say("payments: provider on %s, called through the ambassador client (3 attempts, breaker opens after 5 failures)", strings.TrimPrefix(payURL, "http://"))

	// Checkout: the saga, its services and its coordinator.
	stock := &stockService{held: map[string]bool{}}
	shipping := &shippingService{}
	def, err := checkoutDefinition(stock, payments, shipping)
	if err != nil {
		return nil, err
	}
	sagaLog := saga.NewMemoryStore()
	newCoordinator := func() (*saga.Coordinator, *crashable, error) {
		cs := &crashable{Store: sagaLog}
		c, err := saga.New(cs, []*saga.Definition{def}, saga.Config{})
		return c, cs, err
	}
	coordA, storeA, err := newCoordinator()
	if err != nil {
		return nil, err
	}
	coords := &coordinators{cur: coordA, store: storeA, replaced: make(chan struct{})}
	var crashArmed atomic.Bool
	crashed := make(chan string, 1)
	shipping.onShip = func(order string) {
		if crashArmed.CompareAndSwap(true, false) {
			coords.store.down.Store(true)
			say("saga: coordinator A CRASHES right after %s shipped, before it could log the shipment", order)
			crashed <- order
		}
	}
	say("saga: checkout = (reserve-stock || authorise-payment) -> ship; coordinator A logs every transition")

	// The orders.
	plans := makePlans(cfg)
	outcomes := make([]saga.State, len(plans))
	var placed, finished, compensations atomic.Int64
	jobs := make(chan int)
	errs := make(chan error, cfg.workers+1)
	var workers sync.WaitGroup
	wctx, stopWorkers := context.WithCancel(ctx)
	defer func() { stopWorkers(); workers.Wait() }()
	// The acts play at these order counts. Orders flow on their own, but
	// never more than one act ahead, so every act has orders flowing
	// through it however slow the machine is.
	acts := []int{cfg.orders * 15 / 100, cfg.orders * 35 / 100, cfg.orders * 50 / 100, cfg.orders * 65 / 100, cfg.orders}
	var allowed atomic.Int64
	allowed.Store(int64(acts[1]))
	actDone := func(k int) { allowed.Store(int64(acts[min(k+2, len(acts)-1)])) }
	workers.Go(func() {
		defer close(jobs)
		for i := range plans {
			for int64(i) >= allowed.Load() {
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
			if cfg.pace > 0 {
				time.Sleep(cfg.pace)
			}
		}
	})
	handle := func(i int) error {
		p := plans[i]
		res, err := cmds.Dispatch(wctx, PlaceOrder{OrderID: p.id, Customer: p.customer, Amount: p.amount})
		if err != nil {
			return err
		}
		placed.Add(1)
		if err := custs.set(p.customer, p.id, statusPlaced); err != nil {
			return err
		}
		if i == 0 {
			stale, err := cqrs.Ask[[]OrderRow](wctx, rs.queries, OrdersOf{Customer: p.customer})
			if err != nil {
				return err
			}
			rows, err := cqrs.AskAfter[[]OrderRow](wctx, rs.queries, res.Token, OrdersOf{Customer: p.customer})
			if err != nil {
				return err
			}
			rep.ryw = slices.ContainsFunc(rows, func(r OrderRow) bool { return r.ID == p.id })
			say("cqrs: placed %s for %s (token %s); a plain query saw %d orders, the query with the token saw %v",
				p.id, p.customer, res.Token, len(stale), rows)
		}
		card := "ok"
		if p.declined {
			card = "declined"
		}
		input := fmt.Appendf(nil, `{"order":%q,"customer":%q,"amount":%d,"card":%q}`, p.id, p.customer, p.amount, card)
		st, err := coords.checkout(wctx, p.id, input)
		var next any
		status := statusCompleted
		switch {
		case err == nil:
			next = CompleteOrder{OrderID: p.id}
		case errors.Is(err, saga.ErrCompensated):
			status, next = statusCompensated, CompensateOrder{OrderID: p.id, Reason: st.Cause}
			if n := compensations.Add(1); n <= 2 {
				say("saga: %s compensated (%s): stock reservation released%s", p.id, st.Cause,
					map[bool]string{true: "; further compensations are counted in the summary"}[n == 2])
			}
		default:
			return fmt.Errorf("checkout %s: %w", p.id, err)
		}
		outcomes[i] = st.State
		if _, err := cmds.Dispatch(wctx, next); err != nil {
			return err
		}
		finished.Add(1)
		return custs.set(p.customer, p.id, status)
	}
	for range cfg.workers {
		workers.Go(func() {
			for i := range jobs {
				if err := handle(i); err != nil {
					errs <- err
					stopWorkers()
					return
				}
			}
		})
	}
	// reached waits until n orders have been placed, or a worker failed.
	reached := func(n int) error {
		for placed.Load() < int64(n) {
			select {
			case err := <-errs:
				return err
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
		return nil
	}
	out.act(fmt.Sprintf("orders start flowing: %d orders, one every %v, %d checkout workers", cfg.orders, cfg.pace, cfg.workers))

	// Act 1: the payment provider goes down.
	if err := reached(acts[0]); err != nil {
		return nil, err
	}
	out.act("payment outage: the ambassador retries, the breaker opens, checkout sagas wait and retry")
	provider.outage.Store(true)
	say("payments: provider starts failing with 503")
	if err := waitFor(ctx, 20*time.Second, breakers.ch, func() bool {
		return slices.Contains(breakers.transitions(), circuitbreaker.StateOpen)
	}); err != nil {
		return nil, fmt.Errorf("breaker did not open: %w", err)
	}
	time.Sleep(150 * time.Millisecond) // the outage lasts a little longer
	provider.outage.Store(false)
	say("payments: provider is back")
	actDone(0)

	// Act 2: a fifth shard joins while orders flow.
	if err := reached(acts[1]); err != nil {
		return nil, err
	}
	out.act("resharding: shard-4 joins while orders keep flowing")
	old := kv.Router().Map()
	next, err := old.AddShards("shard-4")
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if old.Locate(k) != next.Locate(k) {
			rep.keysMoved++
		}
	}
	rep.keys = len(keys)
	rep.idealMoved = float64(len(keys)) / float64(len(next.Shards()))
	say("shard: %d of %d customer keys move to shard-4 (ideal 1/5 = %.0f)", rep.keysMoved, len(keys), rep.idealMoved)
	before := placed.Load()
	if err := kv.Reshard(ctx, next); err != nil {
		return nil, err
	}
	rep.placedDuringReshard = placed.Load() - before
	rep.balance = balance(kv)
	say("shard: migration done at epoch %d (%d orders placed meanwhile); %s", next.Epoch(), rep.placedDuringReshard, rep.balance)
	actDone(1)

	// Act 3: the saga coordinator crashes mid-saga.
	if err := reached(acts[2]); err != nil {
		return nil, err
	}
	out.act("saga coordinator crash: a new coordinator resumes from the log")
	crashArmed.Store(true)
	var crashedOrder string
	select {
	case crashedOrder = <-crashed:
	case err := <-errs:
		return nil, err
	case <-time.After(20 * time.Second):
		return nil, errors.New("no saga reached the crash point")
	}
	coords.mu.Lock() // wait for every saga on coordinator A to stop
	coordB, storeB, err := newCoordinator()
	if err != nil {
		coords.mu.Unlock()
		return nil, err
	}
	resumed, err := coordB.Recover(ctx)
	coords.cur, coords.store = coordB, storeB
	close(coords.replaced)
	coords.mu.Unlock()
	if err != nil {
		return nil, err
	}
	rep.recovered = len(resumed)
	for _, st := range resumed {
		if st.ID == crashedOrder {
			say("saga: coordinator B resumed %s: %s (ship attempts %d; the shipping barrier answered the retry without shipping twice)",
				st.ID, st.State, st.Steps[2].Attempts)
		}
	}
	say("saga: coordinator B resumed %d sagas coordinator A left unfinished", len(resumed))
	actDone(2)

	// Act 4: the projector leader freezes and is cut off.
	if err := reached(acts[3]); err != nil {
		return nil, err
	}
	out.act("leader failover: the projector leader freezes mid-write and is cut off")
	lead, err := cl.leader(ctx, 0)
	if err != nil {
		return nil, err
	}
	oldToken := lead.token()
	stalled := make(chan chan struct{})
	lead.mu.Lock()
	lead.stall = stalled
	lead.mu.Unlock()
	var release chan struct{}
	select {
	case release = <-stalled:
	case err := <-errs:
		return nil, err
	case <-time.After(20 * time.Second):
		return nil, errors.New("the leader wrote nothing")
	}
	say("election: %s (token %d) freezes holding a batch for the read models; its heartbeats stop", lead.id, oldToken)
	// A survivor's heartbeat monitor narrates what it concludes.
	var watcher *projector
	for _, p := range cl.nodes {
		if p != lead {
			watcher = p
			break
		}
	}
	hsub := watcher.mon.Subscribe()
	hctx, stopWatch := context.WithCancel(ctx)
	var watch sync.WaitGroup
	cut := time.Now()
	watch.Go(func() {
		for {
			t, err := hsub.Next(hctx)
			if err != nil {
				return
			}
			if t.Peer != lead.id {
				continue
			}
			say("heartbeat: %s's monitor: %s %s -> %s", watcher.id, t.Peer, t.From, t.To)
			if t.To == heartbeat.Dead {
				rep.detectDead = time.Since(cut)
				return
			}
		}
	})
	for _, addr := range []string{lead.id, lead.id + "/hb", lead.id + "/mon"} {
		cl.net.Crash(addr)
	}
	succ, err := cl.leader(ctx, oldToken)
	if err != nil {
		close(release)
		stopWatch()
		watch.Wait()
		return nil, err
	}
	rep.failover = time.Since(cut)
	watch.Wait()
	stopWatch()
	hsub.Close()
	rep.leaders = append(rep.leaders, fmt.Sprintf("%s (token %d)", succ.id, succ.token()))
	for guarded.fence.Highest() <= oldToken { // the new leader catches up the read models
		select {
		case <-ctx.Done():
			close(release)
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	say("fence: %s wrote with token %d", succ.id, guarded.fence.Highest())
	rejected := guarded.fence.Stats().Rejected
	close(release) // the old leader wakes up and writes
	for guarded.fence.Stats().Rejected == rejected {
		time.Sleep(time.Millisecond)
	}
	lead.stop()
	say("election: %s is stopped for good", lead.id)
	actDone(3)

	// The rest of the orders.
	out.act("the remaining orders")
	workersDone := make(chan struct{})
	go func() { workers.Wait(); close(workersDone) }()
	select {
	case <-workersDone:
	case err := <-errs:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	say("all %d orders finished checkout", finished.Load())
	// The breaker closes on the first successful probe after the outage.
	if err := waitFor(ctx, 20*time.Second, nil, func() bool {
		return (&report{breaker: breakers.transitions()}).breakerCycle()
	}); err != nil {
		return nil, fmt.Errorf("breaker did not close again: %w", err)
	}

	// A poison message: a legacy client publishes a malformed event.
	poison := pubsub.NewMessage([]byte(`{"order": "o9999", "amount": `))
	if err := broker.Publish(ctx, "orders.placed", poison); err != nil {
		return nil, err
	}
	say("pubsub: a legacy client publishes a malformed message %s to orders.placed", poison.ID)

	// Let everything settle: read models at the head, every group done.
	head, err := store.Head(ctx)
	if err != nil {
		return nil, err
	}
	totals, err := cqrs.AskAfter[map[string]int64](ctx, rs.queries, cqrs.Token(head), Totals{})
	if err != nil {
		return nil, err
	}
	if _, err := cqrs.AskAfter[[]OrderRow](ctx, rs.queries, cqrs.Token(head), OrdersOf{}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, nil, func() bool {
		for _, g := range groups {
			if tl.distinct(g) < int(head) {
				return false
			}
		}
		tl.mu.Lock()
		defer tl.mu.Unlock()
		return tl.dead >= len(groups)
	}); err != nil {
		return nil, fmt.Errorf("pubsub did not settle: %w", err)
	}
	stats := router.Stats()
	stopForward()
	<-forwardDone
	stopRouter()
	if err := <-routerDone; err != nil {
		return nil, fmt.Errorf("router shutdown: %w", err)
	}
	say("pubsub: every group handled all %d events; the malformed message was dead-lettered by each group", head)

	// Gather the report.
	rep.placed = int(placed.Load())
	rep.outcomes = outcomes
	rep.plans = plans
	rep.events = head
	rep.totals = totals
	rep.served = tableMap(rs.byCustomer.Current())
	if rep.replayed, rep.replayedTotals, err = replay(ctx, store); err != nil {
		return nil, err
	}
	rep.handled = tl.seen
	rep.deadLetters = tl.dead
	for _, g := range groups {
		s := stats[g+"-1"]
		rep.delivered += s.Delivered
		rep.redelivered += s.Redelivered
		rep.deadLettered += s.DeadLettered
	}
	rep.paymentBusy = paymentBusy.Load()
	rep.breaker = breakers.transitions()
	rep.payCalls, rep.fastFails = payments.calls.Load(), payments.fastFails.Load()
	provider.mu.Lock()
	rep.providerRequests, rep.providerUnavailable = provider.requests, provider.unavailable
	rep.authorised, rep.declined = provider.authorized, provider.declined
	provider.mu.Unlock()
	rep.reserved, rep.released = stock.reserved.Load(), stock.released.Load()
	rep.shipped, rep.shipRepeats = shipping.shipped.Load(), shipping.repeated.Load()
	rep.writes = guarded.writes()
	rep.terms = int(cl.elected.Load())
	fst := guarded.fence.Stats()
	rep.fenceAccepted, rep.fenceRejected = fst.Accepted, fst.Rejected
	rep.customerRecords = map[string]map[string]string{}
	for _, k := range keys {
		v, err := kv.Get(k)
		if err != nil {
			rep.unreadable = append(rep.unreadable, k)
			continue
		}
		rep.customerRecords[strings.TrimPrefix(k, "customer/")] = parseOrders(v)
	}
	rep.kvFailures = custs.failed.Load()
	return rep, nil
}

// withGroup returns cfg for a member of group with the given concurrency
// and queue size (0: the default).
func withGroup(cfg pubsub.SubscribeConfig, group string, concurrency, queue int) pubsub.SubscribeConfig {
	cfg.Group, cfg.Concurrency, cfg.QueueSize = group, concurrency, queue
	return cfg
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

// balance describes how the keys are spread over the shards.
func balance(kv *shard.KV) string {
	counts, err := shard.Gather(context.Background(), kv.Router(), 0,
		func(_ context.Context, _ string, st *shard.MemoryStore) (int, error) { return st.Len(), nil })
	if err != nil {
		return "balance: " + err.Error()
	}
	names := make([]string, 0, len(counts))
	total, hi := 0, 0
	for n, c := range counts {
		names = append(names, n)
		total += c
		hi = max(hi, c)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, counts[n])
	}
	return fmt.Sprintf("keys per shard:%s (max/mean %.2f)", b.String(), float64(hi)*float64(len(counts))/float64(total))
}
