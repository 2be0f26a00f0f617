package election_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
)

var soak = flag.Bool("soak", false, "run the election fault proofs over 5000 seeds per algorithm")

// Timing of the simulated clusters.
var (
	simLease = election.LeaseConfig{LeaseDuration: 1500 * time.Millisecond, RenewDeadline: time.Second, RetryPeriod: 250 * time.Millisecond}
	simRaft  = election.RaftConfig{HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond}
	simBully = election.BullyConfig{AnswerTimeout: 200 * time.Millisecond, AnnounceInterval: 300 * time.Millisecond}
	simHB    = 100 * time.Millisecond
)

// algo describes one algorithm for the simulated cluster.
type algo struct {
	name string
	// ordered: tokens strictly increase in grant order and a term is
	// granted only after every earlier term's context has ended.
	ordered bool
	// bound: a leader is elected, and known to every node, within bound
	// of the faults stopping.
	bound time.Duration
	// pauseFor is a length of pause longer than a lease.
	pauseFor  time.Duration
	usesStore bool
	start     func(c *cluster, n *simNode) (election.Elector, func())
}

var algos = []algo{
	{name: "lease", ordered: true, bound: 2*simLease.LeaseDuration + simLease.RetryPeriod, pauseFor: 2 * simLease.LeaseDuration, usesStore: true,
		start: func(c *cluster, n *simNode) (election.Elector, func()) {
			rs, err := election.NewRemoteStore(n.listen(c, n.id), "store", election.RemoteStoreConfig{Retry: 50 * time.Millisecond, Timeout: time.Second})
			c.must(err)
			cfg := simLease
			cfg.ID = n.id
			el, err := election.NewLease(rs, cfg)
			c.must(err)
			return el, func() { rs.Close() }
		}},
	{name: "sequence", ordered: true, bound: 2*simLease.LeaseDuration + simLease.RetryPeriod, pauseFor: 2 * simLease.LeaseDuration, usesStore: true,
		start: func(c *cluster, n *simNode) (election.Elector, func()) {
			rs, err := election.NewRemoteStore(n.listen(c, n.id), "store", election.RemoteStoreConfig{Retry: 50 * time.Millisecond, Timeout: time.Second})
			c.must(err)
			cfg := simLease
			cfg.ID = n.id
			el, err := election.NewSequence(rs, cfg)
			c.must(err)
			return el, func() { rs.Close() }
		}},
	{name: "raft", ordered: true, bound: 8 * simRaft.ElectionTimeout, pauseFor: 4 * simRaft.ElectionTimeout,
		start: func(c *cluster, n *simNode) (election.Elector, func()) {
			tr := n.listen(c, n.id)
			cfg := simRaft
			cfg.ID, cfg.Peers, cfg.State = n.id, c.peers(n.id, ""), n.state
			el, err := election.NewRaft(tr, cfg)
			c.must(err)
			election.SeedRaftForTest(el, c.seed<<20^uint64(n.idx)<<12^uint64(n.starts))
			return el, func() { tr.Close() }
		}},
	{name: "bully", bound: 3 * time.Second, pauseFor: 2 * time.Second,
		start: func(c *cluster, n *simNode) (election.Elector, func()) {
			tr := n.listen(c, n.id)
			hb := n.listen(c, n.id+"/hb")
			mt := n.listen(c, n.id+"/mon")
			var peers []heartbeat.Peer
			var targets []string
			for _, p := range c.peers(n.id, "") {
				peers = append(peers, heartbeat.Peer{ID: p.ID})
				targets = append(targets, p.ID+"/mon")
			}
			mon, err := heartbeat.NewMonitor(mt, heartbeat.MonitorConfig{ID: n.id + "/mon", Interval: simHB,
				Detector: heartbeat.DeadlineConfig{Timeout: 3 * simHB}, DeadAfter: simHB / 2, Peers: peers})
			c.must(err)
			node, err := heartbeat.NewNode(hb, heartbeat.NodeConfig{ID: n.id, Interval: simHB, Targets: targets})
			c.must(err)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { _ = mon.Run(ctx) })
			wg.Go(func() { _ = node.Run(ctx) })
			cfg := simBully
			cfg.ID, cfg.Peers, cfg.State = n.id, c.peers(n.id, ""), n.state
			el, err := election.NewBully(tr, mon, cfg)
			c.must(err)
			return el, func() {
				cancel()
				wg.Wait()
				mon.Close()
				node.Close()
				tr.Close()
				hb.Close()
				mt.Close()
			}
		}},
}

// pauser stalls a node: while paused, its sends block and what it
// receives is held, as in a stop-the-world pause of the process.
type pauser struct {
	heartbeat.Transport
	mu    sync.Mutex
	until time.Time
}

func (p *pauser) stall() {
	p.mu.Lock()
	u := p.until
	p.mu.Unlock()
	if d := time.Until(u); d > 0 {
		time.Sleep(d)
	}
}

func (p *pauser) Send(ctx context.Context, addr string, b []byte) error {
	p.stall()
	return p.Transport.Send(ctx, addr, b)
}

func (p *pauser) Recv(ctx context.Context) (heartbeat.Packet, error) {
	pk, err := p.Transport.Recv(ctx)
	if err == nil {
		p.stall()
	}
	return pk, err
}

type simNode struct {
	idx    int // position in the cluster
	starts int // how often the node has been started
	id     string
	addrs  []string
	state  *election.MemoryTermStore
	pause  *pauser
	up     bool
	el     election.Elector
	stop   func()
	mu     sync.Mutex
	term   *election.Term
	zombie bool // the next write comes after a pause longer than a lease
}

// listen returns the node's transport at addr; its own ID's address is
// the pausable one.
func (n *simNode) listen(c *cluster, addr string) heartbeat.Transport {
	if !slices.Contains(n.addrs, addr) {
		n.addrs = append(n.addrs, addr)
	}
	if addr == n.id {
		return n.pause
	}
	tr, err := simtransport.Listen(c.net, addr)
	c.must(err)
	return tr
}

type grantRec struct {
	node string
	term *election.Term
}

type cluster struct {
	t      testing.TB
	a      algo
	seed   uint64
	net    *simnet.Network
	rng    *rand.Rand
	nodes  []*simNode
	fence  election.Fence
	store  func()
	mu     sync.Mutex
	grants []grantRec
	high   uint64 // highest token the resource accepted, tracked independently of the fence
	writes struct{ accepted, rejected int }
	errs   []string
	events []string // what the scenario did, for the trace of a failing seed
}

// event records what the scenario or a node did, for a failing seed's
// trace.
func (c *cluster) event(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

func (c *cluster) must(err error) {
	if err != nil {
		c.t.Fatalf("seed %d: %v", c.seed, err)
	}
}

func (c *cluster) violate(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Sprintf("%v: ", time.Now().Format("15:04:05.000"))+fmt.Sprintf(format, args...))
}

func (c *cluster) peers(self, suffix string) []election.Peer {
	var ps []election.Peer
	for _, n := range c.nodes {
		if n.id != self {
			ps = append(ps, election.Peer{ID: n.id, Addr: n.id + suffix})
		}
	}
	return ps
}

// onGrant checks a new term against every earlier one.
func (c *cluster) onGrant(n *simNode, t *election.Term) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.grants {
		if g.term == t {
			return // Campaign returned the term we already lead in
		}
		if g.term.Token() == t.Token() {
			c.errs = append(c.errs, fmt.Sprintf("token %d granted twice: to %s and %s", t.Token(), g.node, n.id))
		}
		if c.a.ordered && g.term.Token() > t.Token() {
			c.errs = append(c.errs, fmt.Sprintf("token %d granted to %s after token %d", t.Token(), n.id, g.term.Token()))
		}
		if c.a.ordered && g.term.Err() == nil {
			c.errs = append(c.errs, fmt.Sprintf("%s granted token %d while %s's term %d is live: two leaders", n.id, t.Token(), g.node, g.term.Token()))
		}
	}
	c.grants = append(c.grants, grantRec{n.id, t})
}

// write is the fenced resource: it accepts a write only through the
// fence, and checks on its own that no accepted write is older than one
// accepted before.
func (c *cluster) write(n *simNode, token uint64) {
	err := c.fence.Do(token, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if token < c.high {
			c.errs = append(c.errs, fmt.Sprintf("resource accepted token %d from %s after token %d: a deposed leader wrote", token, n.id, c.high))
		}
		c.high = token
		c.writes.accepted++
		return nil
	})
	if err != nil {
		if !errors.Is(err, election.ErrStaleToken) {
			c.violate("fence: %v", err)
		}
		c.event("fence refused %s's token %d", n.id, token)
		c.mu.Lock()
		c.writes.rejected++
		c.mu.Unlock()
	}
}

// startNode runs node n: its elector and a worker that campaigns and,
// while it leads, writes to the resource.
func (c *cluster) startNode(n *simNode) {
	c.net.Restart(n.id)
	for _, a := range n.addrs {
		c.net.Restart(a)
	}
	n.starts++
	n.pause = &pauser{}
	tr, err := simtransport.Listen(c.net, n.id)
	c.must(err)
	n.pause.Transport = tr
	el, cleanup := c.a.start(c, n)
	n.el = el
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = el.Run(ctx) })
	wg.Go(func() { c.work(ctx, n) })
	n.up = true
	n.stop = func() {
		cancel()
		el.Close()
		wg.Wait()
		cleanup()
		n.pause.Transport.Close()
		n.mu.Lock()
		n.term = nil
		n.mu.Unlock()
	}
}

func (c *cluster) work(ctx context.Context, n *simNode) {
	for ctx.Err() == nil {
		t, err := n.el.Campaign(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, election.ErrClosed) {
				return
			}
			select { // ErrLeaseLost: stand again
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		c.onGrant(n, t)
		c.event("%s granted token %d", n.id, t.Token())
		n.mu.Lock()
		n.term = t
		n.mu.Unlock()
		c.write(n, t.Token()) // claim the resource at once
		for t.Err() == nil {
			select {
			case <-t.Done():
				continue
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			n.mu.Lock()
			zombie := n.zombie
			n.zombie = false
			n.mu.Unlock()
			if zombie {
				// The process stops between its check of the term and
				// its write, for longer than a lease.
				c.event("%s's worker pauses before writing token %d", n.id, t.Token())
				select {
				case <-time.After(c.a.pauseFor):
				case <-ctx.Done():
					return
				}
			}
			c.write(n, t.Token())
		}
		c.event("%s's term %d ended: %v", n.id, t.Token(), t.Err())
	}
}

func (c *cluster) crash(n *simNode) {
	for _, a := range n.addrs {
		c.net.Crash(a)
	}
	n.stop()
	n.up = false
}

func (c *cluster) partition() {
	var a, b []string
	all := slices.Clone(c.nodes)
	for _, n := range all {
		if c.rng.IntN(2) == 0 {
			a = append(a, n.addrs...)
		} else {
			b = append(b, n.addrs...)
		}
	}
	if c.a.usesStore {
		if c.rng.IntN(2) == 0 {
			a = append(a, "store")
		} else {
			b = append(b, "store")
		}
	}
	c.must(c.net.Partition(a, b))
	c.event("partition %v | %v", a, b)
}

// run is one seeded scenario: nodes elect under random faults for a
// while, then the faults stop and a leader must emerge within the bound.
func runScenario(t testing.TB, a algo, seed uint64) (recovery time.Duration, w struct{ accepted, rejected int }) {
	net, err := simnet.New(simnet.Config{Seed: seed, Trace: true, TraceLimit: 3000,
		Default: simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, a: a, seed: seed, net: net, rng: rand.New(rand.NewPCG(seed, 7))}
	defer net.Close()
	if a.usesStore {
		tr, err := simtransport.Listen(net, "store")
		c.must(err)
		srv, err := election.NewStoreServer(tr, election.NewMemoryStore(), nil)
		c.must(err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Run(ctx) }()
		c.store = func() { cancel(); <-done; tr.Close() }
	}
	size := 3 + c.rng.IntN(4)/3*2 // 3 nodes, or 5 in a quarter of the seeds
	for i := range size {
		c.nodes = append(c.nodes, &simNode{idx: i, id: fmt.Sprintf("n%d", i+1), state: &election.MemoryTermStore{}})
	}
	for _, n := range c.nodes {
		c.startNode(n)
	}
	var healed time.Time
	defer func() {
		for _, n := range c.nodes {
			if n.up {
				n.stop()
			}
		}
		if c.store != nil {
			c.store()
		}
		if len(c.errs) > 0 || t.Failed() {
			var b strings.Builder
			_ = net.WriteTrace(&b)
			tr := b.String()
			if len(tr) > 20000 {
				tr = "...\n" + tr[len(tr)-20000:]
			}
			evs := c.events
			if len(evs) > 200 {
				evs = append([]string{"..."}, evs[len(evs)-200:]...)
			}
			t.Errorf("%s seed %d (%d nodes, faults healed at %v): %d violations:\n  %s\nscenario trace (tail):\n  %s\nnetwork trace (tail; times since the start):\n%s\nreplay: go test -race -run 'TestSafetyUnderFaults/%s$' ./election/ -args -seed %d",
				a.name, seed, size, healed.Format("15:04:05.000"), len(c.errs), strings.Join(c.errs, "\n  "), strings.Join(evs, "\n  "), tr, a.name, seed)
		}
	}()

	// Faults, for 4 s of simulated time.
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(50+c.rng.IntN(350)) * time.Millisecond)
		n := c.nodes[c.rng.IntN(len(c.nodes))]
		switch c.rng.IntN(10) {
		case 0, 1:
			c.partition()
		case 2:
			net.Heal()
			c.event("heal")
		case 3:
			if n.up {
				c.crash(n)
				c.event("%s crashed", n.id)
			}
		case 4:
			if !n.up {
				c.startNode(n)
				c.event("%s restarted", n.id)
			}
		case 5:
			cfg := simnet.LinkConfig{Drop: c.rng.Float64() * 0.3, Duplicate: 0.05, Reorder: 0.1,
				MinDelay: time.Millisecond, MaxDelay: time.Duration(1+c.rng.IntN(100)) * time.Millisecond}
			c.must(net.SetDefault(cfg))
			c.event("links: %+v", cfg)
		case 6:
			if n.up { // the whole node stops, longer than a lease
				d := a.pauseFor/2 + time.Duration(c.rng.Int64N(int64(a.pauseFor)))
				n.pause.mu.Lock()
				n.pause.until = time.Now().Add(d)
				n.pause.mu.Unlock()
				n.mu.Lock()
				n.zombie = true // and so does its worker
				n.mu.Unlock()
				c.event("%s stalls for %v", n.id, d)
			}
		case 7, 8:
			n.mu.Lock()
			n.zombie = true
			n.mu.Unlock()
			c.event("%s's worker will pause", n.id)
		case 9: // n and m lose each other but still reach the rest
			m := c.nodes[(n.idx+1+c.rng.IntN(len(c.nodes)-1))%len(c.nodes)]
			for _, x := range n.addrs {
				for _, y := range m.addrs {
					net.Cut(x, y)
					net.Cut(y, x)
				}
			}
			c.event("%s and %s cut off from each other", n.id, m.id)
		}
	}
	// The faults stop: the network heals, crashed nodes restart, and
	// worker pauses not yet begun are called off (one already begun runs
	// its course; the check below waits for it).
	net.Heal()
	for _, n := range c.nodes {
		n.mu.Lock()
		n.zombie = false
		n.mu.Unlock()
	}
	c.must(net.SetDefault(simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	for _, n := range c.nodes {
		if !n.up {
			c.startNode(n)
		}
	}
	healed = time.Now()
	// Stalled nodes may still be stalled: the faults stop when the last
	// stall ends, and only then may a leader be expected. (Checking
	// earlier can find the old leader still in its term, just before
	// the stalls cost it its majority, and then wait for writes that
	// cannot come until the stalls end.)
	for _, n := range c.nodes {
		n.pause.mu.Lock()
		if n.pause.until.After(healed) {
			healed = n.pause.until
		}
		n.pause.mu.Unlock()
	}
	time.Sleep(time.Until(healed))
	c.event("faults stop")
	for {
		if l, ok := c.agreed(); ok {
			recovery = time.Since(healed)
			// And the leader's writes go through.
			c.mu.Lock()
			before := c.writes.accepted
			c.mu.Unlock()
			after := before
			for wait := time.Duration(0); after == before && wait < a.pauseFor+300*time.Millisecond; wait += 50 * time.Millisecond {
				time.Sleep(50 * time.Millisecond)
				c.mu.Lock()
				after = c.writes.accepted
				c.mu.Unlock()
			}
			if after == before {
				c.violate("leader %s (token %d) made no accepted write after recovery", l.ID, l.Token)
			}
			break
		}
		if time.Since(healed) > a.bound {
			c.violate("no agreed leader within %v of the faults stopping: %s", a.bound, c.views())
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.mu.Lock()
	w = c.writes
	c.mu.Unlock()
	return recovery, w
}

// agreed reports a leader that holds a live term and that every node
// reports.
func (c *cluster) agreed() (election.Leader, bool) {
	var lead election.Leader
	for _, n := range c.nodes {
		n.mu.Lock()
		t := n.term
		n.mu.Unlock()
		if t != nil && t.Err() == nil {
			if lead.ID != "" {
				return election.Leader{}, false
			}
			lead = t.Leader()
		}
	}
	if lead.ID == "" {
		return lead, false
	}
	for _, n := range c.nodes {
		if l, ok := n.el.Leader(); !ok || l != lead {
			return lead, false
		}
	}
	return lead, true
}

func (c *cluster) views() string {
	var b strings.Builder
	for _, n := range c.nodes {
		l, _ := n.el.Leader()
		n.mu.Lock()
		var tok uint64
		if n.term != nil && n.term.Err() == nil {
			tok = n.term.Token()
		}
		n.mu.Unlock()
		fmt.Fprintf(&b, "%s sees %q/%d (own live term %d); ", n.id, l.ID, l.Token, tok)
	}
	return b.String()
}
