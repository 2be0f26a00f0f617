package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"
)

// Defaults of [LeaseConfig], those of client-go's leader election.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	// DefaultLeaseKey is the key [LeaseElector] contends for when
	// [LeaseConfig].Key is empty.
	DefaultLeaseKey = "leader"
	// DefaultSequencePrefix is the key prefix under which
	// [SequenceElector] candidates queue when [LeaseConfig].Key is empty.
	DefaultSequencePrefix = "election/"
)

// LeaseConfig configures a [LeaseElector] and a [SequenceElector]. Zero
// fields take the documented defaults; only ID is required.
//
// Timing. A leader renews every RetryPeriod. Its term's context ends
// RenewDeadline after it sent its last successful renewal, while the
// store keeps the lease until at least LeaseDuration after that send, so
// terms never overlap as long as the leader's clock runs no slower than
// the store's by more than (LeaseDuration - RenewDeadline) /
// LeaseDuration (a third at the defaults). After a leader crashes, a
// waiting candidate takes over within LeaseDuration of the leader's last
// renewal plus one store round trip (candidates watch the lease, they do
// not poll), and in the worst case a RetryPeriod later when the watch
// itself is lost.
type LeaseConfig struct {
	// ID names this node. Required, at most [MaxIDLen] bytes. Two live
	// electors may share an ID: each holds the store under its own
	// session.
	ID string
	// Key is the lease's key ([LeaseElector]) or the prefix of the
	// candidates' keys ([SequenceElector]). "" means [DefaultLeaseKey] or
	// [DefaultSequencePrefix].
	Key string
	// LeaseDuration is the TTL of the lease (or the candidate's entry).
	// 0 means [DefaultLeaseDuration] (15 s).
	LeaseDuration time.Duration
	// RenewDeadline is how long after its last successful renewal a
	// leader's term lasts. It must be less than LeaseDuration and more
	// than 1.2 × RetryPeriod. 0 means [DefaultRenewDeadline] (10 s).
	RenewDeadline time.Duration
	// RetryPeriod is the renewal period and the period of retries and
	// re-reads. 0 means [DefaultRetryPeriod] (2 s).
	RetryPeriod time.Duration
	// ObserveBuffer is each [Observation]'s queue length. 0 means
	// [DefaultObserveBuffer].
	ObserveBuffer int
	// Logger receives elections, losses and store errors. nil discards.
	Logger *slog.Logger
}

func (c *LeaseConfig) validate(defKey string) error {
	if err := checkID("ID", c.ID); err != nil {
		return err
	}
	if c.Key == "" {
		c.Key = defKey
	}
	if len(c.Key)+len(c.ID)+17 > MaxIDLen {
		return configErr("Key", "key and ID too long")
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d < 0 {
			return configErr(name, "negative (%v)", *d)
		}
		if *d == 0 {
			*d = v
		}
		return nil
	}
	if err := errors.Join(def(&c.LeaseDuration, DefaultLeaseDuration, "LeaseDuration"),
		def(&c.RenewDeadline, DefaultRenewDeadline, "RenewDeadline"),
		def(&c.RetryPeriod, DefaultRetryPeriod, "RetryPeriod")); err != nil {
		return err
	}
	if c.LeaseDuration <= c.RenewDeadline {
		return configErr("LeaseDuration", "%v must be greater than RenewDeadline %v", c.LeaseDuration, c.RenewDeadline)
	}
	if float64(c.RenewDeadline) <= 1.2*float64(c.RetryPeriod) {
		return configErr("RenewDeadline", "%v must be greater than 1.2 × RetryPeriod %v", c.RenewDeadline, c.RetryPeriod)
	}
	if c.ObserveBuffer < 0 {
		return configErr("ObserveBuffer", "negative (%d)", c.ObserveBuffer)
	}
	return nil
}

// holderName is the lease holder for a node ID in this process's
// session; holderID inverts it.
func holderName(id string) string { return fmt.Sprintf("%s#%016x", id, rand.Uint64()) }

func holderID(h string) string {
	if i := strings.LastIndexByte(h, '#'); i >= 0 {
		return h[:i]
	}
	return h
}

// LeaseElector elects a leader by holding one lease in a [LeaseStore],
// the way client-go's leaderelection, Consul sessions and etcd's
// election recipe do, but with the lease's epoch as a fencing token and a
// term context that ends before the lease can pass to anyone else. See
// [LeaseConfig] for the timing guarantees. It is safe for concurrent use.
type LeaseElector struct {
	*core
	store  LeaseStore
	cfg    LeaseConfig
	holder string
}

var _ Elector = (*LeaseElector)(nil)

// NewLease returns a lease elector on store, or an error wrapping
// [ErrInvalidConfig] naming the bad field.
func NewLease(store LeaseStore, cfg LeaseConfig) (*LeaseElector, error) {
	if store == nil {
		return nil, configErr("store", "nil LeaseStore")
	}
	if err := cfg.validate(DefaultLeaseKey); err != nil {
		return nil, err
	}
	return &LeaseElector{core: newCore(cfg.ID, cfg.ObserveBuffer, cfg.Logger), store: store, cfg: cfg, holder: holderName(cfg.ID)}, nil
}

// Campaign implements [Elector].
func (e *LeaseElector) Campaign(ctx context.Context) (*Term, error) { return e.campaign(ctx) }

// Leader implements [Elector].
func (e *LeaseElector) Leader() (Leader, bool) { return e.leaderNow() }

// Observe implements [Elector].
func (e *LeaseElector) Observe() *Observation { return e.observe() }

// Close implements [Elector]. It releases the lease this node holds.
func (e *LeaseElector) Close() error { e.close(); return nil }

// Resign implements [Elector]: it ends the term and releases the lease.
func (e *LeaseElector) Resign(ctx context.Context) error {
	t := e.endTerm(nil, ErrResigned)
	if t == nil {
		return nil
	}
	return e.store.Release(ctx, e.cfg.Key, t.Token())
}

// Run implements [Elector].
func (e *LeaseElector) Run(ctx context.Context) error {
	ctx, end, err := e.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	var held uint64 // epoch of the lease we hold, 0 if none
	defer func() { e.release(held) }()
	var lastSent time.Time
	for ctx.Err() == nil {
		now := time.Now()
		term := e.current()
		if held != 0 && term == nil {
			e.release(held) // resigned, lost or never granted
			held = 0
		}
		switch {
		case term != nil:
			if wait := lastSent.Add(e.cfg.RetryPeriod).Sub(now); wait > 0 {
				e.pause(ctx, wait, nil)
				continue
			}
			sent := time.Now()
			rctx, cancel := context.WithDeadline(ctx, term.Deadline())
			_, err := e.store.Renew(rctx, e.cfg.Key, held, e.cfg.LeaseDuration)
			cancel()
			switch {
			case err == nil:
				lastSent = sent
				e.extend(term, sent.Add(e.cfg.RenewDeadline))
			case errors.Is(err, ErrLeaseLost):
				e.endTerm(term, fmt.Errorf("%w: %w", ErrLeaseLost, err))
			default:
				e.log.Warn("election: renew failed", "id", e.id, "err", err)
				lastSent = sent // retry a RetryPeriod later; the deadline still holds
			}
		case e.wanting():
			sent := time.Now()
			l, err := e.store.Acquire(ctx, e.cfg.Key, e.holder, e.cfg.LeaseDuration)
			switch {
			case err == nil:
				held = l.Epoch
				if t := e.grant(l.Epoch, sent.Add(e.cfg.RenewDeadline)); t != nil {
					lastSent = sent
				}
			case errors.Is(err, ErrLeaseHeld):
				e.setLeader(Leader{ID: holderID(l.Holder), Token: l.Epoch})
				e.pause(ctx, e.cfg.RetryPeriod, func(ctx context.Context) { _ = e.store.Watch(ctx, e.cfg.Key, l.Epoch) })
			default:
				e.logErr("acquire", err)
				e.pause(ctx, e.cfg.RetryPeriod, nil)
			}
		default:
			l, err := e.store.Get(ctx, e.cfg.Key)
			switch {
			case err == nil:
				e.setLeader(Leader{ID: holderID(l.Holder), Token: l.Epoch})
				e.pause(ctx, e.cfg.RetryPeriod, func(ctx context.Context) { _ = e.store.Watch(ctx, e.cfg.Key, l.Epoch) })
			case errors.Is(err, ErrNoLease):
				e.setLeader(Leader{})
				e.pause(ctx, e.cfg.RetryPeriod, nil)
			default:
				e.logErr("get", err)
				e.pause(ctx, e.cfg.RetryPeriod, nil)
			}
		}
	}
	return e.exit(ctx, "lease elector")
}

func (e *LeaseElector) logErr(op string, err error) {
	if !errors.Is(err, context.Canceled) {
		e.log.Warn("election: store "+op+" failed", "id", e.id, "err", err)
	}
}

// release ends our term, then gives the lease back, best effort.
func (e *LeaseElector) release(epoch uint64) {
	if epoch == 0 {
		return
	}
	e.endTerm(nil, ErrLeadershipLost)
	// A new session: if the release is lost, the old lease must expire
	// before this node can hold the key again, so its epoch, the old
	// term's token, is never granted twice.
	e.holder = holderName(e.id)
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RetryPeriod)
	defer cancel()
	if err := e.store.Release(ctx, e.cfg.Key, epoch); err != nil {
		e.log.Warn("election: release failed", "id", e.id, "err", err)
	}
}

// pause waits up to d, returning early when ctx ends, when the elector
// is kicked (a campaign started or stopped, the term ended) or when
// watch, if given, returns. watch runs in a goroutine pause waits for.
func (c *core) pause(ctx context.Context, d time.Duration, watch func(ctx context.Context)) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done chan struct{}
	if watch != nil {
		done = make(chan struct{})
		go func() { defer close(done); watch(wctx) }()
	}
	select {
	case <-wctx.Done():
	case <-c.kick:
	case <-done:
	}
	cancel()
	if done != nil {
		<-done
	}
}
