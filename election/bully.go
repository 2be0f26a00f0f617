package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/distkit/distkit/heartbeat"
)

// Defaults of [BullyConfig].
const (
	DefaultAnswerTimeout    = 500 * time.Millisecond
	DefaultAnnounceInterval = time.Second
)

// BullyConfig configures a [BullyElector]. Zero fields take the
// documented defaults; ID and Peers are required.
//
// Timing. After the leader crashes, the next greatest live node leads
// once its [heartbeat.Monitor] declares the leader Dead (the detector's
// suspicion time plus DeadAfter) and AnswerTimeout has passed without an
// answer from a greater node; each greater node that answers and then
// fails adds CoordinatorTimeout and another round. A term has no
// deadline, so clock rates do not matter and no skew bound applies:
// Bully's safety rests on the [Fence] alone.
type BullyConfig struct {
	// ID names this node; it must also be its heartbeat ID. Among the
	// live candidates the one with the greatest ID (in byte order) leads.
	// Required, at most [MaxIDLen] bytes.
	ID string
	// Peers are the other members, at most 65534; their IDs must be the
	// IDs the Monitor tracks them by.
	Peers []Peer
	// AnswerTimeout is how long a node that started an election waits
	// for a greater node to answer before it declares itself. 0 means
	// [DefaultAnswerTimeout] (500 ms).
	AnswerTimeout time.Duration
	// CoordinatorTimeout is how long a node that was answered waits for
	// the coordinator's announcement before it starts over. 0 means
	// 2 × AnswerTimeout.
	CoordinatorTimeout time.Duration
	// AnnounceInterval is how often the leader repeats its announcement,
	// so nodes that missed it, or came back, learn of it. 0 means
	// [DefaultAnnounceInterval] (1 s).
	AnnounceInterval time.Duration
	// State persists the highest term seen, so a restarted node never
	// reuses a token. nil means a fresh [MemoryTermStore].
	State TermStore
	// ObserveBuffer is each [Observation]'s queue length. 0 means
	// [DefaultObserveBuffer].
	ObserveBuffer int
	// Logger receives elections. nil discards them.
	Logger *slog.Logger
}

type bullyRole uint8

const (
	bullyIdle bullyRole = iota
	bullyElecting
	bullyWaiting
	bullyLeading
)

// BullyElector is the Bully algorithm (Garcia-Molina, 1982): the live
// candidate with the greatest ID leads. A node that finds the leader
// failed, through a [heartbeat.Monitor] it is given, challenges every
// greater node; if none answers within AnswerTimeout it announces itself
// coordinator, and a greater node that answers takes the election over.
// A node that comes back with a greater ID bullies its way to the lead.
//
// Bully is NOT safe under partitions: it trusts the failure detector, and
// on each side of a partition (or past a lossy link, or a long pause) the
// greatest node it can reach leads, so two leaders can act at once, and
// it has no lease, so a term's context ends only when the node learns of
// a greater leader or a higher term. What it does guarantee is unique
// fencing tokens: a token is term × 65536 + the node's rank, terms are
// persisted and grow with every term a node hears of, so no token is ever
// granted twice, a node's own tokens strictly increase, and a leader
// elected after another (knowing its term) holds a greater token. A
// [Fence] in front of the resource therefore still refuses the writes of
// whichever leader is older once a newer one has written. Use it only
// with such a fence, or where two leaders for a while are harmless. It is
// safe for concurrent use.
type BullyElector struct {
	*core
	tr   heartbeat.Transport
	mon  *heartbeat.Monitor
	cfg  BullyConfig
	addr map[string]string
	rank uint64

	// Owned by Run's goroutine.
	st       TermState
	role     bullyRole
	leader   Leader
	until    time.Time // election or coordinator deadline
	announce time.Time
	myTerm   uint64
	mine     *Term
	dead     map[string]bool
	outBuf   []byte
}

var _ Elector = (*BullyElector)(nil)

// NewBully returns a Bully elector speaking on tr (which it does not
// close) and learning of failures from mon, which the caller runs and
// which must track every peer by its ID. It returns an error wrapping
// [ErrInvalidConfig] naming the bad field.
func NewBully(tr heartbeat.Transport, mon *heartbeat.Monitor, cfg BullyConfig) (*BullyElector, error) {
	if tr == nil || mon == nil {
		return nil, configErr("NewBully", "nil transport or monitor")
	}
	if err := checkID("ID", cfg.ID); err != nil {
		return nil, err
	}
	if len(cfg.Peers) == 0 {
		return nil, configErr("Peers", "empty (Bully needs other members)")
	}
	if len(cfg.Peers) > 65534 {
		return nil, configErr("Peers", "%d peers, at most 65534", len(cfg.Peers))
	}
	if err := checkPeers(cfg.ID, cfg.Peers); err != nil {
		return nil, err
	}
	if cfg.AnswerTimeout < 0 || cfg.CoordinatorTimeout < 0 || cfg.AnnounceInterval < 0 || cfg.ObserveBuffer < 0 {
		return nil, configErr("BullyConfig", "negative duration or buffer")
	}
	if cfg.AnswerTimeout == 0 {
		cfg.AnswerTimeout = DefaultAnswerTimeout
	}
	if cfg.CoordinatorTimeout == 0 {
		cfg.CoordinatorTimeout = 2 * cfg.AnswerTimeout
	}
	if cfg.AnnounceInterval == 0 {
		cfg.AnnounceInterval = DefaultAnnounceInterval
	}
	if cfg.State == nil {
		cfg.State = &MemoryTermStore{}
	}
	b := &BullyElector{core: newCore(cfg.ID, cfg.ObserveBuffer, cfg.Logger), tr: tr, mon: mon, cfg: cfg, addr: map[string]string{}}
	ids := []string{cfg.ID}
	for _, p := range cfg.Peers {
		b.addr[p.ID] = p.Addr
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	b.rank = uint64(slices.Index(ids, cfg.ID) + 1)
	return b, nil
}

// Campaign implements [Elector]. Only the greatest live candidate is
// granted a term; the others wait.
func (b *BullyElector) Campaign(ctx context.Context) (*Term, error) { return b.campaign(ctx) }

// Leader implements [Elector].
func (b *BullyElector) Leader() (Leader, bool) { return b.leaderNow() }

// Observe implements [Elector].
func (b *BullyElector) Observe() *Observation { return b.observe() }

// Close implements [Elector].
func (b *BullyElector) Close() error { b.close(); return nil }

// Resign implements [Elector]: the term ends and Run tells the others,
// who elect the next greatest candidate.
func (b *BullyElector) Resign(ctx context.Context) error {
	b.endTerm(nil, ErrResigned)
	return ctxErr(ctx, "resign")
}

// Run implements [Elector]. It returns an error wrapping the
// [TermStore]'s if the state cannot be loaded.
func (b *BullyElector) Run(ctx context.Context) error {
	ctx, end, err := b.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	st, err := b.cfg.State.Load()
	if err != nil {
		return fmt.Errorf("election: bully %s: load state: %w", b.id, err)
	}
	b.st, b.role, b.leader, b.mine = st, bullyIdle, Leader{}, nil
	b.dead = map[string]bool{}

	sub := b.mon.Subscribe()
	defer sub.Close()
	seen := map[string]uint64{}
	for _, ps := range b.mon.Peers() {
		seen[ps.ID] = ps.Transition
		b.dead[ps.ID] = ps.State == heartbeat.Dead
	}
	trans := make(chan heartbeat.Transition)
	var wg sync.WaitGroup
	tctx, tcancel := context.WithCancel(ctx)
	defer func() { tcancel(); wg.Wait() }()
	wg.Go(func() {
		for {
			t, err := sub.Next(tctx)
			if err != nil {
				return
			}
			select {
			case trans <- t:
			case <-tctx.Done():
				return
			}
		}
	})
	msgs, errc, stop := pump(ctx, b.tr)
	defer stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wake := b.tick(ctx, time.Now())
		if wake.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(max(time.Until(wake), 0))
		}
		select {
		case <-ctx.Done():
			b.stepDown(ctx, nil)
			return b.exit(ctx, "bully")
		case err := <-errc:
			b.stepDown(ctx, nil)
			if ctx.Err() != nil || errors.Is(err, heartbeat.ErrClosed) && b.isClosed() {
				return b.exit(ctx, "bully")
			}
			return fmt.Errorf("election: bully %s: %w", b.id, err)
		case t := <-trans:
			if t.Seq > seen[t.Peer] {
				b.onTransition(ctx, t, time.Now())
			}
		case p := <-msgs:
			if m, err := decode(p.Data); err == nil {
				b.handle(ctx, m, time.Now())
			}
		case <-timer.C:
		case <-b.kick:
		}
	}
}

func (b *BullyElector) send(ctx context.Context, to string, m wmsg) {
	addr, ok := b.addr[to]
	if !ok {
		return
	}
	m.from = b.id
	buf, err := m.append(b.outBuf[:0])
	if err != nil {
		return
	}
	b.outBuf = buf
	if err := b.tr.Send(ctx, addr, buf); err != nil && ctx.Err() == nil {
		b.log.Debug("election: bully send failed", "to", to, "err", err)
	}
}

func (b *BullyElector) broadcast(ctx context.Context, m wmsg) {
	for _, p := range b.cfg.Peers {
		b.send(ctx, p.ID, m)
	}
}

func (b *BullyElector) tick(ctx context.Context, now time.Time) time.Time {
	switch b.role {
	case bullyLeading:
		if err := b.mine.Err(); err != nil {
			b.stepDown(ctx, err)
			return b.tick(ctx, now)
		}
		if !now.Before(b.announce) {
			b.broadcast(ctx, wmsg{kind: kBullyCoordinator, term: b.myTerm, token: b.mine.Token()})
			b.announce = now.Add(b.cfg.AnnounceInterval)
		}
		return b.announce
	case bullyElecting:
		if !now.Before(b.until) {
			b.coordinate(ctx, now)
			return b.tick(ctx, now)
		}
		return b.until
	case bullyWaiting:
		if !now.Before(b.until) {
			b.elect(ctx, now)
			return b.tick(ctx, now)
		}
		return b.until
	}
	if b.wanting() && (b.leader.ID == "" || b.leader.ID < b.id) {
		b.elect(ctx, now)
		if b.role != bullyIdle {
			return b.tick(ctx, now)
		}
	}
	return time.Time{}
}

// elect challenges every greater node not known dead.
func (b *BullyElector) elect(ctx context.Context, now time.Time) {
	if !b.wanting() {
		b.role = bullyIdle
		return
	}
	sent := false
	for _, p := range b.cfg.Peers {
		if p.ID > b.id && !b.dead[p.ID] {
			b.send(ctx, p.ID, wmsg{kind: kBullyElection, term: b.st.Term})
			sent = true
		}
	}
	if !sent {
		b.coordinate(ctx, now)
		return
	}
	b.role, b.until = bullyElecting, now.Add(b.cfg.AnswerTimeout)
}

// coordinate makes this node the leader in a new term.
func (b *BullyElector) coordinate(ctx context.Context, now time.Time) {
	b.role = bullyIdle
	st := TermState{Term: b.st.Term + 1}
	if err := b.cfg.State.Save(st); err != nil {
		b.log.Error("election: bully: saving state failed", "id", b.id, "err", err)
		return
	}
	b.st = st
	t := b.grant(st.Term<<16|b.rank, time.Time{})
	if t == nil {
		return
	}
	b.role, b.mine, b.myTerm, b.announce = bullyLeading, t, st.Term, now
	b.leader = t.Leader()
}

// stepDown ends this node's leadership; cause is the term's end cause if
// it already ended.
func (b *BullyElector) stepDown(ctx context.Context, cause error) {
	if b.role == bullyLeading {
		if cause == nil {
			b.endTerm(b.mine, fmt.Errorf("%w: stepped down", ErrLeadershipLost))
		}
		if errors.Is(cause, ErrResigned) {
			b.broadcast(ctx, wmsg{kind: kBullyResign, term: b.myTerm, token: b.mine.Token()})
		}
		b.mine, b.leader = nil, Leader{}
	}
	b.role = bullyIdle
}

// learn adopts a higher term; a leader of a lower term steps down and
// runs again, so that its successor's token is above every token seen.
func (b *BullyElector) learn(ctx context.Context, term uint64, now time.Time) {
	if term <= b.st.Term {
		return
	}
	st := TermState{Term: term}
	if err := b.cfg.State.Save(st); err != nil {
		b.log.Error("election: bully: saving state failed", "id", b.id, "err", err)
		return
	}
	b.st = st
	if b.role == bullyLeading {
		b.stepDown(ctx, nil)
		b.elect(ctx, now)
	}
}

func (b *BullyElector) setView(l Leader) {
	b.leader = l
	b.setLeader(l)
}

func (b *BullyElector) onTransition(ctx context.Context, t heartbeat.Transition, now time.Time) {
	if _, ok := b.addr[t.Peer]; !ok {
		return
	}
	b.dead[t.Peer] = t.To == heartbeat.Dead
	if t.To == heartbeat.Dead && b.leader.ID == t.Peer {
		b.setView(Leader{})
		if b.role == bullyIdle {
			b.elect(ctx, now)
		}
	}
}

func (b *BullyElector) handle(ctx context.Context, m wmsg, now time.Time) {
	if _, ok := b.addr[m.from]; !ok {
		return
	}
	b.learn(ctx, m.term, now)
	switch m.kind {
	case kBullyElection:
		if m.from > b.id {
			return
		}
		if b.role == bullyLeading {
			b.send(ctx, m.from, wmsg{kind: kBullyAnswer, term: b.st.Term})
			b.send(ctx, m.from, wmsg{kind: kBullyCoordinator, term: b.myTerm, token: b.mine.Token()})
			return
		}
		if b.wanting() {
			b.send(ctx, m.from, wmsg{kind: kBullyAnswer, term: b.st.Term})
			if b.role == bullyIdle {
				b.elect(ctx, now)
			}
		}
	case kBullyAnswer:
		if m.from > b.id && (b.role == bullyElecting || b.role == bullyWaiting) {
			b.role, b.until = bullyWaiting, now.Add(b.cfg.CoordinatorTimeout)
		}
	case kBullyCoordinator:
		if m.term < b.st.Term {
			// A leader with a stale token: make it run again above ours.
			b.send(ctx, m.from, wmsg{kind: kBullyElection, term: b.st.Term})
			return
		}
		if m.from > b.id || !b.wanting() && b.role != bullyLeading {
			if b.role == bullyLeading {
				b.stepDown(ctx, nil)
			}
			b.role = bullyIdle
			b.setView(Leader{ID: m.from, Token: m.token})
			return
		}
		switch b.role { // a lesser node leads: bully it
		case bullyLeading:
			b.send(ctx, m.from, wmsg{kind: kBullyCoordinator, term: b.myTerm, token: b.mine.Token()})
		case bullyIdle:
			b.elect(ctx, now)
		}
	case kBullyResign:
		if b.leader.ID == m.from && b.leader.Token == m.token {
			b.setView(Leader{})
		}
	}
}
