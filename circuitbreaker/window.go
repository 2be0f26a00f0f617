package circuitbreaker

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
)

// Outcome codes recorded in windows. Bit 0 marks a recorded call.
const (
	outOK   uint32 = 1
	outFail uint32 = 1 | 2
	outSlow uint32 = 1 | 4
)

// tally is what a window holds at one moment.
type tally struct {
	calls, failures, slow uint64
}

// countWindow holds the outcomes of the last n calls in a ring of slots.
// Totals are kept in step with the slots: every change of a slot is a Swap
// whose difference is added to the totals, so the totals always equal the
// sum of the slots even when calls race on a slot. A success that finds a
// success in its slot writes nothing, so the closed-state success path
// (written out in episode.ok, to be inlined) is one atomic add and one
// load.
type countWindow struct {
	seq atomic.Uint64
	_   [56]byte
	// failures and slow change only on failures and slow calls.
	failures atomic.Uint64
	slow     atomic.Uint64
	_        [48]byte
	n        uint64
	magic    uint64 // for fastmod: (2^64-1)/n + 1
	slots    []atomic.Uint32
}

func newCountWindow(n int) *countWindow {
	return &countWindow{
		n:     uint64(n),
		magic: ^uint64(0)/uint64(n) + 1,
		slots: make([]atomic.Uint32, n),
	}
}

// index returns seq mod n without a division (Lemire's fastmod, valid for
// 32-bit operands). The sequence wraps at 2^32, which only moves the ring's
// cursor; the window stays the last n calls within one step.
func (w *countWindow) index(seq uint64) uint64 {
	hi, _ := bits.Mul64(w.magic*uint64(uint32(seq)), w.n)
	return hi
}

func (w *countWindow) record(o uint32) tally {
	seq := w.seq.Add(1)
	w.put(w.index(seq-1), o)
	return tally{calls: min(seq, w.n), failures: w.failures.Load(), slow: w.slow.Load()}
}

func (w *countWindow) put(i uint64, o uint32) {
	old := w.slots[i].Swap(o)
	if d := old ^ o; d != 0 {
		if d&2 != 0 {
			w.failures.Add(delta(o&2 != 0))
		}
		if d&4 != 0 {
			w.slow.Add(delta(o&4 != 0))
		}
	}
}

func (w *countWindow) tally() tally {
	return tally{calls: min(w.seq.Load(), w.n), failures: w.failures.Load(), slow: w.slow.Load()}
}

// delta is +1 or -1 as a uint64 for atomic adds.
func delta(up bool) uint64 {
	if up {
		return 1
	}
	return ^uint64(0)
}

// timeWindow holds outcomes of the last n buckets of width nanoseconds
// each, on the breaker's clock. Bucket e covers [e*width, (e+1)*width).
//
// Writers add to the head bucket, found with one load and a multiply. The
// first writer to find the head over takes a mutex, clears the bucket the
// new head maps to and only then publishes the new head, so no writer adds
// to a bucket that is about to be cleared; the mutex is taken once per
// bucket width, never per call. The ring has a power-of-two number of
// buckets, at least n, so the bucket of epoch e is e&mask; each bucket
// records its epoch, and buckets skipped while the window was idle are
// simply out of range when summed.
type timeWindow struct {
	head atomic.Int64 // the newest epoch
	_    [56]byte
	mu   sync.Mutex // serialises advancing the head
	n    int64      // buckets in the window
	mask int64
	// width is the bucket width in nanoseconds.
	width   int64
	buckets []tbucket
}

type tbucket struct {
	epoch                 atomic.Int64
	calls, failures, slow atomic.Uint64
}

func newTimeWindow(n int, width int64, now int64) *timeWindow {
	p := 1
	for p < n {
		p <<= 1
	}
	w := &timeWindow{n: int64(n), mask: int64(p - 1), width: width, buckets: make([]tbucket, p)}
	for i := range w.buckets {
		w.buckets[i].epoch.Store(math.MinInt64)
	}
	e := now / width
	w.buckets[e&w.mask].epoch.Store(e)
	w.head.Store(e)
	return w
}

// epoch returns the epoch to write an outcome at time now into: the head,
// advanced first when now has passed it. A writer whose coarse time lags
// the head writes into the head.
func (w *timeWindow) epoch(now int64) int64 {
	if e := w.head.Load(); now < (e+1)*w.width {
		return e
	}
	return w.advance(now)
}

func (w *timeWindow) advance(now int64) int64 {
	e := now / w.width
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.head.Load(); h >= e {
		return h
	}
	b := &w.buckets[e&w.mask]
	b.calls.Store(0)
	b.failures.Store(0)
	b.slow.Store(0)
	b.epoch.Store(e)
	w.head.Store(e)
	return e
}

func (w *timeWindow) ok(now int64) {
	w.buckets[w.epoch(now)&w.mask].calls.Add(1)
}

func (w *timeWindow) record(now int64, o uint32) tally {
	e := w.epoch(now)
	b := &w.buckets[e&w.mask]
	b.calls.Add(1)
	if o&2 != 0 {
		b.failures.Add(1)
	}
	if o&4 != 0 {
		b.slow.Add(1)
	}
	return w.sum(e)
}

// sum returns the tally of the window ending with epoch e.
func (w *timeWindow) sum(e int64) tally {
	var t tally
	for i := range w.buckets {
		b := &w.buckets[i]
		if be := b.epoch.Load(); be > e || be <= e-w.n {
			continue
		}
		t.calls += b.calls.Load()
		t.failures += b.failures.Load()
		t.slow += b.slow.Load()
	}
	return t
}

// tally returns the window's contents at time now.
func (w *timeWindow) tally(now int64) tally {
	return w.sum(max(now/w.width, w.head.Load()))
}
