package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
)

// Timings of the projector cluster: heartbeats every 25 ms, a peer is
// suspected after 150 ms of silence and dead 25 ms later.
const (
	hbInterval = 25 * time.Millisecond
	hbDeadline = 6 * hbInterval
)

// write is one batch the fence let through to the read models.
type write struct {
	node   string
	token  uint64
	events int
}

// guardedReadSide is the resource the projectors write: the two read
// models behind one fence. It remembers every write it accepted.
type guardedReadSide struct {
	rs    *readSide
	fence election.Fence

	mu       sync.Mutex
	accepted []write
}

// apply applies a batch for node, holding token, through the fence.
func (g *guardedReadSide) apply(ctx context.Context, node string, token uint64, events []eventsource.Event, cp uint64) error {
	return g.fence.Do(token, func() error {
		if err := errors.Join(g.rs.byCustomer.Apply(ctx, events, cp), g.rs.totals.Apply(ctx, events, cp)); err != nil {
			return err
		}
		g.mu.Lock()
		g.accepted = append(g.accepted, write{node: node, token: token, events: len(events)})
		g.mu.Unlock()
		return nil
	})
}

func (g *guardedReadSide) writes() []write {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]write(nil), g.accepted...)
}

// projector is one replica of the projector process: a Bully elector fed
// by a heartbeat monitor, and, while it leads, an eventsource.Projector
// that feeds the read models through the fence with its term's token.
type projector struct {
	id   string
	el   *election.BullyElector
	mon  *heartbeat.Monitor
	stop func()

	ctx context.Context // the process's life: cancelled by stop

	mu    sync.Mutex
	term  *election.Term
	stall chan chan struct{} // armed: the next batch waits here for release
}

// feed is the projection a leading projector runs: checkpoints come from
// the read models, applies go through the fence.
type feed struct {
	p     *projector
	g     *guardedReadSide
	token uint64
}

func (f *feed) Checkpoint(ctx context.Context) (uint64, error) {
	a, _ := f.g.rs.byCustomer.Checkpoint(ctx)
	b, _ := f.g.rs.totals.Checkpoint(ctx)
	return min(a, b), nil
}

func (f *feed) Apply(ctx context.Context, events []eventsource.Event, cp uint64) error {
	f.p.mu.Lock()
	stall := f.p.stall
	f.p.stall = nil
	f.p.mu.Unlock()
	if stall != nil {
		// The process stops here (a long GC pause, a frozen VM), holding
		// a batch it was about to write, and resumes once released. Only
		// stopping the process ends the pause: the term's context is not
		// looked at, as a frozen process would not look at it either.
		release := make(chan struct{})
		select {
		case stall <- release:
		case <-f.p.ctx.Done():
			return f.p.ctx.Err()
		}
		select {
		case <-release:
		case <-f.p.ctx.Done():
			return f.p.ctx.Err()
		}
	}
	return f.g.apply(ctx, f.p.id, f.token, events, cp)
}

// cluster is the three projector replicas on a simulated network.
type cluster struct {
	net     *simnet.Network
	nodes   []*projector
	say     func(format string, a ...any)
	terms   chan *projector // a node was elected
	elected atomic.Int64    // terms granted
}

func startCluster(ctx context.Context, n int, seed uint64, store eventsource.Store, g *guardedReadSide, say func(string, ...any)) (*cluster, error) {
	net, err := simnet.New(simnet.Config{Seed: seed, Default: simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 3 * time.Millisecond}})
	if err != nil {
		return nil, err
	}
	c := &cluster{net: net, say: say, terms: make(chan *projector, 16)}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("projector-%d", i+1)
	}
	for _, id := range ids {
		p, err := c.start(ctx, id, ids, store, g)
		if err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, p)
	}
	return c, nil
}

func (c *cluster) start(ctx context.Context, id string, ids []string, store eventsource.Store, g *guardedReadSide) (*projector, error) {
	var closers []func() error
	fail := func(err error) (*projector, error) {
		for _, cl := range closers {
			_ = cl()
		}
		return nil, err
	}
	listen := func(addr string) (*simtransport.Transport, error) {
		tr, err := simtransport.Listen(c.net, addr)
		if err == nil {
			closers = append(closers, tr.Close)
		}
		return tr, err
	}
	tr, err := listen(id)
	if err != nil {
		return fail(err)
	}
	hb, err := listen(id + "/hb")
	if err != nil {
		return fail(err)
	}
	mt, err := listen(id + "/mon")
	if err != nil {
		return fail(err)
	}
	var peers []election.Peer
	var hbPeers []heartbeat.Peer
	var targets []string
	for _, o := range ids {
		if o != id {
			peers = append(peers, election.Peer{ID: o, Addr: o})
			hbPeers = append(hbPeers, heartbeat.Peer{ID: o})
			targets = append(targets, o+"/mon")
		}
	}
	mon, err := heartbeat.NewMonitor(mt, heartbeat.MonitorConfig{ID: id + "/mon", Interval: hbInterval,
		Detector: heartbeat.DeadlineConfig{Timeout: hbDeadline}, DeadAfter: hbInterval, Peers: hbPeers})
	if err != nil {
		return fail(err)
	}
	node, err := heartbeat.NewNode(hb, heartbeat.NodeConfig{ID: id, Interval: hbInterval, Targets: targets})
	if err != nil {
		return fail(err)
	}
	el, err := election.NewBully(tr, mon, election.BullyConfig{ID: id, Peers: peers,
		AnswerTimeout: 50 * time.Millisecond, AnnounceInterval: 100 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	nctx, cancel := context.WithCancel(ctx)
	p := &projector{id: id, el: el, mon: mon, ctx: nctx}
	var wg sync.WaitGroup
	wg.Go(func() { _ = mon.Run(nctx) })
	wg.Go(func() { _ = node.Run(nctx) })
	wg.Go(func() { _ = el.Run(nctx) })
	wg.Go(func() { c.lead(nctx, p, store, g) })
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			el.Close()
			wg.Wait()
			mon.Close()
			node.Close()
			for _, cl := range closers {
				_ = cl()
			}
		})
	}
	return p, nil
}

// lead campaigns and, while this node leads, feeds the read models.
func (c *cluster) lead(ctx context.Context, p *projector, store eventsource.Store, g *guardedReadSide) {
	for ctx.Err() == nil {
		t, err := p.el.Campaign(ctx)
		if err != nil {
			if errors.Is(err, election.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		p.term = t
		p.mu.Unlock()
		c.elected.Add(1)
		c.say("election: %s leads with fencing token %d", p.id, t.Token())
		select {
		case c.terms <- p:
		default:
		}
		proj, err := eventsource.NewProjector(store, &feed{p: p, g: g, token: t.Token()}, eventsource.ProjectorConfig{BatchSize: 16})
		if err != nil {
			c.say("election: %s: %v", p.id, err)
			return
		}
		err = proj.Run(t.Context())
		var stale *election.StaleTokenError
		if errors.As(err, &stale) {
			// Deposed: a newer leader has written. Stop writing, wait
			// until the elector notices too, and campaign again.
			c.say("fence: REJECTED %s's write with token %d: a leader with token %d has written",
				p.id, stale.Token, stale.Highest)
			select {
			case <-t.Done():
			case <-ctx.Done():
				return
			}
		}
	}
}

// leader returns the node that holds a live term with a token above
// minToken, waiting up to 10 s.
func (c *cluster) leader(ctx context.Context, minToken uint64) (*projector, error) {
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		for _, p := range c.nodes {
			p.mu.Lock()
			t := p.term
			p.mu.Unlock()
			if t != nil && t.Err() == nil && t.Token() > minToken {
				return p, nil
			}
		}
		select {
		case <-c.terms:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, errors.New("no projector leader within 10s")
		}
	}
}

func (p *projector) token() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.term.Token()
}

func (c *cluster) close() {
	for _, p := range c.nodes {
		p.stop()
	}
	c.net.Close()
}
