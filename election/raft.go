package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/distkit/distkit/heartbeat"
)

// Defaults of [RaftConfig].
const (
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultElectionTimeout   = time.Second
)

// RaftConfig configures a [RaftElector]. Zero fields take the documented
// defaults; ID and Peers are required.
//
// Timing. Followers wait a random time in [ElectionTimeout,
// 2 × ElectionTimeout) without hearing the leader before they stand, and
// refuse to vote (or pre-vote) while they heard a leader less than
// ElectionTimeout ago, or started less than that ago. A leader's term
// lasts LeaseTimeout after the send time of the latest heartbeat that a
// majority (itself included) acknowledged, so no other leader can be
// elected while it lasts if clocks run at rates within
// (ElectionTimeout - LeaseTimeout) / ElectionTimeout of each other (a
// quarter at the defaults). A leader that loses a majority steps down
// when that lease ends (check-quorum). After a leader crashes, a new one
// is elected within about 2 × ElectionTimeout plus two round trips, more
// when candidates split the vote.
type RaftConfig struct {
	// ID names this node. Required, at most [MaxIDLen] bytes.
	ID string
	// Peers are the other members. Required (a single-node cluster is
	// allowed with an empty slice only if SingleNode is set), IDs unique.
	Peers []Peer
	// SingleNode allows an empty Peers: the node elects itself.
	SingleNode bool
	// HeartbeatInterval is the leader's heartbeat period. 0 means
	// [DefaultHeartbeatInterval] (100 ms).
	HeartbeatInterval time.Duration
	// ElectionTimeout is the minimum election timeout and the vote lease.
	// 0 means [DefaultElectionTimeout] (1 s).
	ElectionTimeout time.Duration
	// LeaseTimeout is how long a leader's term lasts after the send time
	// of its latest majority-acknowledged heartbeat. It must be less than
	// ElectionTimeout and at least 2 × HeartbeatInterval. 0 means
	// 3/4 × ElectionTimeout.
	LeaseTimeout time.Duration
	// State persists the term and vote. nil means a fresh
	// [MemoryTermStore], which forgets on restart: give a restarted node
	// its old store (a [FileTermStore] across processes), or it may vote
	// twice in one term.
	State TermStore
	// ObserveBuffer is each [Observation]'s queue length. 0 means
	// [DefaultObserveBuffer].
	ObserveBuffer int
	// Logger receives elections and step-downs. nil discards them.
	Logger *slog.Logger
}

func checkPeers(id string, peers []Peer) error {
	seen := map[string]bool{id: true}
	for i, p := range peers {
		if err := checkID(fmt.Sprintf("Peers[%d].ID", i), p.ID); err != nil {
			return err
		}
		if seen[p.ID] {
			return configErr(fmt.Sprintf("Peers[%d].ID", i), "%q listed twice (or is this node)", p.ID)
		}
		seen[p.ID] = true
		if p.Addr == "" {
			return configErr(fmt.Sprintf("Peers[%d].Addr", i), "required")
		}
	}
	return nil
}

type raftRole uint8

const (
	follower raftRole = iota
	preCandidate
	candidate
	leader
)

// RaftElector is Raft's leader election (Ongaro and Ousterhout, 2014,
// section 5.2, with the pre-vote and check-quorum extensions of section
// 9.6 and etcd), without log replication. Terms are the fencing tokens:
// a node votes at most once per term (persisted in [RaftConfig].State),
// so no term has two leaders. Pre-vote keeps a node that was partitioned
// away from raising the term and disrupting a healthy leader when it
// returns; check-quorum, together with followers refusing votes while
// they hear a leader, makes a leader's term a lease that ends before any
// successor can be elected. A term is granted only once a majority has
// acknowledged the new leader's heartbeat. It is safe for concurrent use.
type RaftElector struct {
	*core
	tr     heartbeat.Transport
	cfg    RaftConfig
	addr   map[string]string
	quorum int

	// Owned by Run's goroutine.
	st        TermState
	role      raftRole
	leaderID  string
	lastHeard time.Time // last contact from a leader of the current term, or start
	electAt   time.Time
	votes     map[string]bool
	since     time.Time // became leader
	beatSeq   uint64
	sent      [64]struct {
		seq uint64
		at  time.Time
	}
	acked  map[string]time.Time
	next   time.Time // next heartbeat
	mine   *Term
	outBuf []byte
	rng    *rand.Rand // nil: the global source; set by tests to replay a seed
	mu     sync.Mutex // guards st for Term
}

var _ Elector = (*RaftElector)(nil)

// NewRaft returns a Raft elector speaking on tr, which it does not close,
// or an error wrapping [ErrInvalidConfig] naming the bad field.
func NewRaft(tr heartbeat.Transport, cfg RaftConfig) (*RaftElector, error) {
	if tr == nil {
		return nil, configErr("NewRaft", "nil transport")
	}
	if err := checkID("ID", cfg.ID); err != nil {
		return nil, err
	}
	if len(cfg.Peers) == 0 && !cfg.SingleNode {
		return nil, configErr("Peers", "empty (set SingleNode for a one-node cluster)")
	}
	if err := checkPeers(cfg.ID, cfg.Peers); err != nil {
		return nil, err
	}
	if cfg.HeartbeatInterval < 0 || cfg.ElectionTimeout < 0 || cfg.LeaseTimeout < 0 || cfg.ObserveBuffer < 0 {
		return nil, configErr("RaftConfig", "negative duration or buffer")
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = DefaultElectionTimeout
	}
	if cfg.LeaseTimeout == 0 {
		cfg.LeaseTimeout = cfg.ElectionTimeout * 3 / 4
	}
	if cfg.LeaseTimeout >= cfg.ElectionTimeout {
		return nil, configErr("LeaseTimeout", "%v must be less than ElectionTimeout %v", cfg.LeaseTimeout, cfg.ElectionTimeout)
	}
	if cfg.LeaseTimeout < 2*cfg.HeartbeatInterval {
		return nil, configErr("LeaseTimeout", "%v must be at least 2 × HeartbeatInterval %v", cfg.LeaseTimeout, cfg.HeartbeatInterval)
	}
	if cfg.State == nil {
		cfg.State = &MemoryTermStore{}
	}
	r := &RaftElector{core: newCore(cfg.ID, cfg.ObserveBuffer, cfg.Logger), tr: tr, cfg: cfg, addr: map[string]string{}}
	for _, p := range cfg.Peers {
		r.addr[p.ID] = p.Addr
	}
	r.quorum = (len(cfg.Peers)+1)/2 + 1
	return r, nil
}

// Campaign implements [Elector].
func (r *RaftElector) Campaign(ctx context.Context) (*Term, error) { return r.campaign(ctx) }

// Leader implements [Elector].
func (r *RaftElector) Leader() (Leader, bool) { return r.leaderNow() }

// Observe implements [Elector].
func (r *RaftElector) Observe() *Observation { return r.observe() }

// Close implements [Elector].
func (r *RaftElector) Close() error { r.close(); return nil }

// Resign implements [Elector]: the term ends at once and Run tells the
// followers, who then elect a successor without waiting out their
// election timeout.
func (r *RaftElector) Resign(ctx context.Context) error {
	r.endTerm(nil, ErrResigned)
	return ctxErr(ctx, "resign")
}

// Term returns the highest term this node has seen (0 before Run).
func (r *RaftElector) Term() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.Term
}

// Run implements [Elector]. It returns an error wrapping the
// [TermStore]'s if the state cannot be loaded.
func (r *RaftElector) Run(ctx context.Context) error {
	ctx, end, err := r.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	st, err := r.cfg.State.Load()
	if err != nil {
		return fmt.Errorf("election: raft %s: load state: %w", r.id, err)
	}
	now := time.Now()
	r.mu.Lock()
	r.st = st
	r.mu.Unlock()
	r.role, r.leaderID, r.mine = follower, "", nil
	r.lastHeard = now // no vote within an election timeout of (re)starting
	r.electAt = now.Add(r.randTimeout())

	msgs, errc, stop := pump(ctx, r.tr)
	defer stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wake := r.tick(ctx, time.Now())
		timer.Reset(max(time.Until(wake), 0))
		select {
		case <-ctx.Done():
			r.stepDown(ctx, false)
			return r.exit(ctx, "raft")
		case err := <-errc:
			r.stepDown(ctx, false)
			if ctx.Err() != nil || errors.Is(err, heartbeat.ErrClosed) && r.isClosed() {
				return r.exit(ctx, "raft")
			}
			return fmt.Errorf("election: raft %s: %w", r.id, err)
		case p := <-msgs:
			if m, err := decode(p.Data); err == nil {
				r.handle(ctx, m, time.Now())
			}
		case <-timer.C:
		case <-r.kick:
		}
	}
}

func (r *RaftElector) randTimeout() time.Duration {
	et := r.cfg.ElectionTimeout
	return et + r.randN(et)
}

// randN returns a random duration in [0, d), from r.rng if set.
func (r *RaftElector) randN(d time.Duration) time.Duration {
	if r.rng != nil {
		return time.Duration(r.rng.Int64N(int64(d)))
	}
	return rand.N(d)
}

func (r *RaftElector) save(st TermState) bool {
	if err := r.cfg.State.Save(st); err != nil {
		r.log.Error("election: raft: saving state failed", "id", r.id, "err", err)
		return false
	}
	r.mu.Lock()
	r.st = st
	r.mu.Unlock()
	return true
}

func (r *RaftElector) send(ctx context.Context, to string, m wmsg) {
	addr, ok := r.addr[to]
	if !ok {
		return
	}
	m.from = r.id
	b, err := m.append(r.outBuf[:0])
	if err != nil {
		return
	}
	r.outBuf = b
	if err := r.tr.Send(ctx, addr, b); err != nil && ctx.Err() == nil {
		r.log.Debug("election: raft send failed", "to", to, "err", err)
	}
}

func (r *RaftElector) broadcast(ctx context.Context, m wmsg) {
	for _, p := range r.cfg.Peers {
		r.send(ctx, p.ID, m)
	}
}

// inLease reports whether this node still honours a leader: it leads, or
// heard a leader (or started) less than an election timeout ago.
func (r *RaftElector) inLease(now time.Time) bool {
	return r.role == leader || now.Before(r.lastHeard.Add(r.cfg.ElectionTimeout))
}

// tick runs the timers and returns when it next needs to run.
func (r *RaftElector) tick(ctx context.Context, now time.Time) time.Time {
	if r.role != leader {
		if !now.Before(r.electAt) {
			if r.leaderID != "" {
				r.leaderID = ""
				r.setLeader(Leader{})
			}
			if r.wanting() {
				r.preVote(ctx, now)
			} else {
				r.role = follower
				r.electAt = now.Add(r.randTimeout())
			}
		}
		return r.electAt
	}
	if r.mine != nil && r.mine.Err() != nil {
		r.stepDown(ctx, errors.Is(r.mine.Err(), ErrResigned))
		return r.electAt
	}
	lease := r.lease()
	if r.mine == nil {
		switch {
		case now.Before(lease):
			if r.mine = r.grant(r.st.Term, lease); r.mine == nil && !r.wanting() {
				r.stepDown(ctx, true) // nobody wants it any more
				return r.electAt
			}
		case !now.Before(r.since.Add(r.cfg.ElectionTimeout)):
			r.stepDown(ctx, false) // never reached a majority
			return r.electAt
		}
	} else if !now.Before(lease) {
		r.endTerm(r.mine, ErrLeadershipLost) // check-quorum
		r.stepDown(ctx, false)
		return r.electAt
	}
	if !now.Before(r.next) {
		r.beatSeq++
		r.sent[r.beatSeq%uint64(len(r.sent))] = struct {
			seq uint64
			at  time.Time
		}{r.beatSeq, now}
		r.broadcast(ctx, wmsg{kind: kRaftBeat, term: r.st.Term, id: r.beatSeq})
		r.next = now.Add(r.cfg.HeartbeatInterval)
	}
	wake := r.next
	if r.mine != nil && lease.Before(wake) {
		wake = lease
	}
	if d := r.since.Add(r.cfg.ElectionTimeout); r.mine == nil && d.Before(wake) {
		wake = d
	}
	return wake
}

// lease is the end of the leader's lease: LeaseTimeout after the
// (quorum-1)-th most recent heartbeat send time acknowledged by a
// follower.
func (r *RaftElector) lease() time.Time {
	k := r.quorum - 1
	if k == 0 {
		return time.Now().Add(100 * 365 * 24 * time.Hour)
	}
	ts := make([]time.Time, 0, len(r.acked))
	for _, t := range r.acked {
		ts = append(ts, t)
	}
	if len(ts) < k {
		return time.Time{}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return b.Compare(a) })
	return ts[k-1].Add(r.cfg.LeaseTimeout)
}

func (r *RaftElector) stepDown(ctx context.Context, tell bool) {
	if r.role == leader {
		r.endTerm(r.mine, fmt.Errorf("%w: stepped down", ErrLeadershipLost))
		if tell {
			r.broadcast(ctx, wmsg{kind: kRaftResign, term: r.st.Term})
		}
		r.log.Info("election: raft leader stepped down", "id", r.id, "term", r.st.Term)
	}
	r.role, r.mine, r.leaderID = follower, nil, ""
	r.electAt = time.Now().Add(r.randTimeout())
}

// follow moves to a higher term as a follower.
func (r *RaftElector) follow(ctx context.Context, term uint64) bool {
	if r.role == leader {
		r.stepDown(ctx, false)
	}
	if !r.save(TermState{Term: term}) {
		return false
	}
	r.role, r.leaderID = follower, ""
	r.setLeader(Leader{})
	return true
}

func (r *RaftElector) preVote(ctx context.Context, now time.Time) {
	r.role = preCandidate
	r.votes = map[string]bool{r.id: true}
	r.electAt = now.Add(r.randTimeout())
	if len(r.votes) >= r.quorum {
		r.stand(ctx, now)
		return
	}
	r.broadcast(ctx, wmsg{kind: kRaftPreVote, term: r.st.Term + 1})
}

func (r *RaftElector) stand(ctx context.Context, now time.Time) {
	if !r.save(TermState{Term: r.st.Term + 1, Vote: r.id}) {
		r.role = follower
		return
	}
	r.role = candidate
	r.votes = map[string]bool{r.id: true}
	r.electAt = now.Add(r.randTimeout())
	r.log.Debug("election: raft candidate", "id", r.id, "term", r.st.Term)
	if len(r.votes) >= r.quorum {
		r.lead(ctx, now)
		return
	}
	r.broadcast(ctx, wmsg{kind: kRaftVote, term: r.st.Term})
}

func (r *RaftElector) lead(ctx context.Context, now time.Time) {
	r.role, r.since, r.next = leader, now, now
	r.acked = map[string]time.Time{}
	r.leaderID = r.id
	r.log.Debug("election: raft won the vote", "id", r.id, "term", r.st.Term)
	r.tick(ctx, now)
}

func (r *RaftElector) handle(ctx context.Context, m wmsg, now time.Time) {
	if _, ok := r.addr[m.from]; !ok {
		return
	}
	switch m.kind {
	case kRaftPreVote:
		ok := m.term > r.st.Term && !r.inLease(now)
		r.send(ctx, m.from, wmsg{kind: kRaftPreVoteReply, term: max(r.st.Term, m.term*boolU(ok)), ok: ok})
	case kRaftPreVoteReply:
		switch {
		case m.ok && r.role == preCandidate && m.term == r.st.Term+1:
			r.votes[m.from] = true
			if len(r.votes) >= r.quorum {
				r.stand(ctx, now)
			}
		case !m.ok && m.term > r.st.Term:
			r.follow(ctx, m.term)
		}
	case kRaftVote:
		if m.term < r.st.Term || r.inLease(now) {
			r.send(ctx, m.from, wmsg{kind: kRaftVoteReply, term: r.st.Term})
			return
		}
		if m.term > r.st.Term && !r.follow(ctx, m.term) {
			return
		}
		ok := r.st.Vote == "" || r.st.Vote == m.from
		if ok && r.st.Vote == "" {
			ok = r.save(TermState{Term: r.st.Term, Vote: m.from})
		}
		if ok {
			r.electAt = now.Add(r.randTimeout())
		}
		r.send(ctx, m.from, wmsg{kind: kRaftVoteReply, term: r.st.Term, ok: ok})
	case kRaftVoteReply:
		switch {
		case m.term > r.st.Term:
			r.follow(ctx, m.term)
		case m.ok && r.role == candidate && m.term == r.st.Term:
			r.votes[m.from] = true
			if len(r.votes) >= r.quorum {
				r.lead(ctx, now)
			}
		}
	case kRaftBeat:
		if m.term < r.st.Term {
			r.send(ctx, m.from, wmsg{kind: kRaftBeatReply, term: r.st.Term, id: m.id})
			return
		}
		if m.term > r.st.Term && !r.follow(ctx, m.term) {
			return
		}
		if r.role == leader {
			r.log.Error("election: raft: two leaders in one term", "term", m.term, "me", r.id, "other", m.from)
			return
		}
		r.role, r.leaderID, r.lastHeard = follower, m.from, now
		r.electAt = now.Add(r.randTimeout())
		r.setLeader(Leader{ID: m.from, Token: m.term})
		r.send(ctx, m.from, wmsg{kind: kRaftBeatReply, term: r.st.Term, id: m.id, ok: true})
	case kRaftBeatReply:
		switch {
		case m.term > r.st.Term:
			r.follow(ctx, m.term)
		case m.ok && r.role == leader && m.term == r.st.Term:
			s := r.sent[m.id%uint64(len(r.sent))]
			if s.seq == m.id && s.at.After(r.acked[m.from]) {
				r.acked[m.from] = s.at
				if r.mine != nil {
					r.extend(r.mine, r.lease())
				}
			}
		}
	case kRaftResign:
		if m.term == r.st.Term && r.leaderID == m.from && r.role != leader {
			r.leaderID, r.lastHeard = "", time.Time{}
			r.setLeader(Leader{})
			r.electAt = now.Add(r.randN(r.cfg.ElectionTimeout/2 + 1))
		}
	}
}

func boolU(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// pump reads tr in a goroutine until ctx ends; stop waits for it.
func pump(ctx context.Context, tr heartbeat.Transport) (<-chan heartbeat.Packet, <-chan error, func()) {
	ctx, cancel := context.WithCancel(ctx)
	msgs := make(chan heartbeat.Packet)
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			p, err := tr.Recv(ctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- p:
			case <-ctx.Done():
				return
			}
		}
	}()
	return msgs, errc, func() { cancel(); <-done }
}
