package circuitbreaker

// White-box tests of the window arithmetic: the windows take time as an
// argument, so they are checked directly against naive models.

import (
	"testing"
)

func FuzzCountWindow(f *testing.F) {
	f.Add(uint32(3), []byte{1, 3, 5, 7, 1, 1, 3})
	f.Add(uint32(1), []byte{3, 1, 3})
	f.Add(uint32(100), []byte{3, 3, 3, 3, 1})
	f.Add(uint32(7), []byte{0xff, 0x80, 0x12})
	f.Fuzz(func(t *testing.T, n uint32, ops []byte) {
		n = n%1024 + 1
		// Successes take the episode's fast path, so test through it; a
		// forced-closed breaker records outcomes but never trips.
		b, err := New(Config{FailureRate: 1, WindowCalls: int(n), MinCalls: 1})
		if err != nil {
			t.Fatal(err)
		}
		b.ForceClosed()
		ep := b.ep.Load()
		w := ep.cw
		var ring []uint32
		for i, op := range ops {
			o := []uint32{outOK, outFail, outSlow, outFail | outSlow}[op%4]
			ring = append(ring, o)
			if len(ring) > int(n) {
				ring = ring[1:]
			}
			var got tally
			if o == outOK && op&4 != 0 {
				ep.ok()
				got = w.tally()
			} else {
				got = w.record(o)
			}
			var want tally
			for _, r := range ring {
				want.calls++
				if r&2 != 0 {
					want.failures++
				}
				if r&4 != 0 {
					want.slow++
				}
			}
			if got != want {
				t.Fatalf("n=%d after %d ops: got %+v, want %+v", n, i+1, got, want)
			}
		}
	})
}

func FuzzFastmod(f *testing.F) {
	f.Add(uint32(7), uint64(123456789))
	f.Add(uint32(1), uint64(0))
	f.Add(uint32(1<<20), uint64(1<<40+5))
	f.Fuzz(func(t *testing.T, n uint32, seq uint64) {
		n = n%(1<<20) + 1
		w := &countWindow{n: uint64(n), magic: ^uint64(0)/uint64(n) + 1}
		if got, want := w.index(seq), uint64(uint32(seq))%uint64(n); got != want {
			t.Fatalf("index(%d) mod %d = %d, want %d", seq, n, got, want)
		}
	})
}

func FuzzTimeWindow(f *testing.F) {
	f.Add(uint16(10), uint32(1000), int64(0), []byte{0, 1, 2, 3, 200, 1, 255, 3})
	f.Add(uint16(1), uint32(1), int64(5), []byte{1, 1, 9, 9})
	f.Add(uint16(3), uint32(7), int64(1<<40), []byte{0x41, 0x42, 0x43, 0xfe})
	f.Fuzz(func(t *testing.T, n uint16, width uint32, start int64, ops []byte) {
		nb := int64(n%maxBuckets) + 1
		wd := int64(width%1_000_000) + 1
		if start < 0 {
			start = -start
		}
		start %= 1 << 50
		now := start
		w := newTimeWindow(int(nb), wd, now)
		type ev struct {
			epoch int64
			o     uint32
		}
		var evs []ev
		for i, op := range ops {
			// High bits move the clock, from within a bucket to past the
			// whole window; low bits pick the outcome.
			now += int64(op>>2) * wd / 8 * (1 + int64(op>>7)*nb)
			o := []uint32{outOK, outFail, outSlow, outFail | outSlow}[op%4]
			evs = append(evs, ev{now / wd, o})
			var got tally
			if o == outOK {
				w.ok(now)
				got = w.tally(now)
			} else {
				got = w.record(now, o)
			}
			var want tally
			e := now / wd
			for _, x := range evs {
				if x.epoch > e-nb && x.epoch <= e {
					want.calls++
					if x.o&2 != 0 {
						want.failures++
					}
					if x.o&4 != 0 {
						want.slow++
					}
				}
			}
			if got != want {
				t.Fatalf("n=%d width=%d after %d ops at t=%d: got %+v, want %+v", nb, wd, i+1, now, got, want)
			}
		}
	})
}
