package ambassador

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// hedgeRace runs one attempt and up to maxHedges copies of it, Delay apart,
// and keeps the first good result.
type hedgeRace struct {
	t    *Transport
	c    *call
	n    int
	done chan struct{} // closed once decided

	mu       sync.Mutex
	decided  bool
	running  int
	launched int // copies sent
	cancels  []context.CancelCauseFunc
	timer    *time.Timer
	best     result // the winner, or the latest failure
	has      bool
}

// race makes attempt n as a hedged attempt: the first copy runs on the
// caller's goroutine; each further copy runs on its timer's goroutine.
func (t *Transport) race(c *call, r *http.Request, n int) result {
	h := &hedgeRace{t: t, c: c, n: n, done: make(chan struct{}), running: 1}
	ctx, cancel := context.WithCancelCause(c.ctx)
	h.cancels = append(h.cancels, cancel)
	h.mu.Lock()
	h.timer = time.AfterFunc(t.hedgeDelay, h.launch)
	h.mu.Unlock()
	h.finish(t.try(ctx, c, r, n, 0, cancel))
	<-h.done
	return h.best
}

// good reports whether res ends the race: a response that is not to be
// retried.
func (h *hedgeRace) good(res *result) bool {
	return res.outcome == OutcomeResponse && !h.t.s.retryStatuses.has(res.resp.StatusCode)
}

// finish records the result of one copy.
func (h *hedgeRace) finish(res result) {
	h.mu.Lock()
	h.running--
	if h.decided {
		h.mu.Unlock()
		h.t.observeAttempt(h.c, &res, h.n, false, 0)
		discard(&res)
		return
	}
	var drop result
	dropped := false
	if h.has {
		drop, dropped = h.best, true
	}
	h.best, h.has = res, true
	var losers []context.CancelCauseFunc
	if h.good(&res) || h.running == 0 {
		h.decided = true
		h.timer.Stop()
		for i, cf := range h.cancels {
			if i != res.hedge {
				losers = append(losers, cf)
			}
		}
		close(h.done)
	}
	h.mu.Unlock()
	if dropped {
		h.t.observeAttempt(h.c, &drop, h.n, false, 0)
		discard(&drop)
	}
	for _, cf := range losers {
		cf(errHedgeLost)
	}
}

// launch sends the next copy, on the timer's goroutine.
func (h *hedgeRace) launch() {
	h.mu.Lock()
	if h.decided {
		h.mu.Unlock()
		return
	}
	if h.t.budget != nil && !h.t.budget.AllowRetry() {
		h.c.denied = true
		h.mu.Unlock()
		return
	}
	h.launched++
	h.c.hedges++
	h.running++
	k := h.launched
	ctx, cancel := context.WithCancelCause(h.c.ctx)
	h.cancels = append(h.cancels, cancel)
	if h.launched < h.t.maxHedges {
		h.timer.Reset(h.t.hedgeDelay)
	}
	h.mu.Unlock()

	r, err := h.c.nextRequest()
	if err != nil {
		cancel(errCanceled)
		h.finish(result{err: err, outcome: OutcomeError, hedge: k})
		return
	}
	h.finish(h.t.try(ctx, h.c, r, h.n, k, cancel))
}
