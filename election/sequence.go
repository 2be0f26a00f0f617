package election

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SequenceElector is ZooKeeper's leader-election recipe on a
// [LeaseStore]: each candidate holds its own entry under a shared prefix
// (an ephemeral node: a lease it keeps renewing), entries are ordered by
// the epoch the store assigned them (the sequential node's number), the
// candidate with the lowest live entry leads, and every other candidate
// watches only its predecessor, so a leader's failure wakes one node,
// not the herd. The leader's entry epoch is its fencing token: entries
// only ever join at the back, so each new leader's token is larger than
// every earlier one.
//
// Unlike the single lease, candidates queue in arrival order (fair), and
// a candidate whose own entry expires (a pause, a partition from the
// store) loses its place: its pending Campaign calls fail promptly with
// [ErrLeaseLost] rather than waiting on a dead session, the mistake of
// etcd's Campaign. Timing is as for [LeaseElector], with LeaseDuration
// as the entry's TTL. It is safe for concurrent use.
type SequenceElector struct {
	*core
	store  LeaseStore
	cfg    LeaseConfig
	holder string
}

var _ Elector = (*SequenceElector)(nil)

// NewSequence returns a sequence elector on store, or an error wrapping
// [ErrInvalidConfig] naming the bad field.
func NewSequence(store LeaseStore, cfg LeaseConfig) (*SequenceElector, error) {
	if store == nil {
		return nil, configErr("store", "nil LeaseStore")
	}
	if err := cfg.validate(DefaultSequencePrefix); err != nil {
		return nil, err
	}
	return &SequenceElector{core: newCore(cfg.ID, cfg.ObserveBuffer, cfg.Logger), store: store, cfg: cfg}, nil
}

// Campaign implements [Elector]. Besides the usual errors it returns one
// wrapping [ErrLeaseLost] when this candidate's entry expired while it
// waited; calling Campaign again queues it anew, at the back.
func (e *SequenceElector) Campaign(ctx context.Context) (*Term, error) { return e.campaign(ctx) }

// Leader implements [Elector].
func (e *SequenceElector) Leader() (Leader, bool) { return e.leaderNow() }

// Observe implements [Elector].
func (e *SequenceElector) Observe() *Observation { return e.observe() }

// Close implements [Elector]. It deletes this node's entry.
func (e *SequenceElector) Close() error { e.close(); return nil }

// Resign implements [Elector]: it ends the term; Run then deletes the
// entry, waking the next candidate.
func (e *SequenceElector) Resign(ctx context.Context) error {
	e.endTerm(nil, ErrResigned)
	return ctxErr(ctx, "resign")
}

// Run implements [Elector].
func (e *SequenceElector) Run(ctx context.Context) error {
	ctx, end, err := e.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	var (
		own      *Lease    // our entry, nil if none
		lastSent time.Time // send time of its last successful renewal
		deadline time.Time // lastSent + RenewDeadline
		granted  bool      // a term was granted on own
	)
	drop := func(cause error) {
		if own == nil {
			return
		}
		e.endTerm(nil, cause)
		if !granted && cause != nil {
			e.failCampaigns(fmt.Errorf("%w: entry %s expired while campaigning", ErrLeaseLost, own.Key))
		}
		rctx, cancel := context.WithTimeout(context.Background(), e.cfg.RetryPeriod)
		if err := e.store.Release(rctx, own.Key, own.Epoch); err != nil {
			e.log.Warn("election: release failed", "id", e.id, "err", err)
		}
		cancel()
		own, granted = nil, false
	}
	defer func() { drop(nil) }()
	for ctx.Err() == nil {
		now := time.Now()
		term := e.current()
		switch {
		case own != nil && !now.Before(deadline):
			drop(ErrLeaseLost)
		case own != nil && granted && term == nil:
			drop(nil) // resigned or lost: leave the queue
		case own != nil && !granted && !e.wanting():
			drop(nil) // the campaign was cancelled
		case own == nil && e.wanting():
			e.holder = holderName(e.id)
			sent := time.Now()
			l, err := e.store.Acquire(ctx, e.cfg.Key+e.holder, e.holder, e.cfg.LeaseDuration)
			if err != nil {
				e.logErr("acquire", err)
				e.pause(ctx, e.cfg.RetryPeriod, nil)
				continue
			}
			own, lastSent, deadline = &l, sent, sent.Add(e.cfg.RenewDeadline)
		}
		if own != nil && !time.Now().Before(lastSent.Add(e.cfg.RetryPeriod)) {
			sent := time.Now()
			rctx, cancel := context.WithDeadline(ctx, deadline)
			_, err := e.store.Renew(rctx, own.Key, own.Epoch, e.cfg.LeaseDuration)
			cancel()
			switch {
			case err == nil:
				lastSent, deadline = sent, sent.Add(e.cfg.RenewDeadline)
				if term != nil {
					e.extend(term, deadline)
				}
			case errors.Is(err, ErrLeaseLost):
				drop(err)
				continue
			default:
				e.logErr("renew", err)
				lastSent = sent
			}
		}
		list, err := e.store.List(ctx, e.cfg.Key)
		if err != nil {
			e.logErr("list", err)
			e.pause(ctx, e.cfg.RetryPeriod, nil)
			continue
		}
		if len(list) == 0 {
			e.setLeader(Leader{})
		} else {
			e.setLeader(Leader{ID: holderID(list[0].Holder), Token: list[0].Epoch})
		}
		var pred *Lease
		if own != nil {
			i := indexEpoch(list, own.Epoch)
			switch {
			case i < 0:
				drop(ErrLeaseLost) // expired or deleted behind our back
				continue
			case i == 0 && !granted:
				granted = e.grant(own.Epoch, deadline) != nil
			case i > 0:
				pred = &list[i-1]
			}
		}
		wait := e.cfg.RetryPeriod
		if own != nil {
			wait = max(0, time.Until(lastSent.Add(e.cfg.RetryPeriod)))
		}
		switch {
		case pred != nil:
			p := *pred
			e.pause(ctx, wait, func(ctx context.Context) { _ = e.store.Watch(ctx, p.Key, p.Epoch) })
		case len(list) > 0 && own == nil:
			l := list[0]
			e.pause(ctx, wait, func(ctx context.Context) { _ = e.store.Watch(ctx, l.Key, l.Epoch) })
		default:
			e.pause(ctx, wait, nil)
		}
	}
	return e.exit(ctx, "sequence elector")
}

func indexEpoch(list []Lease, epoch uint64) int {
	for i, l := range list {
		if l.Epoch == epoch {
			return i
		}
	}
	return -1
}

func (e *SequenceElector) logErr(op string, err error) {
	if !errors.Is(err, context.Canceled) {
		e.log.Warn("election: store "+op+" failed", "id", e.id, "err", err)
	}
}
