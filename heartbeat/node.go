package heartbeat

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// NodeConfig configures a [Node]. Zero fields take the documented
// defaults; only ID is required.
type NodeConfig struct {
	// ID names the node to its monitors. Required, at most [MaxIDLen]
	// bytes.
	ID string
	// Incarnation distinguishes this life of the node from earlier ones:
	// monitors ignore heartbeats from an older incarnation, and a newer
	// one revives a dead peer at once. 0 means the wall clock at
	// [NewNode] in Unix nanoseconds, which grows across restarts as long
	// as the clock does not step back; persist a counter and set it here
	// if that is not good enough.
	Incarnation uint64
	// Interval is the heartbeat period. 0 means [DefaultInterval] (1 s).
	// Monitors learn it from the heartbeats.
	Interval time.Duration
	// Jitter spreads heartbeats uniformly over Interval × (1 ± Jitter),
	// so that many nodes do not beat in lockstep. 0 means none; at most
	// 0.5.
	Jitter float64
	// Targets are the monitor addresses to push heartbeats to. Empty
	// means the node only answers pull-mode pings.
	Targets []string
	// Ack asks every target to acknowledge each heartbeat; the node then
	// tracks each path's state (see [Node.Paths] and [Node.Subscribe]),
	// so it knows whether its heartbeats get through.
	Ack bool
	// Detector judges each acknowledged path. nil means
	// PhiAccrualConfig{}.
	Detector DetectorFactory
	// DeadAfter is how long a path stays Suspect before it is Dead.
	// 0 means 3 × Interval.
	DeadAfter time.Duration
	// CheckInterval is how often paths are checked. 0 means Interval/10.
	CheckInterval time.Duration
	// PauseThreshold is as in [MonitorConfig], for the paths' detectors.
	PauseThreshold time.Duration
	// Diagnostics, if set, is called once per Interval, from Run's
	// goroutine and without locks held; its metrics ride on the
	// heartbeats and on answers to pings. It may block only briefly (it
	// delays the heartbeat). At most [MaxMetrics] metrics with keys of 1
	// to [MaxMetricKeyLen] bytes of UTF-8 and finite values; an invalid
	// set is not sent, is logged and counted in [Stats].BadMetrics.
	Diagnostics func() []Metric
	// Keys are as in [MonitorConfig]: Keys[0] signs, any key verifies.
	Keys [][]byte
	// SubscriptionBuffer is each [Subscription]'s queue length. 0 means
	// [DefaultSubscriptionBuffer].
	SubscriptionBuffer int
	// Logger receives warnings and debug records. nil discards them. Its
	// handler is never called under the node's lock, so it may call the
	// node.
	Logger *slog.Logger
}

// PathStatus is what a [Node] knows about the path to one monitor from
// that monitor's acknowledgements.
type PathStatus struct {
	// Addr is the target address.
	Addr string
	// Monitor is the ID the monitor acknowledges with, "" before any ack.
	Monitor string
	// State is [Unknown] before the first ack, then as for peers.
	State State
	Since time.Time
	// Level is the path detector's suspicion level now.
	Level float64
	// LastAck is when the latest fresh ack arrived.
	LastAck time.Time
	// RTT is the smoothed round-trip time of acknowledged heartbeats.
	RTT time.Duration
	// Sent and Acked count heartbeats sent to the target and fresh acks.
	Sent, Acked uint64
}

// Node is the monitored side: it pushes heartbeats to its targets,
// answers pull-mode pings, attaches diagnostics and timestamps, and in
// acknowledged mode tracks whether each monitor hears it. Create one with
// [NewNode] and run it with [Node.Run]. A Node is safe for concurrent
// use.
type Node struct {
	tr    Transport
	cfg   NodeConfig
	log   *slog.Logger
	start time.Time
	inc   uint64

	mu      sync.Mutex
	logs    logQueue // records made under mu, written once it is released
	seq     uint64
	paths   []*path
	sentTo  [256]sentRec // recent heartbeat seq -> path
	metrics []wireMetric // latest valid diagnostics
	guard   pauseGuard
	stats   Stats

	run runner
	hub *hub
}

type sentRec struct {
	seq  uint64
	path *path
}

type path struct {
	addr, monitor string
	state         State
	since         time.Time
	suspect       time.Time
	det           Detector
	level         float64
	ackSeq        uint64
	lastAck       time.Time
	rtt           time.Duration
	sent, acked   uint64
	trans         uint64
}

// NewNode returns a Node that uses tr, which it does not close, or an
// error wrapping [ErrInvalidConfig] naming the bad field.
func NewNode(tr Transport, cfg NodeConfig) (*Node, error) {
	if tr == nil {
		return nil, fmt.Errorf("%w: nil Transport", ErrInvalidConfig)
	}
	if err := checkID("NodeConfig.ID", cfg.ID); err != nil {
		return nil, err
	}
	if err := checkDurations("NodeConfig", map[string]time.Duration{
		"Interval": cfg.Interval, "CheckInterval": cfg.CheckInterval, "DeadAfter": cfg.DeadAfter,
	}); err != nil {
		return nil, err
	}
	if !(cfg.Jitter >= 0 && cfg.Jitter <= 0.5) {
		return nil, fmt.Errorf("%w: NodeConfig.Jitter %v must be in [0, 0.5]", ErrInvalidConfig, cfg.Jitter)
	}
	if cfg.SubscriptionBuffer < 0 {
		return nil, fmt.Errorf("%w: NodeConfig.SubscriptionBuffer must not be negative", ErrInvalidConfig)
	}
	if err := checkKeys("NodeConfig", cfg.Keys); err != nil {
		return nil, err
	}
	for i, t := range cfg.Targets {
		if t == "" || slices.Index(cfg.Targets, t) != i {
			return nil, fmt.Errorf("%w: NodeConfig.Targets[%d] %q is empty or a duplicate", ErrInvalidConfig, i, t)
		}
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval > maxInterval {
		return nil, fmt.Errorf("%w: NodeConfig.Interval %v is over 24h", ErrInvalidConfig, cfg.Interval)
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = max(cfg.Interval/10, time.Millisecond)
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = 3 * cfg.Interval
	}
	if cfg.Detector == nil {
		cfg.Detector = PhiAccrualConfig{}
	}
	if cfg.PauseThreshold == 0 {
		cfg.PauseThreshold = DefaultPauseThreshold
	}
	if cfg.SubscriptionBuffer == 0 {
		cfg.SubscriptionBuffer = DefaultSubscriptionBuffer
	}
	now := time.Now()
	if cfg.Incarnation == 0 {
		cfg.Incarnation = uint64(now.UnixNano())
	}
	cfg.Targets = slices.Clone(cfg.Targets)
	cfg.Keys = cloneKeys(cfg.Keys)
	n := &Node{
		tr: tr, cfg: cfg, log: cfg.Logger, start: now, inc: cfg.Incarnation,
		hub:   newHub(cfg.SubscriptionBuffer),
		guard: pauseGuard{check: cfg.CheckInterval, threshold: cfg.PauseThreshold, last: now, logger: cfg.Logger},
	}
	n.guard.logs = &n.logs
	for _, t := range cfg.Targets {
		det, err := cfg.Detector.NewDetector(cfg.Interval)
		if err != nil {
			return nil, fmt.Errorf("NodeConfig.Detector: %w", err)
		}
		det.Heartbeat(now)
		n.paths = append(n.paths, &path{addr: t, det: det, since: now})
	}
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Incarnation returns the node's incarnation.
func (n *Node) Incarnation() uint64 { return n.inc }

// Subscribe returns a subscription to the state transitions of the
// node's acknowledged paths (Peer is the target address). Without
// [NodeConfig].Ack there are none.
func (n *Node) Subscribe() *Subscription { return n.hub.subscribe() }

// Paths returns the status of the path to every target, in Targets
// order.
func (n *Node) Paths() []PathStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	adj := n.guard.adj(time.Now())
	out := make([]PathStatus, len(n.paths))
	for i, p := range n.paths {
		level, _ := p.det.Suspicion(adj)
		if !n.cfg.Ack {
			level = 0
		}
		out[i] = PathStatus{
			Addr: p.addr, Monitor: p.monitor, State: p.state, Since: p.since, Level: level,
			LastAck: p.lastAck, RTT: p.rtt, Sent: p.sent, Acked: p.acked,
		}
	}
	return out
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	s := n.stats
	s.LocalPauses, s.Paused = n.guard.pauses, n.guard.paused
	n.mu.Unlock()
	s.Transitions, s.DroppedTransitions = n.hub.stats()
	return s
}

// Run sends heartbeats, answers pings and tracks acknowledgements until
// ctx ends or the node is closed. The first heartbeat goes out at once.
// It returns as [Monitor.Run] does.
func (n *Node) Run(ctx context.Context) error {
	ctx, end, err := n.run.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	n.mu.Lock()
	n.guard.skip(time.Now())
	n.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before the Wait: it stops the receiver
	errc := make(chan error, 1)
	wg.Go(func() {
		errc <- receive(ctx, n.tr, n.cfg.Keys, func(c *codec, buf []byte, p Packet, now time.Time) ([]byte, string) {
			return n.handle(c, buf, p, now), p.From
		}, n.send)
	})
	beat := time.NewTimer(0)
	defer beat.Stop()
	var checks <-chan time.Time
	if n.cfg.Ack && len(n.paths) > 0 {
		t := time.NewTicker(n.cfg.CheckInterval)
		defer t.Stop()
		checks = t.C
	}
	rng := rand.New(rand.NewPCG(n.inc, fnv64(n.cfg.ID)))
	c := newCodec(n.cfg.Keys)
	var buf []byte
	who := "node " + n.cfg.ID
	for {
		select {
		case <-ctx.Done():
			return n.run.exit(ctx, who)
		case err := <-errc:
			if err == nil || ctx.Err() != nil {
				return n.run.exit(ctx, who)
			}
			return fmt.Errorf("heartbeat: %s: %w", who, err)
		case <-checks:
			n.check(time.Now())
		case <-beat.C:
			buf = n.beat(ctx, c, buf[:0])
			d := n.cfg.Interval
			if j := n.cfg.Jitter; j > 0 {
				d = time.Duration(float64(d) * (1 - j + 2*j*rng.Float64()))
			}
			beat.Reset(d)
		}
	}
}

// Close stops Run, waits for it to return and ends every subscription
// once drained. It does not close the transport. It is idempotent and
// returns nil.
func (n *Node) Close() error {
	n.run.close()
	n.hub.close()
	return nil
}

// beat collects diagnostics and sends one heartbeat to every target.
func (n *Node) beat(ctx context.Context, c *codec, buf []byte) []byte {
	if n.cfg.Diagnostics != nil {
		ms := n.cfg.Diagnostics()
		wm, err := toWire(ms)
		n.mu.Lock()
		if err != nil {
			n.stats.BadMetrics++
		} else {
			n.metrics = wm
		}
		n.mu.Unlock()
		if err != nil && n.log != nil {
			n.log.Warn("heartbeat: diagnostics not sent", "node", n.cfg.ID, "err", err)
		}
	}
	for _, p := range n.paths {
		now := time.Now()
		n.mu.Lock()
		n.seq++
		msg := message{
			typ: msgHeartbeat, ackReq: n.cfg.Ack, id: []byte(n.cfg.ID), inc: n.inc, seq: n.seq,
			wall: now.UnixNano(), mono: uint64(now.Sub(n.start)),
			interval: uint64(n.cfg.Interval), rtt: uint64(p.rtt), metrics: n.metrics,
		}
		n.sentTo[n.seq%uint64(len(n.sentTo))] = sentRec{seq: n.seq, path: p}
		p.sent++
		start := len(buf)
		buf = c.encode(buf, &msg)
		n.mu.Unlock()
		n.send(ctx, p.addr, buf[start:])
	}
	return buf
}

func toWire(ms []Metric) ([]wireMetric, error) {
	if len(ms) > MaxMetrics {
		return nil, fmt.Errorf("%d metrics, over %d", len(ms), MaxMetrics)
	}
	out := make([]wireMetric, len(ms))
	for i, m := range ms {
		if m.Key == "" || len(m.Key) > MaxMetricKeyLen || !utf8.ValidString(m.Key) {
			return nil, fmt.Errorf("metric key %q: want 1 to %d bytes of UTF-8", m.Key, MaxMetricKeyLen)
		}
		if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
			return nil, fmt.Errorf("metric %q: value %v is not finite", m.Key, m.Value)
		}
		out[i] = wireMetric{key: []byte(m.Key), value: m.Value}
	}
	return out, nil
}

func (n *Node) send(ctx context.Context, to string, b []byte) {
	err := n.tr.Send(ctx, to, b)
	n.mu.Lock()
	if err != nil {
		n.stats.SendErrors++
	} else {
		n.stats.Sent++
	}
	n.mu.Unlock()
	if err != nil && n.log != nil && ctx.Err() == nil {
		n.log.Debug("heartbeat: send failed", "node", n.cfg.ID, "to", to, "err", err)
	}
}

func (n *Node) handle(c *codec, buf []byte, p Packet, now time.Time) []byte {
	msg, err := c.decode(p.Data)
	if err != nil && n.log != nil {
		n.log.Debug("heartbeat: packet dropped", "node", n.cfg.ID, "from", p.From, "err", err)
	}
	n.mu.Lock()
	defer n.unlock()
	n.stats.Received++
	if err != nil {
		countDecodeErr(&n.stats, err)
		return nil
	}
	adj := n.guard.observe(now)
	switch msg.typ {
	case msgPing:
		n.stats.Pings++
		n.seq++
		pong := message{
			typ: msgPong, id: []byte(n.cfg.ID), inc: n.inc, seq: n.seq,
			wall: now.UnixNano(), mono: uint64(now.Sub(n.start)),
			echoSeq: msg.seq, echoMono: msg.mono, echoWall: now.UnixNano(),
			interval: uint64(n.cfg.Interval), metrics: n.metrics,
		}
		return c.encode(buf, &pong)
	case msgAck:
		rec := n.sentTo[msg.echoSeq%uint64(len(n.sentTo))]
		if rec.seq != msg.echoSeq || rec.path == nil || msg.echoMono > uint64(now.Sub(n.start)) {
			n.stats.Stale++ // too old to match, or not an answer to us
			return nil
		}
		pt := rec.path
		if msg.echoSeq <= pt.ackSeq {
			n.stats.Duplicates++
			return nil
		}
		n.stats.Heartbeats++
		pt.ackSeq = msg.echoSeq
		pt.acked++
		pt.lastAck = now
		pt.rtt = srtt(pt.rtt, now.Sub(n.start)-time.Duration(msg.echoMono))
		if pt.monitor != string(msg.id) {
			pt.monitor = string(msg.id)
		}
		pt.det.Heartbeat(adj)
		pt.level, _ = pt.det.Suspicion(adj)
		if pt.state != Alive {
			n.publishLocked(pt, Alive, now)
		}
	default:
		n.stats.Unexpected++
	}
	return nil
}

func countDecodeErr(s *Stats, err error) {
	switch err {
	case errUnsigned:
		s.Unsigned++
	case errForged:
		s.Forged++
	default:
		s.Malformed++
	}
}

// unlock releases mu, then writes the log records made under it: the
// Logger is user code, which must not run under mu.
func (n *Node) unlock() {
	logs := n.logs.take()
	n.mu.Unlock()
	logs.emit(n.log)
}

func (n *Node) publishLocked(p *path, to State, now time.Time) {
	t := Transition{Peer: p.addr, Addr: p.addr, From: p.state, To: to, Incarnation: n.inc, At: now, Level: p.level}
	p.state, p.since = to, now
	p.trans = n.hub.publish(t)
}

// check runs the path detectors.
func (n *Node) check(now time.Time) {
	n.mu.Lock()
	defer n.unlock()
	adj := n.guard.observe(now)
	for _, p := range n.paths {
		if p.state == Dead {
			continue
		}
		st := p.state
		var changed bool
		p.level, changed = evaluate(&st, p.det, adj, &p.suspect, n.cfg.DeadAfter)
		if changed {
			n.publishLocked(p, st, now)
		}
	}
}

// fnv64 is FNV-1a: a deterministic hash, so that simulated runs repeat.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
