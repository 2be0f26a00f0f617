package election_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
)

// TestObserveReportsNoLeader: when the leader crashes and nobody else
// campaigns, every other node's Observation reports "no leader" (an Event
// with an empty Leader.ID) within the algorithm's bound, and Leader
// returns false. An observer is never left believing in a dead leader,
// as etcd's Observe leaves it.
func TestObserveReportsNoLeader(t *testing.T) {
	for _, a := range algos {
		t.Run(a.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { observeNoLeader(t, a) })
		})
	}
}

func observeNoLeader(t *testing.T, a algo) {
	net, err := simnet.New(simnet.Config{Seed: 1, Default: simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	c := &cluster{t: t, a: a, net: net, rng: rand.New(rand.NewPCG(1, 7))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if a.usesStore {
		tr, err := simtransport.Listen(net, "store")
		c.must(err)
		srv, err := election.NewStoreServer(tr, election.NewMemoryStore(), nil)
		c.must(err)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Run(ctx) }()
		defer func() { cancel(); <-done; tr.Close() }()
	}
	for i := range 3 {
		c.nodes = append(c.nodes, &simNode{idx: i, id: fmt.Sprintf("n%d", i+1), state: &election.MemoryTermStore{}})
	}
	stops := make([]func(), len(c.nodes))
	for i, n := range c.nodes {
		tr, err := simtransport.Listen(net, n.id)
		c.must(err)
		n.pause = &pauser{Transport: tr}
		el, cleanup := a.start(c, n)
		n.el = el
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = el.Run(rctx) }()
		stops[i] = func() { rcancel(); el.Close(); <-done; cleanup(); tr.Close() }
	}
	defer func() {
		for _, stop := range stops {
			if stop != nil {
				stop()
			}
		}
	}()
	obs := []*election.Observation{c.nodes[0].el.Observe(), c.nodes[1].el.Observe()}

	// n3, the greatest ID (Bully's choice), is the only candidate.
	lead := c.nodes[2]
	cctx, ccancel := context.WithTimeout(ctx, a.bound)
	term, err := lead.el.Campaign(cctx)
	ccancel()
	c.must(err)
	for i, o := range obs {
		wctx, wcancel := context.WithTimeout(ctx, a.bound)
		for {
			ev, err := o.Next(wctx)
			if err != nil {
				t.Fatalf("%s never observed %s lead with token %d: %v", c.nodes[i].id, lead.id, term.Token(), err)
			}
			if ev.Leader.ID == lead.id && ev.Leader.Token == term.Token() {
				break
			}
		}
		wcancel()
	}

	// The leader crashes: the network loses it, then its process stops.
	for _, addr := range lead.addrs {
		net.Crash(addr)
	}
	net.Crash(lead.id)
	crashed := time.Now()
	stops[2]()
	stops[2] = nil

	for i, o := range obs {
		wctx, wcancel := context.WithTimeout(ctx, a.bound)
		for {
			ev, err := o.Next(wctx)
			if err != nil {
				l, _ := c.nodes[i].el.Leader()
				t.Fatalf("%s did not report \"no leader\" within %v of the crash; it still sees %+v: %v", c.nodes[i].id, a.bound, l, err)
			}
			if ev.Leader.ID == "" {
				t.Logf("%s: no leader %v after the crash", c.nodes[i].id, time.Since(crashed))
				break
			}
		}
		wcancel()
		if l, ok := c.nodes[i].el.Leader(); ok {
			t.Errorf("%s reported no leader but Leader returns %+v", c.nodes[i].id, l)
		}
	}
}
