package heartbeat_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
	"github.com/stretchr/testify/require"
)

// cluster is a simulated network with monitors and nodes, for use inside
// a synctest bubble. stop tears everything down, leaving no goroutine.
type cluster struct {
	t     testing.TB
	ctx   context.Context
	net   *simnet.Network
	mons  map[string]*monHandle
	nodes map[string]*nodeHandle
}

type monHandle struct {
	m    *heartbeat.Monitor
	tr   *simtransport.Transport
	rec  *recorder
	stop func()
}

type nodeHandle struct {
	cfg  heartbeat.NodeConfig
	n    *heartbeat.Node
	tr   *simtransport.Transport
	stop context.CancelFunc
	done chan struct{}
}

func newCluster(t testing.TB, seed uint64, link simnet.LinkConfig) *cluster {
	t.Helper()
	net, err := simnet.New(simnet.Config{Seed: seed, Default: link, Trace: true, TraceLimit: 4000})
	require.NoError(t, err)
	return &cluster{t: t, ctx: context.Background(), net: net, mons: map[string]*monHandle{}, nodes: map[string]*nodeHandle{}}
}

// monitor starts a monitor at addr.
func (c *cluster) monitor(addr string, cfg heartbeat.MonitorConfig) *monHandle {
	c.t.Helper()
	tr, err := simtransport.Listen(c.net, addr)
	require.NoError(c.t, err)
	if cfg.ID == "" {
		cfg.ID = addr
	}
	m, err := heartbeat.NewMonitor(tr, cfg)
	require.NoError(c.t, err)
	h := &monHandle{m: m, tr: tr, rec: record(m.Subscribe())}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	h.stop = func() { cancel(); <-done; _ = m.Close(); h.rec.wait(); _ = tr.Close() }
	c.mons[addr] = h
	return h
}

// node starts (or restarts) a node at addr.
func (c *cluster) node(addr string, cfg heartbeat.NodeConfig) *nodeHandle {
	c.t.Helper()
	if old := c.nodes[addr]; old != nil {
		old.kill()
	}
	tr, err := simtransport.Listen(c.net, addr)
	require.NoError(c.t, err)
	if cfg.ID == "" {
		cfg.ID = addr
	}
	n, err := heartbeat.NewNode(tr, cfg)
	require.NoError(c.t, err)
	ctx, cancel := context.WithCancel(c.ctx)
	h := &nodeHandle{cfg: cfg, n: n, tr: tr, stop: cancel, done: make(chan struct{})}
	go func() { defer close(h.done); _ = n.Run(ctx) }()
	c.nodes[addr] = h
	return h
}

// startNodeOn starts a node on an existing simnet node, sending through
// wrap (which must embed a transport over nd, or be nil).
func (c *cluster) startNodeOn(nd *simnet.Node, wrap *stallTransport, cfg heartbeat.NodeConfig) *nodeHandle {
	c.t.Helper()
	tr := simtransport.New(nd)
	var use heartbeat.Transport = tr
	if wrap != nil {
		wrap.Transport = tr
		use = wrap
	}
	n, err := heartbeat.NewNode(use, cfg)
	require.NoError(c.t, err)
	ctx, cancel := context.WithCancel(c.ctx)
	h := &nodeHandle{cfg: cfg, n: n, tr: tr, stop: cancel, done: make(chan struct{})}
	go func() { defer close(h.done); _ = n.Run(ctx) }()
	c.nodes[cfg.ID] = h
	return h
}

// kill stops the node's process: it sends nothing more.
func (h *nodeHandle) kill() {
	if h.stop == nil {
		return
	}
	h.stop()
	<-h.done
	_ = h.n.Close()
	_ = h.tr.Close()
	h.stop = nil
}

func (c *cluster) stop() {
	for _, n := range c.nodes {
		n.kill()
	}
	for _, m := range c.mons {
		m.stop()
	}
	_ = c.net.Close()
}

// trace returns the network trace, for failure messages.
func (c *cluster) trace() string {
	var b strings.Builder
	_ = c.net.WriteTrace(&b)
	return b.String()
}

// recorder drains a subscription into a slice.
type recorder struct {
	mu   sync.Mutex
	ts   []heartbeat.Transition
	done chan struct{}
}

func record(s *heartbeat.Subscription) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			t, err := s.Next(context.Background())
			if err != nil {
				return
			}
			r.mu.Lock()
			r.ts = append(r.ts, t)
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) wait() { <-r.done }

func (r *recorder) all() []heartbeat.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]heartbeat.Transition(nil), r.ts...)
}

// of returns the transitions of one peer.
func (r *recorder) of(peer string) []heartbeat.Transition {
	var out []heartbeat.Transition
	for _, t := range r.all() {
		if t.Peer == peer {
			out = append(out, t)
		}
	}
	return out
}

// firstTo returns the first transition of peer to state at or after t0.
func (r *recorder) firstTo(peer string, to heartbeat.State, t0 time.Time) (heartbeat.Transition, bool) {
	for _, t := range r.of(peer) {
		if t.To == to && !t.At.Before(t0) {
			return t, true
		}
	}
	return heartbeat.Transition{}, false
}

func describe(ts []heartbeat.Transition, t0 time.Time) string {
	var b strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&b, "  #%d %8v %s %v->%v inc=%d level=%.2f agreed=%v\n", t.Seq, t.At.Sub(t0).Round(time.Millisecond), t.Peer, t.From, t.To, t.Incarnation, t.Level, t.Agreed)
	}
	return b.String()
}

// checkTransitions asserts what holds of every transition stream: Seq
// counts from 1 without gaps, each transition of a peer starts where its
// previous one ended, and no transition is a no-op.
func checkTransitions(t testing.TB, ts []heartbeat.Transition) {
	t.Helper()
	last := map[string]heartbeat.State{}
	for i, tr := range ts {
		require.Equal(t, uint64(i+1), tr.Seq, "transition sequence has a gap or repeat at %d", i)
		require.Equal(t, last[tr.Peer], tr.From, "transition %d of %s does not start where the previous ended", tr.Seq, tr.Peer)
		require.NotEqual(t, tr.From, tr.To, "no-op transition %d", tr.Seq)
		last[tr.Peer] = tr.To
	}
}

func simTransport(nd *simnet.Node) heartbeat.Transport { return simtransport.New(nd) }

// ofTo returns the transitions of peer to state.
func (r *recorder) ofTo(peer string, to heartbeat.State) []heartbeat.Transition {
	var out []heartbeat.Transition
	for _, t := range r.of(peer) {
		if t.To == to {
			out = append(out, t)
		}
	}
	return out
}
