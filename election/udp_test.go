package election_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/heartbeat"
)

// Timing of the UDP clusters: short, so tests take little real time.
var (
	udpLease = election.LeaseConfig{LeaseDuration: 600 * time.Millisecond, RenewDeadline: 400 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
	udpRaft  = election.RaftConfig{HeartbeatInterval: 25 * time.Millisecond, ElectionTimeout: 250 * time.Millisecond}
	udpBully = election.BullyConfig{AnswerTimeout: 100 * time.Millisecond, AnnounceInterval: 200 * time.Millisecond}
	udpHB    = 50 * time.Millisecond
)

func listenUDP(tb testing.TB) *heartbeat.UDPTransport {
	tb.Helper()
	tr, err := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

// udpCluster is n nodes of one algorithm, each with its own UDP sockets
// on loopback, as separate processes would have.
type udpCluster struct {
	tb     testing.TB
	algo   string
	ids    []string
	addrs  map[string]string // election transport
	mons   map[string]string // heartbeat monitor (Bully)
	states map[string]*election.MemoryTermStore
	trs    map[string]*heartbeat.UDPTransport
	hbs    map[string][2]*heartbeat.UDPTransport
	store  string
	nodes  map[string]*udpNode
	stop   []func()
}

type udpNode struct {
	el   election.Elector
	stop func()
	mu   sync.Mutex
	term *election.Term
}

func newUDPCluster(tb testing.TB, algo string, n int) *udpCluster {
	c := &udpCluster{tb: tb, algo: algo, addrs: map[string]string{}, mons: map[string]string{}, states: map[string]*election.MemoryTermStore{},
		trs: map[string]*heartbeat.UDPTransport{}, hbs: map[string][2]*heartbeat.UDPTransport{}, nodes: map[string]*udpNode{}}
	if algo == "lease" || algo == "sequence" {
		tr := listenUDP(tb)
		srv, err := election.NewStoreServer(tr, election.NewMemoryStore(), nil)
		if err != nil {
			tb.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Run(ctx) }()
		c.store = tr.LocalAddr()
		c.stop = append(c.stop, func() { cancel(); <-done; tr.Close() })
	}
	for i := range n {
		id := fmt.Sprintf("node-%d", i+1)
		c.ids = append(c.ids, id)
		c.states[id] = &election.MemoryTermStore{}
		// Sockets are bound once, so a restarted node keeps its address.
		tr := listenUDP(tb)
		c.trs[id], c.addrs[id] = tr, tr.LocalAddr()
		if algo == "bully" {
			hb, mt := listenUDP(tb), listenUDP(tb)
			c.hbs[id] = [2]*heartbeat.UDPTransport{hb, mt}
			c.mons[id] = mt.LocalAddr()
		}
	}
	for _, id := range c.ids {
		c.start(id)
	}
	return c
}

func (c *udpCluster) peers(self string) []election.Peer {
	var ps []election.Peer
	for _, id := range c.ids {
		if id != self {
			ps = append(ps, election.Peer{ID: id, Addr: c.addrs[id]})
		}
	}
	return ps
}

// start runs node id: elector, heartbeats for Bully, and a campaigner.
func (c *udpCluster) start(id string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var el election.Elector
	var err error
	var closers []func()
	switch c.algo {
	case "lease", "sequence":
		var rs *election.RemoteStore
		rs, err = election.NewRemoteStore(listenUDP(c.tb), c.store, election.RemoteStoreConfig{Retry: 20 * time.Millisecond, Timeout: 300 * time.Millisecond})
		if err != nil {
			break
		}
		closers = append(closers, func() { rs.Close() })
		cfg := udpLease
		cfg.ID = id
		if c.algo == "lease" {
			el, err = election.NewLease(rs, cfg)
		} else {
			el, err = election.NewSequence(rs, cfg)
		}
	case "raft":
		cfg := udpRaft
		cfg.ID, cfg.Peers, cfg.State = id, c.peers(id), c.states[id]
		el, err = election.NewRaft(c.trs[id], cfg)
	case "bully":
		var hpeers []heartbeat.Peer
		var targets []string
		for _, p := range c.peers(id) {
			hpeers = append(hpeers, heartbeat.Peer{ID: p.ID})
			targets = append(targets, c.mons[p.ID])
		}
		var mon *heartbeat.Monitor
		mon, err = heartbeat.NewMonitor(c.hbs[id][1], heartbeat.MonitorConfig{ID: id + "/mon", Interval: udpHB,
			Detector: heartbeat.DeadlineConfig{Timeout: 3 * udpHB}, DeadAfter: udpHB / 2, Peers: hpeers})
		if err != nil {
			break
		}
		var node *heartbeat.Node
		node, err = heartbeat.NewNode(c.hbs[id][0], heartbeat.NodeConfig{ID: id, Interval: udpHB, Targets: targets})
		if err != nil {
			break
		}
		wg.Go(func() { _ = mon.Run(ctx) })
		wg.Go(func() { _ = node.Run(ctx) })
		closers = append(closers, func() { mon.Close(); node.Close() })
		cfg := udpBully
		cfg.ID, cfg.Peers, cfg.State = id, c.peers(id), c.states[id]
		el, err = election.NewBully(c.trs[id], mon, cfg)
	}
	if err != nil {
		c.tb.Fatal(err)
	}
	n := &udpNode{el: el}
	wg.Go(func() { _ = el.Run(ctx) })
	wg.Go(func() {
		for ctx.Err() == nil {
			t, err := el.Campaign(ctx)
			if err != nil {
				continue
			}
			n.mu.Lock()
			n.term = t
			n.mu.Unlock()
			select {
			case <-t.Done():
			case <-ctx.Done():
			}
		}
	})
	n.stop = func() {
		// Sockets and store client go first, so nothing is released or
		// resigned: a crash.
		for _, f := range closers {
			f()
		}
		cancel()
		el.Close()
		wg.Wait()
	}
	c.nodes[id] = n
}

// kill stops node id as a crash would, without resigning.
func (c *udpCluster) kill(id string) {
	c.nodes[id].stop()
	delete(c.nodes, id)
}

func (c *udpCluster) close() {
	for id := range c.nodes {
		c.kill(id)
	}
	for _, tr := range c.trs {
		tr.Close()
	}
	for _, p := range c.hbs {
		p[0].Close()
		p[1].Close()
	}
	for _, f := range c.stop {
		f()
	}
}

// waitLeader waits, in real time, for a node with a live term above
// minToken that every live node reports.
func (c *udpCluster) waitLeader(minToken uint64, within time.Duration) (election.Leader, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var lead election.Leader
		for _, n := range c.nodes {
			n.mu.Lock()
			t := n.term
			n.mu.Unlock()
			if t != nil && t.Err() == nil && t.Token() > minToken {
				lead = t.Leader()
			}
		}
		agreed := lead.ID != ""
		for _, n := range c.nodes {
			if l, _ := n.el.Leader(); l != lead {
				agreed = false
			}
		}
		if agreed {
			return lead, nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return election.Leader{}, fmt.Errorf("no agreed leader with a token above %d within %v", minToken, within)
}

// TestUDPFailover runs every algorithm between nodes on UDP loopback,
// each with its own sockets as separate processes would: a leader is
// elected, killed, and a successor with a greater token takes over and
// is known to all, then the killed node comes back and the cluster
// agrees again.
func TestUDPFailover(t *testing.T) {
	for _, algo := range []string{"lease", "sequence", "raft", "bully"} {
		t.Run(algo, func(t *testing.T) {
			c := newUDPCluster(t, algo, 3)
			defer c.close()
			first, err := c.waitLeader(0, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.kill(first.ID)
			start := time.Now()
			second, err := c.waitLeader(first.Token, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s (token %d) killed; %s (token %d) leads after %v", algo, first.ID, first.Token, second.ID, second.Token, time.Since(start).Round(time.Millisecond))
			if second.ID == first.ID {
				t.Fatalf("the killed node %s still leads", first.ID)
			}
			c.start(first.ID)
			third, err := c.waitLeader(0, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if algo == "bully" && third.ID != "node-3" {
				// Bully: the greatest live ID always ends up leading.
				if _, err := c.waitLeader(second.Token, 10*time.Second); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
