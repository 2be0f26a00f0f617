package election_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/heartbeat"
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

// group is three nodes of one algorithm on a simulated network, each
// elector running under the context background (not cancelled by the
// test), so that only Close stops it.
type group struct {
	c     *cluster
	net   *simnet.Network
	store *election.MemoryStore // nil unless the algorithm uses a store
	stops []func() error        // Close the node's elector, wait for Run and return its error, close its transports
}

func newGroup(t *testing.T, a algo) *group {
	net, err := simnet.New(simnet.Config{Seed: 1, Default: simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	g := &group{net: net, c: &cluster{t: t, a: a, net: net, rng: rand.New(rand.NewPCG(1, 7))}}
	c := g.c
	var stopStore func()
	if a.usesStore {
		g.store = election.NewMemoryStore()
		tr, err := simtransport.Listen(net, "store")
		c.must(err)
		srv, err := election.NewStoreServer(tr, g.store, nil)
		c.must(err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Run(ctx) }()
		stopStore = func() { cancel(); <-done; tr.Close() }
	}
	for i := range 3 {
		c.nodes = append(c.nodes, &simNode{idx: i, id: fmt.Sprintf("n%d", i+1), state: &election.MemoryTermStore{}})
	}
	for _, n := range c.nodes {
		tr, err := simtransport.Listen(net, n.id)
		c.must(err)
		n.pause = &pauser{Transport: tr}
		el, cleanup := a.start(c, n)
		n.el = el
		run := make(chan error, 1)
		go func() { run <- el.Run(context.Background()) }()
		g.stops = append(g.stops, func() error {
			el.Close()
			err := <-run
			cleanup()
			tr.Close()
			return err
		})
	}
	t.Cleanup(func() {
		for _, stop := range g.stops {
			if stop != nil {
				_ = stop()
			}
		}
		if stopStore != nil {
			stopStore()
		}
		net.Close()
	})
	return g
}

func observeNoLeader(t *testing.T, a algo) {
	g := newGroup(t, a)
	c, net, stops := g.c, g.net, g.stops
	ctx := context.Background()
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
	_ = stops[2]()
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

// TestCloseLeavesNothingBehind: Close alone (Run's context is never
// cancelled) ends the leader's term with ErrClosed, makes Run and a
// pending Campaign return ErrClosed, releases every lease or entry in the
// store, and stops every goroutine the elector started (the synctest
// bubble fails on any left blocked).
func TestCloseLeavesNothingBehind(t *testing.T) {
	for _, a := range algos {
		t.Run(a.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGroup(t, a)
				ctx := context.Background()
				lead, other := g.c.nodes[2], g.c.nodes[0]
				cctx, cancel := context.WithTimeout(ctx, a.bound)
				defer cancel()
				term, err := lead.el.Campaign(cctx)
				g.c.must(err)
				pending := make(chan error, 1)
				go func() { _, err := other.el.Campaign(ctx); pending <- err }()
				time.Sleep(a.bound) // n1 stands and waits
				synctest.Wait()
				select {
				case err := <-pending:
					t.Fatalf("n1's Campaign returned %v while n3 leads", err)
				default:
				}
				for _, i := range []int{2, 0, 1} { // the leader first
					if err := g.stops[i](); !errors.Is(err, election.ErrClosed) {
						t.Errorf("%s: Run returned %v after Close, want ErrClosed", g.c.nodes[i].id, err)
					}
					g.stops[i] = nil
				}
				if err := term.Err(); !errors.Is(err, election.ErrClosed) {
					t.Errorf("the leader's term ended with %v, want ErrClosed", err)
				}
				if err := <-pending; !errors.Is(err, election.ErrClosed) {
					t.Errorf("the pending Campaign returned %v, want ErrClosed", err)
				}
				if g.store != nil {
					ls, err := g.store.List(ctx, "")
					g.c.must(err)
					if len(ls) != 0 {
						t.Errorf("leases left in the store after Close: %+v", ls)
					}
				}
			})
		})
	}
}

// TestStoppedRunEndsTermWithLeadershipLost: when Run's context ends, the
// term ends with one of the documented causes (ErrLeadershipLost), not a
// bare context.Canceled.
func TestStoppedRunEndsTermWithLeadershipLost(t *testing.T) {
	for name, newEl := range map[string]func(election.LeaseStore) (election.Elector, error){
		"lease": func(s election.LeaseStore) (election.Elector, error) {
			return election.NewLease(s, election.LeaseConfig{ID: "a"})
		},
		"sequence": func(s election.LeaseStore) (election.Elector, error) {
			return election.NewSequence(s, election.LeaseConfig{ID: "a"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				el, err := newEl(election.NewMemoryStore())
				if err != nil {
					t.Fatal(err)
				}
				defer el.Close()
				ctx, cancel := context.WithCancel(context.Background())
				run := make(chan error, 1)
				go func() { run <- el.Run(ctx) }()
				term, err := el.Campaign(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				cancel()
				if err := <-run; !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v, want context.Canceled", err)
				}
				if err := term.Err(); !errors.Is(err, election.ErrLeadershipLost) {
					t.Errorf("the term ended with %v, want ErrLeadershipLost", err)
				}
			})
		})
	}
}

// TestCampaignFailsWhenItsOwnEntryIsLost: a sequence candidate whose own
// entry is deleted behind its back (its session expired in the store)
// sees its Campaign fail with ErrLeaseLost within a RetryPeriod, instead
// of waiting for ever in a queue it is no longer in (etcd's Campaign).
func TestCampaignFailsWhenItsOwnEntryIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := election.NewMemoryStore()
		ctx := context.Background()
		first, err := election.NewSequence(store, election.LeaseConfig{ID: "first"})
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		go first.Run(ctx)
		if _, err := first.Campaign(ctx); err != nil {
			t.Fatal(err)
		}
		c, err := election.NewSequence(store, election.LeaseConfig{ID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go c.Run(ctx)
		res := make(chan error, 1)
		go func() { _, err := c.Campaign(ctx); res <- err }()
		time.Sleep(time.Second)
		synctest.Wait()
		ls, err := store.List(ctx, election.DefaultSequencePrefix)
		if err != nil || len(ls) != 2 {
			t.Fatalf("List = %+v, %v; want the leader's and c's entries", ls, err)
		}
		if err := store.Release(ctx, ls[1].Key, ls[1].Epoch); err != nil { // behind c's back
			t.Fatal(err)
		}
		lost := time.Now()
		select {
		case err := <-res:
			if !errors.Is(err, election.ErrLeaseLost) {
				t.Fatalf("Campaign returned %v, want ErrLeaseLost", err)
			}
			if d := time.Since(lost); d > election.DefaultRetryPeriod {
				t.Fatalf("Campaign failed %v after the entry was lost, want within RetryPeriod %v", d, election.DefaultRetryPeriod)
			}
		case <-time.After(time.Minute):
			t.Fatal("Campaign still waits a minute after its entry was lost")
		}
	})
}

// reentrantHandler is a slog handler that calls back into the elector
// it logs for, as a handler that enriches records with the current
// leader would.
type reentrantHandler struct {
	el    atomic.Pointer[election.LeaseElector]
	calls atomic.Int64
}

func (h *reentrantHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *reentrantHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *reentrantHandler) WithGroup(string) slog.Handler            { return h }
func (h *reentrantHandler) Handle(context.Context, slog.Record) error {
	if el := h.el.Load(); el != nil {
		el.Leader()
		_ = el.Observe().Close()
		h.calls.Add(1)
	}
	return nil
}

// TestLoggerMayCallTheElector: the Logger is user code, so the elector
// never calls it under its own locks; a handler that asks the elector
// who leads must not deadlock it. It runs in real time because a
// deadlock on a mutex would hang a synctest bubble rather than fail it.
func TestLoggerMayCallTheElector(t *testing.T) {
	h := &reentrantHandler{}
	el, err := election.NewLease(election.NewMemoryStore(), election.LeaseConfig{ID: "a", Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	h.el.Store(el)
	go el.Run(context.Background())
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		if _, err := el.Campaign(ctx); err != nil {
			done <- err
			return
		}
		done <- el.Resign(ctx)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Campaign and Resign with a re-entrant Logger did not return in 10 s: the elector deadlocked")
	}
	el.Close()
	if h.calls.Load() == 0 {
		t.Fatal("the handler was never called")
	}
}

func TestBullyConfigValidation(t *testing.T) {
	net, err := simnet.New(simnet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	tr, err := simtransport.Listen(net, "a")
	if err != nil {
		t.Fatal(err)
	}
	mt, err := simtransport.Listen(net, "a/mon")
	if err != nil {
		t.Fatal(err)
	}
	mon, err := heartbeat.NewMonitor(mt, heartbeat.MonitorConfig{ID: "a/mon", Peers: []heartbeat.Peer{{ID: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	peers := []election.Peer{{ID: "b", Addr: "b"}}
	for name, cfg := range map[string]election.BullyConfig{
		"no ID":             {Peers: peers},
		"no peers":          {ID: "a"},
		"self as peer":      {ID: "a", Peers: []election.Peer{{ID: "a", Addr: "a"}}},
		"dup peer":          {ID: "a", Peers: []election.Peer{{ID: "b", Addr: "x"}, {ID: "b", Addr: "y"}}},
		"no addr":           {ID: "a", Peers: []election.Peer{{ID: "b"}}},
		"negative answer":   {ID: "a", Peers: peers, AnswerTimeout: -1},
		"negative announce": {ID: "a", Peers: peers, AnnounceInterval: -1},
		"negative buffer":   {ID: "a", Peers: peers, ObserveBuffer: -1},
	} {
		if _, err := election.NewBully(tr, mon, cfg); !errors.Is(err, election.ErrInvalidConfig) {
			t.Errorf("%s: NewBully = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := election.NewBully(nil, mon, election.BullyConfig{ID: "a", Peers: peers}); !errors.Is(err, election.ErrInvalidConfig) {
		t.Errorf("nil transport: %v, want ErrInvalidConfig", err)
	}
	if _, err := election.NewBully(tr, nil, election.BullyConfig{ID: "a", Peers: peers}); !errors.Is(err, election.ErrInvalidConfig) {
		t.Errorf("nil monitor: %v, want ErrInvalidConfig", err)
	}
	if _, err := election.NewBully(tr, mon, election.BullyConfig{ID: "a", Peers: peers}); err != nil {
		t.Errorf("a valid config: %v", err)
	}
}
