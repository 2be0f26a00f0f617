package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/pubsub"
)

// outage takes the payment provider down until the breaker has opened,
// and a little longer.
func (s *shopRun) outage(ctx context.Context) error {
	s.out.act("payment outage: the ambassador retries, the breaker opens, checkout sagas wait and retry")
	s.provider.outage.Store(true)
	s.say("payments: provider starts failing with 503")
	if err := waitFor(ctx, 20*time.Second, s.breakers.ch, func() bool {
		return slices.Contains(s.breakers.transitions(), circuitbreaker.StateOpen)
	}); err != nil {
		return fmt.Errorf("breaker did not open: %w", err)
	}
	select { // the outage lasts a little longer
	case <-time.After(150 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	s.provider.outage.Store(false)
	s.say("payments: provider is back")
	return nil
}

// reshard adds a fifth shard and migrates to it while orders flow.
func (s *shopRun) reshard(ctx context.Context) error {
	s.out.act("resharding: shard-4 joins while orders keep flowing")
	kv := s.customers.kv
	old := kv.Router().Map()
	next, err := old.AddShards("shard-4")
	if err != nil {
		return err
	}
	for _, k := range s.customers.keys {
		if old.Locate(k) != next.Locate(k) {
			s.rep.keysMoved++
		}
	}
	s.rep.keys = len(s.customers.keys)
	s.rep.idealMoved = float64(s.rep.keys) / float64(len(next.Shards()))
	s.say("shard: %d of %d customer keys move to shard-4 (ideal 1/5 = %.0f)", s.rep.keysMoved, s.rep.keys, s.rep.idealMoved)
	before := s.placed.Load()
	if err := kv.Reshard(ctx, next); err != nil {
		return err
	}
	s.rep.placedDuringReshard = s.placed.Load() - before
	s.rep.balance = s.customers.balance()
	s.say("shard: migration done at epoch %d (%d orders placed meanwhile); %s", next.Epoch(), s.rep.placedDuringReshard, s.rep.balance)
	return nil
}

// crashCoordinator crashes saga coordinator A right after the next
// shipment, and has coordinator B resume what A left.
func (s *shopRun) crashCoordinator(ctx context.Context) error {
	s.out.act("saga coordinator crash: a new coordinator resumes from the log")
	s.crashArmed.Store(true)
	var order string
	select {
	case order = <-s.crashed:
	case err := <-s.errs:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("no saga reached the crash point")
	}
	s.coords.mu.Lock() // wait for every saga on coordinator A to stop
	coordB, storeB, err := s.newCoord()
	if err != nil {
		s.coords.mu.Unlock()
		return err
	}
	resumed, err := coordB.Recover(ctx)
	s.coords.cur, s.coords.store = coordB, storeB
	close(s.coords.replaced)
	s.coords.mu.Unlock()
	if err != nil {
		return err
	}
	s.rep.recovered = len(resumed)
	for _, st := range resumed {
		if st.ID == order {
			s.say("saga: coordinator B resumed %s: %s (ship attempts %d; the shipping barrier answered the retry without shipping twice)",
				st.ID, st.State, st.Steps[2].Attempts)
		}
	}
	s.say("saga: coordinator B resumed %d sagas coordinator A left unfinished", len(resumed))
	return nil
}

// failover freezes the projector leader in the middle of a write and cuts
// it off; a survivor takes over, and the frozen leader's write, when it
// wakes, is refused by the fence.
func (s *shopRun) failover(ctx context.Context) error {
	s.out.act("leader failover: the projector leader freezes mid-write and is cut off")
	cl := s.cluster
	lead, err := cl.leader(ctx, 0)
	if err != nil {
		return err
	}
	oldToken := lead.token()
	stalled := make(chan chan struct{})
	lead.mu.Lock()
	lead.stall = stalled
	lead.mu.Unlock()
	var release chan struct{}
	select {
	case release = <-stalled:
	case err := <-s.errs:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("the leader wrote nothing")
	}
	defer lead.stop() // a frozen leader left behind wakes to its stop
	s.say("election: %s (token %d) freezes holding a batch for the read models; its heartbeats stop", lead.id, oldToken)

	// A survivor's heartbeat monitor narrates what it concludes.
	watcher := cl.nodes[0]
	if watcher == lead {
		watcher = cl.nodes[1]
	}
	hsub := watcher.mon.Subscribe()
	defer hsub.Close()
	hctx, stopWatch := context.WithCancel(ctx)
	var watch sync.WaitGroup
	defer func() { stopWatch(); watch.Wait() }()
	cut := time.Now()
	dead := make(chan struct{})
	watch.Go(func() {
		for {
			t, err := hsub.Next(hctx)
			if err != nil {
				return
			}
			if t.Peer != lead.id {
				continue
			}
			s.say("heartbeat: %s's monitor: %s %s -> %s", watcher.id, t.Peer, t.From, t.To)
			if t.To == heartbeat.Dead {
				s.rep.detectDead = time.Since(cut)
				close(dead)
				return
			}
		}
	})
	for _, addr := range []string{lead.id, lead.id + "/hb", lead.id + "/mon"} {
		cl.net.Crash(addr)
	}
	succ, err := cl.leader(ctx, oldToken)
	if err != nil {
		return err
	}
	s.rep.failover = time.Since(cut)
	select { // the verdict is in, or lost to a full subscription queue
	case <-dead:
	case <-time.After(2 * time.Second):
	}
	stopWatch()
	watch.Wait()
	s.rep.leaders = append(s.rep.leaders, fmt.Sprintf("%s (token %d)", succ.id, succ.token()))

	// The new leader catches the read models up, then the old one wakes.
	if err := waitFor(ctx, 20*time.Second, nil, func() bool { return s.guarded.fence.Highest() > oldToken }); err != nil {
		return fmt.Errorf("the new leader did not write: %w", err)
	}
	s.say("fence: %s wrote with token %d", succ.id, s.guarded.fence.Highest())
	rejected := s.guarded.fence.Stats().Rejected
	close(release)
	if err := waitFor(ctx, 20*time.Second, nil, func() bool { return s.guarded.fence.Stats().Rejected > rejected }); err != nil {
		return fmt.Errorf("the old leader's write was not refused: %w", err)
	}
	lead.stop()
	s.say("election: %s is stopped for good", lead.id)
	return nil
}

// finish waits for the last orders, sends a poison message, and lets the
// read models and the consumer groups settle.
func (s *shopRun) finish(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.workers.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-s.errs:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-s.errs:
		return err
	default:
	}
	s.say("all %d orders finished checkout", s.finished.Load())
	// The breaker closes on the first successful probe after the outage.
	if err := waitFor(ctx, 20*time.Second, nil, func() bool {
		return (&report{breaker: s.breakers.transitions()}).breakerCycle()
	}); err != nil {
		return fmt.Errorf("breaker did not close again: %w", err)
	}

	// A legacy client publishes a malformed event.
	poison := pubsub.NewMessage([]byte(`{"order": "o9999", "amount": `))
	if err := s.events.broker.Publish(ctx, "orders.placed", poison); err != nil {
		return err
	}
	s.say("pubsub: a legacy client publishes a malformed message %s to orders.placed", poison.ID)

	// The read models reach the head of the log; every group handles
	// every event.
	head, err := s.store.Head(ctx)
	if err != nil {
		return err
	}
	s.rep.events = head
	if s.rep.totals, err = cqrs.AskAfter[map[string]int64](ctx, s.reads.queries, cqrs.Token(head), Totals{}); err != nil {
		return err
	}
	if err := s.reads.byCustomer.WaitFor(ctx, cqrs.Token(head)); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, nil, func() bool { return s.events.settled(head) }); err != nil {
		return fmt.Errorf("pubsub did not settle: %w", err)
	}
	stats := s.events.router.Stats()
	if err := s.events.stop(); err != nil {
		return fmt.Errorf("router shutdown: %w", err)
	}
	for _, g := range groups {
		st := stats[g+"-1"] // a group's members share one subscription
		s.rep.delivered += st.Delivered
		s.rep.redelivered += st.Redelivered
		s.rep.deadLettered += st.DeadLettered
	}
	s.say("pubsub: every group handled all %d events; the malformed message was dead-lettered by each group", head)
	return nil
}

// gather fills in the rest of the report from the parts' own state.
func (s *shopRun) gather(ctx context.Context) error {
	r := s.rep
	r.placed = int(s.placed.Load())
	r.outcomes, r.plans = s.outcomes, s.plans
	r.served = tableMap(s.reads.byCustomer.Current())
	var err error
	if r.replayed, r.replayedTotals, err = replay(ctx, s.store); err != nil {
		return err
	}
	r.handled, r.deadLetters, r.paymentBusy = s.events.tally.seen, s.events.tally.deadLetters(), s.events.paymentBusy.Load()
	r.breaker = s.breakers.transitions()
	r.payCalls, r.fastFails = s.payments.calls.Load(), s.payments.fastFails.Load()
	s.provider.mu.Lock()
	r.providerRequests, r.providerUnavailable = s.provider.requests, s.provider.unavailable
	r.authorised, r.declined = s.provider.authorized, s.provider.declined
	s.provider.mu.Unlock()
	r.reserved, r.released = s.stock.reserved.Load(), s.stock.released.Load()
	r.shipped, r.shipRepeats = s.shipping.shipped.Load(), s.shipping.repeated.Load()
	r.writes = s.guarded.writes()
	r.terms = int(s.cluster.elected.Load())
	fst := s.guarded.fence.Stats()
	r.fenceAccepted, r.fenceRejected = fst.Accepted, fst.Rejected
	r.customerRecords = map[string]map[string]string{}
	for _, k := range s.customers.keys {
		v, err := s.customers.kv.Get(k)
		if err != nil {
			r.unreadable = append(r.unreadable, k)
			continue
		}
		r.customerRecords[strings.TrimPrefix(k, "customer/")] = parseOrders(v)
	}
	r.kvFailures = s.customers.failed.Load()
	return nil
}
