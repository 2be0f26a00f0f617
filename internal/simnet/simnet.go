package simnet

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Errors returned by the network.
var (
	// ErrClosed is returned by operations on a closed Network or Node.
	ErrClosed = errors.New("simnet: closed")
	// ErrAddrInUse is returned by [Network.Node] when the address is taken.
	ErrAddrInUse = errors.New("simnet: address in use")
	// ErrInvalidAddr is returned for an empty address.
	ErrInvalidAddr = errors.New("simnet: invalid address")
	// ErrInvalidConfig is wrapped by errors describing a bad [Config] or
	// [LinkConfig].
	ErrInvalidConfig = errors.New("simnet: invalid config")
)

// DefaultInboxSize is the inbox capacity used when [Config.InboxSize] is 0.
const DefaultInboxSize = 1024

// DefaultTraceLimit is the number of trace events kept when
// [Config.TraceLimit] is 0.
const DefaultTraceLimit = 10_000

// LinkConfig describes how one directed link (or, as the default, every
// link) treats packets. The zero value is a perfect link: no loss, no
// duplication, no delay, FIFO.
type LinkConfig struct {
	// Drop is the probability, in [0, 1], that a packet is lost.
	Drop float64
	// Duplicate is the probability, in [0, 1], that a delivered packet is
	// delivered a second time (with its own delay).
	Duplicate float64
	// Reorder is the probability, in [0, 1], that a packet ignores the
	// link's FIFO order and is delivered purely by its own delay, possibly
	// overtaking earlier packets.
	Reorder float64
	// MinDelay and MaxDelay bound the delivery delay, drawn uniformly from
	// [MinDelay, MaxDelay]. Both zero means immediate delivery.
	MinDelay, MaxDelay time.Duration
}

func (c LinkConfig) validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"Drop", c.Drop}, {"Duplicate", c.Duplicate}, {"Reorder", c.Reorder}} {
		if !(p.v >= 0 && p.v <= 1) { // also rejects NaN
			return fmt.Errorf("%w: %s = %v, want a probability in [0, 1]", ErrInvalidConfig, p.name, p.v)
		}
	}
	if c.MinDelay < 0 || c.MaxDelay < 0 {
		return fmt.Errorf("%w: negative delay [%v, %v]", ErrInvalidConfig, c.MinDelay, c.MaxDelay)
	}
	if c.MinDelay > c.MaxDelay {
		return fmt.Errorf("%w: MinDelay %v > MaxDelay %v", ErrInvalidConfig, c.MinDelay, c.MaxDelay)
	}
	return nil
}

// Config configures a Network. The zero value is valid: seed 0, perfect
// links, inboxes of [DefaultInboxSize], no trace.
type Config struct {
	// Seed seeds every random choice the network makes.
	Seed uint64
	// Default applies to every link without a [Network.SetLink] override.
	Default LinkConfig
	// InboxSize is the capacity of each node's inbox; a packet arriving at
	// a full inbox is dropped and counted in [Stats].DroppedOverflow.
	// 0 means [DefaultInboxSize].
	InboxSize int
	// Trace records every event for [Network.Trace] and
	// [Network.WriteTrace].
	Trace bool
	// TraceLimit bounds the trace to its most recent events.
	// 0 means [DefaultTraceLimit].
	TraceLimit int
}

// Packet is one delivered message. Payload is the receiver's own copy.
type Packet struct {
	From, To string // sender and receiver addresses
	Payload  []byte // the receiver's own copy of the bytes sent
	// Seq numbers sends across the whole network, from 1. A duplicate
	// carries the Seq of its original.
	Seq uint64
	// SentAt is when Send was called.
	SentAt time.Time
}

// Stats counts what the network did. Dropped is the sum of the Dropped*
// fields.
type Stats struct {
	Sent       uint64 // calls to Send that were accepted
	Delivered  uint64 // packets placed in an inbox, duplicates included
	Duplicated uint64 // extra copies created
	Dropped    uint64 // packets lost, for any reason

	DroppedRandom    uint64 // by LinkConfig.Drop
	DroppedPartition uint64 // by a partition or a one-way cut
	DroppedCrash     uint64 // to or from a crashed node, or discarded from its inbox
	DroppedOverflow  uint64 // the receiver's inbox was full
	DroppedNoRoute   uint64 // no node has the destination address
}

type linkKey struct{ from, to string }

type delivery struct {
	due  time.Time
	seq  uint64 // order of scheduling; breaks ties between equal due times
	fifo bool   // counted in Network.inFlight
	pkt  Packet
}

type deliveryHeap []*delivery

func (h deliveryHeap) Len() int { return len(h) }
func (h deliveryHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h deliveryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deliveryHeap) Push(x any)   { *h = append(*h, x.(*delivery)) }
func (h *deliveryHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}

// Network is a simulated network. Create one with [New]; it is safe for
// concurrent use.
type Network struct {
	mu sync.Mutex

	rng        *rand.Rand
	inboxSize  int
	traceOn    bool
	traceLimit int
	start      time.Time

	def     LinkConfig
	links   map[linkKey]LinkConfig
	nodes   map[string]*Node
	groups  map[string]int // partition group per address; nil when healed
	cuts    map[linkKey]struct{}
	crashed map[string]bool

	queue    deliveryHeap
	inFlight map[linkKey]int       // scheduled FIFO deliveries per link
	lastDue  map[linkKey]time.Time // due time of the last FIFO delivery per link
	timer    *time.Timer
	timerAt  time.Time
	schedSeq uint64
	sendSeq  uint64

	stats     Stats
	trace     []Event
	traceHead int // index of the oldest event once the trace is full
	closed    bool
}

// New returns a Network, or an error wrapping [ErrInvalidConfig].
func New(cfg Config) (*Network, error) {
	if err := cfg.Default.validate(); err != nil {
		return nil, err
	}
	if cfg.InboxSize < 0 || cfg.TraceLimit < 0 {
		return nil, fmt.Errorf("%w: negative InboxSize or TraceLimit", ErrInvalidConfig)
	}
	if cfg.InboxSize == 0 {
		cfg.InboxSize = DefaultInboxSize
	}
	if cfg.TraceLimit == 0 {
		cfg.TraceLimit = DefaultTraceLimit
	}
	return &Network{
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		inboxSize:  cfg.InboxSize,
		traceOn:    cfg.Trace,
		traceLimit: cfg.TraceLimit,
		start:      time.Now(),
		def:        cfg.Default,
		links:      make(map[linkKey]LinkConfig),
		nodes:      make(map[string]*Node),
		cuts:       make(map[linkKey]struct{}),
		crashed:    make(map[string]bool),
		inFlight:   make(map[linkKey]int),
		lastDue:    make(map[linkKey]time.Time),
	}, nil
}

// Node registers a node at addr and returns it. It returns
// [ErrInvalidAddr] for an empty address, [ErrAddrInUse] if another open
// node has it, and [ErrClosed] after Close.
func (n *Network) Node(addr string) (*Node, error) {
	if addr == "" {
		return nil, ErrInvalidAddr
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if _, ok := n.nodes[addr]; ok {
		return nil, fmt.Errorf("%w: %q", ErrAddrInUse, addr)
	}
	nd := &Node{net: n, addr: addr, inbox: make(chan Packet, n.inboxSize)}
	n.nodes[addr] = nd
	return nd, nil
}

// Nodes returns the addresses of the open nodes, in no particular order.
func (n *Network) Nodes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	addrs := make([]string, 0, len(n.nodes))
	for a := range n.nodes {
		addrs = append(addrs, a)
	}
	return addrs
}

// SetDefault replaces the configuration of every link that has no
// per-link override. It affects packets sent afterwards.
func (n *Network) SetDefault(cfg LinkConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.def = cfg
	n.record(Event{Kind: EventConfig, Detail: fmt.Sprintf("default %+v", cfg)})
	return nil
}

// SetLink overrides the configuration of the directed link from -> to.
func (n *Network) SetLink(from, to string, cfg LinkConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.links[linkKey{from, to}] = cfg
	n.record(Event{Kind: EventConfig, From: from, To: to, Detail: fmt.Sprintf("link %+v", cfg)})
	return nil
}

// ClearLink removes the override of the directed link from -> to, so it
// follows the default again.
func (n *Network) ClearLink(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.links, linkKey{from, to})
}

// Partition splits the network: nodes in different groups cannot reach
// each other until [Network.Heal]. Nodes named in no group, including
// nodes registered later, form one further group together. A new call
// replaces the previous partition. An address named in two groups is an
// error wrapping [ErrInvalidConfig].
func (n *Network) Partition(groups ...[]string) error {
	g := make(map[string]int)
	for i, grp := range groups {
		for _, a := range grp {
			if j, dup := g[a]; dup && j != i {
				return fmt.Errorf("%w: %q is in partition groups %d and %d", ErrInvalidConfig, a, j, i)
			}
			g[a] = i
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = g
	n.record(Event{Kind: EventPartition, Detail: fmt.Sprint(groups)})
	return nil
}

// Cut severs the directed link from -> to; packets the other way still
// flow. [Network.Uncut] or [Network.Heal] restores it.
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts[linkKey{from, to}] = struct{}{}
	n.record(Event{Kind: EventCut, From: from, To: to})
}

// Uncut restores the directed link from -> to.
func (n *Network) Uncut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cuts, linkKey{from, to})
	n.record(Event{Kind: EventHeal, From: from, To: to})
}

// Heal removes every partition and every one-way cut. Link configurations
// and crashes stay as they are.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = nil
	clear(n.cuts)
	n.record(Event{Kind: EventHeal})
}

// Crash isolates addr: packets to and from it are dropped, packets in
// flight to or from it are discarded, and its inbox is emptied. The Node
// value stays registered; [Network.Restart] reconnects it. Crashing the
// network does not stop the code driving the node: the test does that.
func (n *Network) Crash(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.crashed[addr] = true
	n.record(Event{Kind: EventCrash, From: addr})
	kept := n.queue[:0]
	for _, d := range n.queue {
		if d.pkt.From == addr || d.pkt.To == addr {
			n.dropLocked(d.pkt, &n.stats.DroppedCrash, "crash")
			n.unscheduleLocked(d)
			continue
		}
		kept = append(kept, d)
	}
	clear(n.queue[len(kept):])
	n.queue = kept
	heap.Init(&n.queue)
	if nd := n.nodes[addr]; nd != nil {
	drain:
		for {
			select {
			case p := <-nd.inbox:
				n.dropLocked(p, &n.stats.DroppedCrash, "crash: inbox discarded")
			default:
				break drain
			}
		}
	}
}

// Restart reconnects a crashed node. Nothing sent while it was down is
// delivered.
func (n *Network) Restart(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.crashed, addr)
	n.record(Event{Kind: EventRestart, From: addr})
}

// Crashed reports whether addr is crashed.
func (n *Network) Crashed(addr string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.crashed[addr]
}

// Stats returns a snapshot of the counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Close stops the network: pending deliveries are discarded, every inbox is
// closed, and later operations return [ErrClosed]. It is idempotent and
// leaves no goroutine running.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.timer != nil {
		n.timer.Stop()
	}
	n.queue = nil
	for _, nd := range n.nodes {
		nd.closed = true
		close(nd.inbox)
	}
	clear(n.nodes)
	return nil
}

func (n *Network) linkConfig(k linkKey) LinkConfig {
	if c, ok := n.links[k]; ok {
		return c
	}
	return n.def
}

// blockedLocked reports why a packet on k cannot pass now, or "".
func (n *Network) blockedLocked(k linkKey) (reason string, counter *uint64) {
	switch {
	case n.crashed[k.from] || n.crashed[k.to]:
		return "crash", &n.stats.DroppedCrash
	case n.cutLocked(k):
		return "partition", &n.stats.DroppedPartition
	}
	return "", nil
}

func (n *Network) cutLocked(k linkKey) bool {
	if _, ok := n.cuts[k]; ok {
		return true
	}
	if n.groups == nil {
		return false
	}
	gf, ok := n.groups[k.from]
	if !ok {
		gf = -1
	}
	gt, ok := n.groups[k.to]
	if !ok {
		gt = -1
	}
	return gf != gt
}

func (n *Network) send(from, to string, payload []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	n.sendSeq++
	n.stats.Sent++
	pkt := Packet{From: from, To: to, Seq: n.sendSeq, SentAt: time.Now(), Payload: payload}
	n.record(Event{Kind: EventSend, From: from, To: to, Seq: pkt.Seq, Size: len(payload)})

	k := linkKey{from, to}
	if reason, c := n.blockedLocked(k); reason != "" {
		n.dropLocked(pkt, c, reason)
		return nil
	}
	cfg := n.linkConfig(k)
	if cfg.Drop > 0 && n.rng.Float64() < cfg.Drop {
		n.dropLocked(pkt, &n.stats.DroppedRandom, "random")
		return nil
	}
	copies := 1
	if cfg.Duplicate > 0 && n.rng.Float64() < cfg.Duplicate {
		copies = 2
		n.stats.Duplicated++
		n.record(Event{Kind: EventDuplicate, From: from, To: to, Seq: pkt.Seq, Size: len(payload)})
	}
	now := time.Now()
	for i := range copies {
		p := pkt
		if i > 0 {
			p.Payload = append([]byte(nil), payload...)
		}
		delay := cfg.MinDelay
		if span := cfg.MaxDelay - cfg.MinDelay; span > 0 {
			delay += time.Duration(n.rng.Int64N(int64(span) + 1))
		}
		reorder := cfg.Reorder > 0 && n.rng.Float64() < cfg.Reorder
		n.scheduleLocked(k, p, now.Add(delay), reorder, now)
	}
	return nil
}

func (n *Network) scheduleLocked(k linkKey, p Packet, due time.Time, reorder bool, now time.Time) {
	if !reorder {
		if last, ok := n.lastDue[k]; ok && n.inFlight[k] > 0 && last.After(due) {
			due = last
		}
	}
	if !due.After(now) && (reorder || n.inFlight[k] == 0) {
		n.deliverLocked(p)
		return
	}
	n.schedSeq++
	d := &delivery{due: due, seq: n.schedSeq, fifo: !reorder, pkt: p}
	if d.fifo {
		n.inFlight[k]++
		n.lastDue[k] = due
	}
	heap.Push(&n.queue, d)
	n.armLocked()
}

func (n *Network) unscheduleLocked(d *delivery) {
	if !d.fifo {
		return
	}
	k := linkKey{d.pkt.From, d.pkt.To}
	if n.inFlight[k]--; n.inFlight[k] <= 0 {
		delete(n.inFlight, k)
		delete(n.lastDue, k)
	}
}

func (n *Network) armLocked() {
	if len(n.queue) == 0 || n.closed {
		return
	}
	at := n.queue[0].due
	if n.timer != nil && n.timerAt.Equal(at) {
		return
	}
	n.timerAt = at
	d := time.Until(at)
	if n.timer == nil {
		n.timer = time.AfterFunc(d, n.fire)
		return
	}
	n.timer.Reset(d)
}

func (n *Network) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.timerAt = time.Time{}
	now := time.Now()
	for len(n.queue) > 0 && !n.queue[0].due.After(now) {
		d := heap.Pop(&n.queue).(*delivery)
		n.unscheduleLocked(d)
		if reason, c := n.blockedLocked(linkKey{d.pkt.From, d.pkt.To}); reason != "" {
			n.dropLocked(d.pkt, c, reason)
			continue
		}
		n.deliverLocked(d.pkt)
	}
	n.armLocked()
}

func (n *Network) deliverLocked(p Packet) {
	nd := n.nodes[p.To]
	if nd == nil {
		n.dropLocked(p, &n.stats.DroppedNoRoute, "no route")
		return
	}
	select {
	case nd.inbox <- p:
		n.stats.Delivered++
		n.record(Event{Kind: EventDeliver, From: p.From, To: p.To, Seq: p.Seq, Size: len(p.Payload)})
	default:
		n.dropLocked(p, &n.stats.DroppedOverflow, "inbox full")
	}
}

func (n *Network) dropLocked(p Packet, counter *uint64, reason string) {
	*counter++
	n.stats.Dropped++
	n.record(Event{Kind: EventDrop, From: p.From, To: p.To, Seq: p.Seq, Size: len(p.Payload), Detail: reason})
}

// Node is one endpoint of a Network. It is safe for concurrent use.
type Node struct {
	net    *Network
	addr   string
	inbox  chan Packet
	closed bool // guarded by net.mu
}

// Addr returns the node's address.
func (nd *Node) Addr() string { return nd.addr }

// Send hands a copy of payload to the network for delivery to the node at
// address to. Like a datagram socket it does not report loss: a packet
// dropped by a fault, a partition, a crash, a full inbox or an unknown
// destination still returns nil (and is counted in [Stats]). It returns
// [ErrClosed] if the node or the network is closed.
func (nd *Node) Send(to string, payload []byte) error {
	cp := append([]byte(nil), payload...)
	nd.net.mu.Lock()
	closed := nd.closed
	nd.net.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return nd.net.send(nd.addr, to, cp)
}

// Inbox returns the channel packets are delivered on. The network closes it
// when the node or the network is closed.
func (nd *Node) Inbox() <-chan Packet { return nd.inbox }

// Recv waits for the next packet. It returns an error wrapping ctx.Err()
// if ctx ends first, and [ErrClosed] once the node is closed and its inbox
// drained.
func (nd *Node) Recv(ctx context.Context) (Packet, error) {
	select {
	case p, ok := <-nd.inbox:
		if !ok {
			return Packet{}, ErrClosed
		}
		return p, nil
	case <-ctx.Done():
		return Packet{}, fmt.Errorf("simnet: recv at %s: %w", nd.addr, ctx.Err())
	}
}

// Close unregisters the node and closes its inbox; its address may be
// registered again. A packet still in flight to the address goes to
// whichever node holds it when the packet is due, or is dropped as having
// no route. Close is idempotent.
func (nd *Node) Close() error {
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if nd.closed {
		return nil
	}
	nd.closed = true
	close(nd.inbox)
	if n.nodes[nd.addr] == nd {
		delete(n.nodes, nd.addr)
	}
	return nil
}
