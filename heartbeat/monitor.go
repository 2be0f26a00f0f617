package heartbeat

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"
)

// Defaults of [MonitorConfig] and [NodeConfig].
const (
	// DefaultInterval is the heartbeat, ping and view period.
	DefaultInterval = time.Second
	// DefaultMaxPeers bounds the peers one Monitor tracks.
	DefaultMaxPeers = 65536
	// DefaultMaxPacketSize bounds the packets a Monitor builds (quorum
	// views are split to fit): small enough to avoid IP fragmentation.
	DefaultMaxPacketSize = 1400
)

// Peer names a peer for [Monitor.Add] and [MonitorConfig].Peers.
type Peer struct {
	// ID is the peer's [NodeConfig].ID. Required, at most [MaxIDLen]
	// bytes.
	ID string
	// Addr is the peer's transport address. Required in pull mode, which
	// pings it; optional otherwise, as the monitor learns it from the
	// peer's heartbeats.
	Addr string
}

// MonitorConfig configures a [Monitor]. Zero fields take the documented
// defaults; only ID is required.
type MonitorConfig struct {
	// ID names this monitor in acknowledgements, quorum views and
	// [Transition].Agreed. Required, at most [MaxIDLen] bytes.
	ID string
	// Interval is the pull-mode ping period and the quorum-view period,
	// and the heartbeat interval assumed for a peer until its own
	// heartbeats announce one. 0 means [DefaultInterval] (1 s).
	Interval time.Duration
	// CheckInterval is how often every peer's detector is consulted; it
	// bounds how late a transition can be noticed. 0 means Interval/10.
	CheckInterval time.Duration
	// Detector makes each peer's failure detector. nil means
	// PhiAccrualConfig{}: φ accrual with Akka's defaults.
	Detector DetectorFactory
	// DeadAfter is how long a peer stays Suspect before it is declared
	// Dead (a confirmation period, like Lifeguard's suspicion timeout).
	// 0 means 3 × Interval; use a tiny value such as time.Nanosecond to
	// declare death at the first check after suspicion.
	DeadAfter time.Duration
	// Peers are tracked from the start, in state [Unknown]. Peers can
	// also be added later with [Monitor.Add].
	Peers []Peer
	// Discover makes the monitor track any authentic heartbeat's sender,
	// up to MaxPeers. Without it, heartbeats from untracked IDs are
	// dropped and counted in [Stats].UnknownPeers.
	Discover bool
	// MaxPeers bounds the tracked peers. 0 means [DefaultMaxPeers].
	MaxPeers int
	// Pull makes the monitor ping every peer that has an address once per
	// Interval; a peer's answer counts as its heartbeat. Pushed
	// heartbeats are accepted in both modes.
	Pull bool
	// Quorum lists the addresses of the other monitors of a quorum. When
	// set, monitors exchange their verdicts every Interval and a peer is
	// reported Dead only while a strict majority of the 1+len(Quorum)
	// monitors say so. Views are accepted only from these addresses.
	Quorum []string
	// VoteTTL is how long another monitor's vote counts after its last
	// view mentioning the peer. 0 means 3 × Interval.
	VoteTTL time.Duration
	// PauseThreshold is the gap, beyond one CheckInterval, between two
	// activities of the monitor that counts as a local pause and is
	// taken out of the detectors' clock. 0 means
	// [DefaultPauseThreshold]; a negative value disables the guard.
	PauseThreshold time.Duration
	// Keys authenticate packets with HMAC-SHA256. Keys[0] signs
	// everything this monitor sends; a packet verifying under any key is
	// accepted (list the old key second while rotating). When Keys is
	// set, unsigned and forged packets are dropped and counted. Each key
	// must be at least 16 bytes.
	Keys [][]byte
	// MaxPacketSize bounds the packets this monitor sends; quorum views
	// are split to fit. 0 means [DefaultMaxPacketSize].
	MaxPacketSize int
	// SubscriptionBuffer is each [Subscription]'s queue length. 0 means
	// [DefaultSubscriptionBuffer].
	SubscriptionBuffer int
	// Logger receives warnings (local pauses) and debug records (dropped
	// packets, transitions). nil discards them. Its handler is never
	// called under the monitor's lock, so it may call the monitor.
	Logger *slog.Logger
}

// Timing is what a monitor infers from the timestamps heartbeats carry.
// None of it feeds the verdict, which needs no synchronised clocks; it
// tells a slow network (heartbeats still arriving, with growing Delay)
// from a failed node (heartbeats stopping), and reports clock skew.
type Timing struct {
	// RTT is the smoothed round-trip time: measured by the monitor's
	// pings in pull mode, or reported by an acknowledged node. 0 when
	// neither applies.
	RTT time.Duration
	// Delay estimates the one-way delay of the latest heartbeat: RTT/2
	// plus how much longer the heartbeat took than the fastest of the
	// last 16 to 32 (its queueing delay). Without an RTT it is only the
	// queueing delay, so a delay that persists for longer than that
	// window becomes the new normal. It uses only differences of each
	// clock, so it is immune to clock offset.
	Delay time.Duration
	// Jitter is the RFC 3550 inter-arrival jitter of the heartbeats.
	Jitter time.Duration
	// ClockOffset estimates the peer's wall clock minus this monitor's,
	// from the least-delayed recent heartbeat, corrected by RTT/2 when
	// the RTT is known. Its error is within ±RTT/2; without an RTT it
	// also absorbs the one-way delay.
	ClockOffset time.Duration
}

// PeerStatus is a snapshot of what a monitor knows about one peer.
type PeerStatus struct {
	ID    string
	Addr  string
	State State
	// Since is when the peer entered State.
	Since time.Time
	// Level is the detector's suspicion level now (φ for the accrual
	// detectors).
	Level float64
	// Incarnation and Seq identify the latest fresh heartbeat.
	Incarnation, Seq uint64
	// LastHeartbeat is when the latest fresh heartbeat arrived; zero if
	// none has.
	LastHeartbeat time.Time
	// Heartbeats counts the fresh heartbeats received.
	Heartbeats uint64
	// Diagnostics are the metrics of the latest heartbeat that carried
	// any; the slice is the caller's.
	Diagnostics []Metric
	Timing      Timing
	// Votes lists, sorted, the monitors (this one included) that
	// currently say the peer is Dead; quorum mode only.
	Votes []string
	// Transition is the Seq of the transition that set State, 0 if none:
	// a subscriber may skip transitions with a smaller Seq.
	Transition uint64
}

// Stats counts what a [Monitor] or a [Node] did.
type Stats struct {
	Received   uint64 // packets received
	Sent       uint64 // packets sent
	SendErrors uint64 // sends the transport refused

	Heartbeats uint64 // fresh heartbeats (Monitor) or acks (Node) accepted
	Duplicates uint64 // duplicated or reordered: sequence not newer
	Stale      uint64 // older incarnation, or sent before the peer was declared dead
	Malformed  uint64 // rejected by the decoder
	Unsigned   uint64 // unsigned while Keys are set
	Forged     uint64 // signature did not verify
	Unexpected uint64 // authentic, but of a type this role does not handle

	UnknownPeers uint64 // Monitor: heartbeats from untracked IDs
	Views        uint64 // Monitor: quorum views accepted
	Pings        uint64 // Node: pings answered
	BadMetrics   uint64 // Node: diagnostics rejected (see NodeConfig.Diagnostics)

	LocalPauses uint64        // local pauses detected
	Paused      time.Duration // total time taken out of the detectors' clock

	Transitions        uint64 // transitions published
	DroppedTransitions uint64 // transitions lost to full subscription queues
}

// Monitor watches peers and decides, per peer, whether it is alive,
// suspect or dead. It receives pushed heartbeats, pings peers in pull
// mode, acknowledges heartbeats that ask for it, and in quorum mode
// shares its verdicts with other monitors. Create one with [NewMonitor],
// run it with [Monitor.Run], observe it with [Monitor.Subscribe] and
// [Monitor.Peers].
//
// A heartbeat counts once: one from an older incarnation, or with a
// sequence number not above the latest seen, is dropped. A Dead peer of
// the same incarnation is revived only by evidence sent after it was
// declared dead: a pushed heartbeat whose send time (its arrival minus
// the queueing delay its timestamps reveal) is later, or the answer to a
// ping sent later. So a heartbeat that lingered in a queue cannot revive
// a crashed peer.
//
// A Monitor is safe for concurrent use.
type Monitor struct {
	tr       Transport
	cfg      MonitorConfig
	log      *slog.Logger
	start    time.Time // origin of this monitor's monotonic stamps
	inc      uint64
	majority int

	mu      sync.Mutex
	logs    logQueue // records made under mu, written once it is released
	peers   map[string]*peer
	order   []*peer
	members []member // quorum, in config order
	guard   pauseGuard
	stats   Stats
	ackSeq  uint64
	pingSeq uint64
	round   uint64
	nextRnd time.Time

	run runner
	hub *hub

	// Used only by the Run goroutine's checks.
	tickCodec *codec
	out       outbox

	beforeCheck func() // test hook: runs at the start of every check
}

type member struct {
	addr  string
	id    string
	inc   uint64
	round uint64
	heard bool
}

type vote struct {
	state State
	inc   uint64
	at    time.Time // detectors' clock
}

type peer struct {
	id, addr string
	state    State // reported
	local    State // this monitor's own verdict
	since    time.Time
	changed  time.Time // when local last changed (detectors' clock)
	suspect  time.Time // when local became Suspect (detectors' clock)
	deadAt   time.Time // when local became Dead (monotonic)
	det      Detector
	level    float64
	trans    uint64
	agreed   []string
	votes    []vote

	heard     bool
	inc, seq  uint64
	lastBeat  time.Time
	beats     uint64
	metrics   []Metric
	nextPing  time.Time
	lastPing  time.Time // send time of the latest ping
	transitMu transit
	rtt       time.Duration
}

// transit estimates delays from the (sent, received) stamps of one
// incarnation's heartbeats. Transit = our monotonic receive time minus
// the peer's monotonic send time: an unknown constant (the clocks'
// origins) plus the one-way delay. Its minimum over a sliding window is
// the constant plus the smallest delay; the excess over it is queueing.
type transit struct {
	cur, prev   int64 // window minima
	curW, prevW int64 // wall transit at those minima (for the clock offset)
	n           int   // samples in cur
	last        int64
	excess      time.Duration
	jitter      float64
	have        bool
}

const transitWindow = 16

func (t *transit) add(d, wall int64) {
	if !t.have {
		*t = transit{cur: d, prev: d, curW: wall, prevW: wall, last: d, have: true}
		return
	}
	if t.n == 0 || d < t.cur {
		t.cur, t.curW = d, wall
	}
	if t.n++; t.n >= transitWindow {
		t.prev, t.prevW = t.cur, t.curW
		t.n = 0
	}
	diff := d - t.last
	if diff < 0 {
		diff = -diff
	}
	t.jitter += (float64(diff) - t.jitter) / 16
	t.last = d
	t.excess = time.Duration(d - t.base())
}

func (t *transit) base() int64 { return min(t.cur, t.prev) }

func (t *transit) baseWall() int64 {
	if t.prev <= t.cur {
		return t.prevW
	}
	return t.curW
}

// NewMonitor returns a Monitor that uses tr, which it does not close. It
// returns an error wrapping [ErrInvalidConfig] that names the field for
// a bad config, and one wrapping [ErrInvalidPeer] or [ErrPeerExists] for
// a bad entry of cfg.Peers.
func NewMonitor(tr Transport, cfg MonitorConfig) (*Monitor, error) {
	if tr == nil {
		return nil, fmt.Errorf("%w: nil Transport", ErrInvalidConfig)
	}
	if err := checkID("MonitorConfig.ID", cfg.ID); err != nil {
		return nil, err
	}
	if err := checkDurations("MonitorConfig", map[string]time.Duration{
		"Interval": cfg.Interval, "CheckInterval": cfg.CheckInterval,
		"DeadAfter": cfg.DeadAfter, "VoteTTL": cfg.VoteTTL,
	}); err != nil {
		return nil, err
	}
	if cfg.MaxPeers < 0 || cfg.MaxPacketSize < 0 || cfg.SubscriptionBuffer < 0 {
		return nil, fmt.Errorf("%w: MonitorConfig.MaxPeers, MaxPacketSize and SubscriptionBuffer must not be negative", ErrInvalidConfig)
	}
	if err := checkKeys("MonitorConfig", cfg.Keys); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = max(cfg.Interval/10, time.Millisecond)
	}
	if cfg.Detector == nil {
		cfg.Detector = PhiAccrualConfig{}
	}
	if _, err := cfg.Detector.NewDetector(cfg.Interval); err != nil {
		return nil, fmt.Errorf("MonitorConfig.Detector: %w", err)
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = 3 * cfg.Interval
	}
	if cfg.VoteTTL == 0 {
		cfg.VoteTTL = 3 * cfg.Interval
	}
	if cfg.MaxPeers == 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.MaxPacketSize < 256 {
		return nil, fmt.Errorf("%w: MonitorConfig.MaxPacketSize %d is below the 256-byte minimum", ErrInvalidConfig, cfg.MaxPacketSize)
	}
	if cfg.SubscriptionBuffer == 0 {
		cfg.SubscriptionBuffer = DefaultSubscriptionBuffer
	}
	if cfg.PauseThreshold == 0 {
		cfg.PauseThreshold = DefaultPauseThreshold
	}
	seen := make(map[string]bool)
	for i, a := range cfg.Quorum {
		if a == "" || a == tr.LocalAddr() || seen[a] {
			return nil, fmt.Errorf("%w: MonitorConfig.Quorum[%d] %q is empty, a duplicate or this monitor's own address", ErrInvalidConfig, i, a)
		}
		seen[a] = true
	}
	cfg.Peers = slices.Clone(cfg.Peers)
	cfg.Quorum = slices.Clone(cfg.Quorum)
	cfg.Keys = cloneKeys(cfg.Keys)
	now := time.Now()
	m := &Monitor{
		tr:        tr,
		cfg:       cfg,
		log:       cfg.Logger,
		start:     now,
		inc:       uint64(now.UnixNano()),
		majority:  (1+len(cfg.Quorum))/2 + 1,
		peers:     make(map[string]*peer),
		hub:       newHub(cfg.SubscriptionBuffer),
		tickCodec: newCodec(cfg.Keys),
		guard:     pauseGuard{check: cfg.CheckInterval, threshold: cfg.PauseThreshold, last: now, logger: cfg.Logger},
		nextRnd:   now,
	}
	m.guard.logs = &m.logs
	for _, a := range cfg.Quorum {
		m.members = append(m.members, member{addr: a})
	}
	for _, p := range cfg.Peers {
		if err := m.addLocked(p, now); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func checkID(field, id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: %s %q must be 1 to %d bytes", ErrInvalidConfig, field, id, MaxIDLen)
	}
	return nil
}

func checkDurations(cfg string, ds map[string]time.Duration) error {
	names := make([]string, 0, len(ds))
	for k := range ds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if ds[k] < 0 {
			return fmt.Errorf("%w: %s.%s %v must not be negative", ErrInvalidConfig, cfg, k, ds[k])
		}
	}
	return nil
}

func checkKeys(cfg string, keys [][]byte) error {
	for i, k := range keys {
		if len(k) < 16 {
			return fmt.Errorf("%w: %s.Keys[%d] has %d bytes; use at least 16", ErrInvalidConfig, cfg, i, len(k))
		}
	}
	return nil
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
}

// Add starts tracking p in state [Unknown]. Its detector starts now, so
// a peer that never sends a heartbeat becomes Suspect, then Dead, like
// one that stopped. It returns an error wrapping [ErrInvalidPeer],
// [ErrPeerExists] or [ErrTooManyPeers], or [ErrClosed].
func (m *Monitor) Add(p Peer) error {
	if m.run.isClosed() {
		return ErrClosed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addLocked(p, time.Now())
}

func (m *Monitor) addLocked(p Peer, now time.Time) error {
	if p.ID == "" || len(p.ID) > MaxIDLen {
		return fmt.Errorf("%w: ID %q must be 1 to %d bytes", ErrInvalidPeer, p.ID, MaxIDLen)
	}
	if m.cfg.Pull && p.Addr == "" {
		return fmt.Errorf("%w: %q has no address, which pull mode needs", ErrInvalidPeer, p.ID)
	}
	if _, ok := m.peers[p.ID]; ok {
		return fmt.Errorf("%w: %q", ErrPeerExists, p.ID)
	}
	if len(m.peers) >= m.cfg.MaxPeers {
		return fmt.Errorf("%w: %d", ErrTooManyPeers, m.cfg.MaxPeers)
	}
	adj := m.guard.adj(now)
	det, _ := m.cfg.Detector.NewDetector(m.cfg.Interval) // validated in NewMonitor
	det.Heartbeat(adj)                                   // start the clock on a peer never heard from
	pr := &peer{id: p.ID, addr: p.Addr, det: det, since: now, changed: adj}
	if len(m.members) > 0 {
		pr.votes = make([]vote, len(m.members))
	}
	// Spread the pings of many peers over the interval, deterministically.
	off := time.Duration(fnv64(p.ID) % uint64(m.cfg.Interval))
	pr.nextPing = now.Add(off)
	m.peers[p.ID] = pr
	m.order = append(m.order, pr)
	return nil
}

// Remove stops tracking the peer with the given ID. No transition is
// published. It returns an error wrapping [ErrUnknownPeer], or
// [ErrClosed].
func (m *Monitor) Remove(id string) error {
	if m.run.isClosed() {
		return ErrClosed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[id]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, id)
	}
	delete(m.peers, id)
	m.order = slices.DeleteFunc(m.order, func(q *peer) bool { return q == p })
	return nil
}

// Subscribe returns a subscription to every state transition from now
// on. To start from a consistent picture, subscribe first, then read
// [Monitor.Peers]: a transition whose Seq is not above a status's
// Transition is already reflected in it. After Close, the subscription
// returns [ErrClosed] once drained.
func (m *Monitor) Subscribe() *Subscription { return m.hub.subscribe() }

// Peer returns the status of the peer with the given ID.
func (m *Monitor) Peer(id string) (PeerStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[id]
	if !ok {
		return PeerStatus{}, false
	}
	return m.statusLocked(p, m.guard.adj(time.Now())), true
}

// Peers returns the status of every tracked peer, sorted by ID.
func (m *Monitor) Peers() []PeerStatus {
	m.mu.Lock()
	adj := m.guard.adj(time.Now())
	out := make([]PeerStatus, 0, len(m.order))
	for _, p := range m.order {
		out = append(out, m.statusLocked(p, adj))
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b PeerStatus) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

func (m *Monitor) statusLocked(p *peer, adj time.Time) PeerStatus {
	level, _ := p.det.Suspicion(adj)
	t := Timing{RTT: p.rtt, Delay: p.rtt/2 + p.transitMu.excess, Jitter: time.Duration(p.transitMu.jitter)}
	if p.transitMu.have {
		// wall transit = our wall receive - their wall send
		//              = one-way delay - (their clock - ours)
		t.ClockOffset = p.rtt/2 - time.Duration(p.transitMu.baseWall())
	}
	return PeerStatus{
		ID: p.id, Addr: p.addr, State: p.state, Since: p.since, Level: level,
		Incarnation: p.inc, Seq: p.seq, LastHeartbeat: p.lastBeat, Heartbeats: p.beats,
		Diagnostics: slices.Clone(p.metrics), Timing: t, Votes: m.votersLocked(p, adj),
		Transition: p.trans,
	}
}

// Stats returns a snapshot of the monitor's counters.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	s := m.stats
	s.LocalPauses, s.Paused = m.guard.pauses, m.guard.paused
	m.mu.Unlock()
	s.Transitions, s.DroppedTransitions = m.hub.stats()
	return s
}

// Run receives packets and checks peers until ctx ends or the monitor is
// closed. It returns an error wrapping ctx.Err() when ctx ends,
// [ErrClosed] after Close, [ErrRunning] if the monitor is already
// running, and an error wrapping the transport's if Recv fails. Time the
// monitor spends not running is taken out of its detectors' clock, so
// Run may be stopped and started again without convicting anyone.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, end, err := m.run.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	m.mu.Lock()
	m.guard.skip(time.Now())
	m.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before the Wait: it stops the receiver
	errc := make(chan error, 1)
	wg.Go(func() { errc <- receive(ctx, m.tr, m.cfg.Keys, m.handle, m.send) })
	ticker := time.NewTicker(m.cfg.CheckInterval)
	defer ticker.Stop()
	who := "monitor " + m.cfg.ID
	m.check(ctx, time.Now())
	for {
		select {
		case <-ctx.Done():
			return m.run.exit(ctx, who)
		case err := <-errc:
			if err == nil || ctx.Err() != nil {
				return m.run.exit(ctx, who)
			}
			return fmt.Errorf("heartbeat: %s: %w", who, err)
		case <-ticker.C:
			m.check(ctx, time.Now())
		}
	}
}

// Close stops Run, waits for it to return, and ends every subscription
// once its queue drains. It does not close the transport. It is
// idempotent and returns nil.
func (m *Monitor) Close() error {
	m.run.close()
	m.hub.close()
	return nil
}

func (m *Monitor) send(ctx context.Context, to string, b []byte) {
	err := m.tr.Send(ctx, to, b)
	m.mu.Lock()
	if err != nil {
		m.stats.SendErrors++
	} else {
		m.stats.Sent++
	}
	m.mu.Unlock()
	if err != nil && m.log != nil && ctx.Err() == nil {
		m.log.Debug("heartbeat: send failed", "monitor", m.cfg.ID, "to", to, "err", err)
	}
}

// handle processes one packet and returns the reply to send, if any,
// appended to buf.
func (m *Monitor) handle(c *codec, buf []byte, p Packet, now time.Time) ([]byte, string) {
	msg, err := c.decode(p.Data)
	if err != nil && m.log != nil {
		m.log.Debug("heartbeat: packet dropped", "monitor", m.cfg.ID, "from", p.From, "err", err)
	}
	m.mu.Lock()
	defer m.unlock()
	return m.handleLocked(c, buf, p, msg, err, now)
}

// unlock releases mu, then writes the log records made under it: the
// Logger is user code, which must not run under mu.
func (m *Monitor) unlock() {
	logs := m.logs.take()
	m.mu.Unlock()
	logs.emit(m.log)
}

func (m *Monitor) handleLocked(c *codec, buf []byte, p Packet, msg *message, err error, now time.Time) ([]byte, string) {
	m.stats.Received++
	if err != nil {
		countDecodeErr(&m.stats, err)
		return nil, ""
	}
	adj := m.guard.observe(now)
	switch msg.typ {
	case msgHeartbeat:
		m.onBeat(msg, p.From, now, adj, 0, false)
		if msg.ackReq {
			m.ackSeq++
			ack := message{
				typ: msgAck, id: []byte(m.cfg.ID), inc: m.inc, seq: m.ackSeq,
				wall: now.UnixNano(), mono: m.mono(now),
				echoSeq: msg.seq, echoMono: msg.mono, echoWall: now.UnixNano(),
			}
			return c.encode(buf, &ack), p.From
		}
	case msgPong:
		if msg.echoMono > m.mono(now) || msg.echoSeq > m.pingSeq {
			m.stats.Stale++ // answers a ping this monitor never sent
			return nil, ""
		}
		m.onBeat(msg, p.From, now, adj, time.Duration(m.mono(now)-msg.echoMono), true)
	case msgView:
		m.onView(msg, p.From, now, adj)
	default:
		m.stats.Unexpected++
	}
	return nil, ""
}

func (m *Monitor) mono(now time.Time) uint64 { return uint64(now.Sub(m.start)) }

// onBeat handles a pushed heartbeat or a pong.
func (m *Monitor) onBeat(msg *message, from string, now, adj time.Time, rtt time.Duration, pong bool) {
	p, ok := m.peers[string(msg.id)]
	if !ok {
		if !m.cfg.Discover || len(m.peers) >= m.cfg.MaxPeers {
			m.stats.UnknownPeers++
			return
		}
		_ = m.addLocked(Peer{ID: string(msg.id), Addr: from}, now)
		p = m.peers[string(msg.id)]
	}
	newInc := !p.heard || msg.inc > p.inc
	switch {
	case !newInc && msg.inc < p.inc:
		m.stats.Stale++
		return
	case !newInc && msg.seq <= p.seq:
		m.stats.Duplicates++
		return
	}
	interval := time.Duration(msg.interval)
	if newInc {
		det, err := m.cfg.Detector.NewDetector(interval)
		if err != nil {
			det, _ = m.cfg.Detector.NewDetector(m.cfg.Interval)
		}
		p.det, p.heard, p.inc, p.transitMu, p.rtt = det, true, msg.inc, transit{}, 0
	}
	p.seq = msg.seq
	if pong {
		p.rtt = srtt(p.rtt, rtt)
	} else if msg.rtt > 0 {
		p.rtt = time.Duration(msg.rtt)
	}
	p.transitMu.add(int64(m.mono(now))-int64(msg.mono), now.UnixNano()-msg.wall)
	if p.local == Dead && !newInc {
		// Revive only on evidence sent after the death verdict.
		sent := now.Add(-p.transitMu.excess)
		if pong {
			sent = m.start.Add(time.Duration(msg.echoMono))
		}
		if !sent.After(p.deadAt) {
			m.stats.Stale++
			return
		}
	}
	m.stats.Heartbeats++
	p.det.Heartbeat(adj)
	p.level, _ = p.det.Suspicion(adj)
	p.lastBeat = now
	p.beats++
	if from != "" {
		p.addr = from
	}
	if len(msg.metrics) > 0 {
		p.metrics = setMetrics(p.metrics, msg.metrics)
	}
	if p.local != Alive {
		p.local, p.changed = Alive, adj
	}
	m.publishLocked(p, now, adj)
}

func setMetrics(dst []Metric, src []wireMetric) []Metric {
	same := len(dst) == len(src)
	for i := 0; same && i < len(src); i++ {
		same = dst[i].Key == string(src[i].key)
	}
	if !same {
		dst = make([]Metric, len(src))
		for i, x := range src {
			dst[i].Key = string(x.key)
		}
	}
	for i, x := range src {
		dst[i].Value = x.value
	}
	return dst
}

// onView records another quorum monitor's votes.
func (m *Monitor) onView(msg *message, from string, now, adj time.Time) {
	i := slices.IndexFunc(m.members, func(mb member) bool { return mb.addr == from })
	if i < 0 {
		m.stats.Unexpected++
		return
	}
	if string(msg.id) == m.cfg.ID || slices.ContainsFunc(m.members, func(o member) bool { return o.addr != from && o.id == string(msg.id) }) {
		// Two monitors with one ID would count twice toward a majority.
		m.stats.Unexpected++
		if m.log != nil {
			m.logs.add(slog.LevelWarn, "heartbeat: quorum view from a duplicate monitor ID; ignored", "monitor", m.cfg.ID, "from", from, "id", string(msg.id))
		}
		return
	}
	mb := &m.members[i]
	if mb.heard && (msg.inc < mb.inc || msg.inc == mb.inc && msg.seq < mb.round) {
		m.stats.Stale++
		return
	}
	mb.heard, mb.inc, mb.round = true, msg.inc, msg.seq
	if mb.id != string(msg.id) {
		mb.id = string(msg.id)
	}
	m.stats.Views++
	for _, e := range msg.entries {
		p, ok := m.peers[string(e.id)]
		if !ok {
			continue
		}
		p.votes[i] = vote{state: e.state, inc: e.inc, at: adj}
		m.publishLocked(p, now, adj)
	}
}

// votersLocked returns the sorted IDs of the monitors that currently say
// p is Dead, or nil outside quorum mode.
func (m *Monitor) votersLocked(p *peer, adj time.Time) []string {
	if len(m.members) == 0 {
		return nil
	}
	var ids []string
	if p.local == Dead {
		ids = append(ids, m.cfg.ID)
	}
	for i := range p.votes {
		if m.votesDead(p, i, adj) {
			ids = append(ids, m.members[i].id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// votesDead reports whether quorum member i currently says p is Dead: a
// fresh vote about p's current (or a newer) incarnation.
func (m *Monitor) votesDead(p *peer, i int, adj time.Time) bool {
	v := p.votes[i]
	return v.state == Dead && (v.inc >= p.inc || !p.heard) && adj.Sub(v.at) <= m.cfg.VoteTTL && m.members[i].id != ""
}

// deadVotesLocked counts the monitors, this one included, that say p is
// Dead, without allocating: it runs for every peer at every check.
func (m *Monitor) deadVotesLocked(p *peer, adj time.Time) int {
	n := 0
	if p.local == Dead {
		n++
	}
	for i := range p.votes {
		if m.votesDead(p, i, adj) {
			n++
		}
	}
	return n
}

// effectiveLocked returns the state to report for p and, for a quorum
// Dead, who agreed.
func (m *Monitor) effectiveLocked(p *peer, adj time.Time) (State, []string) {
	if len(m.members) == 0 {
		return p.local, nil
	}
	if m.deadVotesLocked(p, adj) >= m.majority {
		if p.state == Dead {
			return Dead, p.agreed // unchanged: no need to list them again
		}
		return Dead, m.votersLocked(p, adj)
	}
	if p.local == Dead {
		return Suspect, nil
	}
	return p.local, nil
}

// publishLocked recomputes p's reported state and publishes a transition
// if it changed.
func (m *Monitor) publishLocked(p *peer, now, adj time.Time) {
	st, agreed := m.effectiveLocked(p, adj)
	if st == p.state {
		return
	}
	t := Transition{
		Peer: p.id, Addr: p.addr, From: p.state, To: st, Incarnation: p.inc,
		At: now, Level: p.level, Agreed: agreed,
	}
	p.state, p.since, p.agreed = st, now, agreed
	p.trans = m.hub.publish(t)
	if m.log != nil {
		m.logs.add(slog.LevelDebug, "heartbeat: transition", "monitor", m.cfg.ID, "peer", p.id, "from", t.From, "to", t.To, "level", t.Level)
	}
}

// outbox collects the packets one check sends, so that they are encoded
// under the lock and sent after it is released.
type outbox struct {
	buf  []byte
	msgs []outMsg
}

type outMsg struct {
	to         string
	start, end int
}

func (o *outbox) reset() { o.buf, o.msgs = o.buf[:0], o.msgs[:0] }

func (o *outbox) add(c *codec, to string, m *message) {
	start := len(o.buf)
	o.buf = c.encode(o.buf, m)
	o.msgs = append(o.msgs, outMsg{to: to, start: start, end: len(o.buf)})
}

// check runs one round: pause guard, detectors, pings and quorum views.
func (m *Monitor) check(ctx context.Context, now time.Time) {
	if m.beforeCheck != nil {
		m.beforeCheck()
		now = time.Now()
	}
	m.mu.Lock()
	m.out.reset()
	adj := m.guard.observe(now)
	for _, p := range m.order {
		if p.local != Dead {
			var changed bool
			prev := p.local
			p.level, changed = evaluate(&p.local, p.det, adj, &p.suspect, m.cfg.DeadAfter)
			if changed {
				p.changed = adj
				if p.local == Dead && prev != Dead {
					p.deadAt = now
				}
			}
		} else {
			p.level, _ = p.det.Suspicion(adj)
		}
		m.publishLocked(p, now, adj)
		if m.cfg.Pull && p.addr != "" && !now.Before(p.nextPing) {
			m.pingSeq++
			ping := message{typ: msgPing, id: []byte(m.cfg.ID), inc: m.inc, seq: m.pingSeq, wall: now.UnixNano(), mono: m.mono(now)}
			m.out.add(m.tickCodec, p.addr, &ping)
			p.lastPing = now
			if p.nextPing = p.nextPing.Add(m.cfg.Interval); p.nextPing.Before(now) {
				p.nextPing = now.Add(m.cfg.Interval)
			}
		}
	}
	if len(m.members) > 0 && !now.Before(m.nextRnd) {
		m.viewsLocked(now, adj)
		if m.nextRnd = m.nextRnd.Add(m.cfg.Interval); m.nextRnd.Before(now) {
			m.nextRnd = now.Add(m.cfg.Interval)
		}
	}
	out := &m.out
	m.unlock()
	for _, o := range out.msgs {
		m.send(ctx, o.to, out.buf[o.start:o.end])
	}
}

// viewsLocked queues this monitor's view for every other quorum member:
// the peers it suspects or holds dead, and those whose verdict changed
// within VoteTTL (so that a retraction is heard). Absent peers count as
// not dead once their vote expires. Views are split to fit MaxPacketSize.
func (m *Monitor) viewsLocked(now, adj time.Time) {
	m.round++
	base := message{typ: msgView, id: []byte(m.cfg.ID), inc: m.inc, seq: m.round, wall: now.UnixNano(), mono: m.mono(now)}
	// Header, id, four varints and the signature, generously.
	budget := m.cfg.MaxPacketSize - (headerLen + 1 + len(m.cfg.ID) + 4*binaryMaxVarint + macLen)
	var entries []viewEntry
	size := 0
	flush := func() {
		v := base
		v.entries = entries
		for _, mb := range m.members {
			m.out.add(m.tickCodec, mb.addr, &v)
		}
		entries, size = nil, 0
	}
	for _, p := range m.order {
		if p.local != Suspect && p.local != Dead && adj.Sub(p.changed) > m.cfg.VoteTTL {
			continue
		}
		if p.local == Unknown {
			continue
		}
		n := 1 + len(p.id) + binaryMaxVarint + 1 + 1
		if size+n > budget && len(entries) > 0 {
			flush()
		}
		entries = append(entries, viewEntry{id: []byte(p.id), inc: p.inc, state: p.local})
		size += n
	}
	flush() // an empty view still says "nothing is dead here"
}

const binaryMaxVarint = 10

// logQueue holds log records made while a lock is held. The Logger's
// handler is user code, which never runs under the package's locks: the
// holder takes the queue before unlocking and emits it after.
type logQueue []logRecord

type logRecord struct {
	level slog.Level
	msg   string
	args  []any
}

func (q *logQueue) add(level slog.Level, msg string, args ...any) {
	*q = append(*q, logRecord{level, msg, args})
}

// take empties the queue and returns what it held.
func (q *logQueue) take() logQueue {
	r := *q
	*q = nil
	return r
}

// emit writes the records to l, which may be nil only if there are none.
func (q logQueue) emit(l *slog.Logger) {
	for _, r := range q {
		l.Log(context.Background(), r.level, r.msg, r.args...)
	}
}
