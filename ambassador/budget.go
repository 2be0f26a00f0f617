package ambassador

import (
	"sync"
	"sync/atomic"
	"time"
)

const budgetBuckets = 10

// Budget is a retry budget: it lets retries through only while they stay a
// bounded share of recent traffic, so that a failing upstream does not get
// its load multiplied by its clients' retries. Over the last
// [BudgetConfig.Window], it allows retries up to MinPerSecond*Window +
// Ratio*requests. This is the budget of Finagle and Linkerd; a plain
// per-request attempt limit is not enough, since 3 attempts per request
// still triple the load during an outage.
//
// Requests are counted in ten buckets of Window/10 each, with atomic adds;
// retries are counted under a mutex so that concurrent retries never
// overdraw the budget. A request recorded in the very instant its bucket
// is recycled may be counted in the next window instead. A Budget is safe
// for concurrent use; the zero value is not usable: create one with
// [NewBudget].
type Budget struct {
	ratio  float64
	floor  float64 // MinPerSecond * Window
	width  int64   // nanoseconds per bucket
	mu     sync.Mutex
	bucket [budgetBuckets]budgetBucket
}

type budgetBucket struct {
	epoch    atomic.Int64 // time / width of the bucket's period
	requests atomic.Int64
	retries  atomic.Int64
	_        [40]byte // keep buckets on separate cache lines
}

// NewBudget returns a budget configured by cfg, or a [*ConfigError]. The
// Disable field is ignored: a Budget always enforces.
func NewBudget(cfg BudgetConfig) (*Budget, error) {
	switch {
	case cfg.Ratio < 0:
		return nil, negative("Budget.Ratio")
	case cfg.MinPerSecond < 0:
		return nil, negative("Budget.MinPerSecond")
	case cfg.Window < 0:
		return nil, negative("Budget.Window")
	case cfg.Window != 0 && cfg.Window < 10*time.Millisecond:
		return nil, &ConfigError{Field: "Budget.Window", Reason: "must be at least 10ms"}
	}
	w := orDefault(cfg.Window, defaultBudgetWindow)
	b := &Budget{
		ratio: orDefault(cfg.Ratio, defaultBudgetRatio),
		floor: orDefault(cfg.MinPerSecond, defaultBudgetMin) * w.Seconds(),
		width: int64(w) / budgetBuckets,
	}
	for i := range b.bucket {
		b.bucket[i].epoch.Store(-1)
	}
	return b, nil
}

// Request records a request made now. Call it once per request, not per
// attempt.
func (b *Budget) Request() { b.RequestAt(time.Now()) }

// RequestAt records a request made at t.
func (b *Budget) RequestAt(t time.Time) {
	b.current(t).requests.Add(1)
}

// AllowRetry reports whether a retry (or a hedge) may be made now and, if
// so, records it.
func (b *Budget) AllowRetry() bool { return b.AllowRetryAt(time.Now()) }

// AllowRetryAt is [Budget.AllowRetry] at time t.
func (b *Budget) AllowRetryAt(t time.Time) bool {
	cur := b.current(t)
	b.mu.Lock()
	defer b.mu.Unlock()
	req, ret := b.sum(t)
	if float64(ret+1) > b.floor+b.ratio*float64(req) {
		return false
	}
	cur.retries.Add(1)
	return true
}

// Stats returns the requests and retries counted in the window that ends
// now.
func (b *Budget) Stats() (requests, retries int64) { return b.sum(time.Now()) }

// current returns the bucket for t, recycling it if it holds an older
// period.
func (b *Budget) current(t time.Time) *budgetBucket {
	e := max(t.UnixNano()/b.width, 0)
	bk := &b.bucket[e%budgetBuckets]
	if bk.epoch.Load() != e {
		b.rotate(bk, e)
	}
	return bk
}

func (b *Budget) rotate(bk *budgetBucket, e int64) {
	b.mu.Lock()
	if bk.epoch.Load() < e {
		bk.requests.Store(0)
		bk.retries.Store(0)
		bk.epoch.Store(e)
	}
	b.mu.Unlock()
}

func (b *Budget) sum(t time.Time) (requests, retries int64) {
	e := t.UnixNano() / b.width
	for i := range b.bucket {
		bk := &b.bucket[i]
		if ep := bk.epoch.Load(); ep > e-budgetBuckets && ep <= e {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	return requests, retries
}
