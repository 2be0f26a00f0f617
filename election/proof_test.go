package election_test

import (
	"flag"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

var (
	seedFlag  = flag.Int64("seed", -1, "run the election fault proofs on this one seed only (replay a failing seed)")
	seedsFlag = flag.Int("seeds", 0, "seeds per algorithm in the election fault proofs (0: 500, 5000 with -soak, 20 with -short)")
	firstFlag = flag.Uint64("firstseed", 0, "first seed of the election fault proofs' sweep")
)

// TestSafetyUnderFaults is the proof: for every algorithm, over 500
// seeds (5000 with -soak), a simulated cluster of 3 or 5 nodes elects
// under random partitions, drops, duplicates, reordering, delays,
// crashes, restarts, whole-node stalls and worker pauses longer than a
// lease, and the test checks that
//   - no token is granted twice (so no term has two leaders);
//   - for lease, sequence and Raft, tokens strictly increase in grant
//     order and no term is granted while an earlier one's context is
//     live;
//   - the fenced resource never accepts a write older than one it has
//     accepted, so a deposed leader's late write is refused;
//   - after the faults stop, one leader holds a live term, every node
//     reports it, and its writes are accepted, within the algorithm's
//     bound.
//
// A failing seed prints its violations and the network trace.
func TestSafetyUnderFaults(t *testing.T) {
	seeds := 500
	if testing.Short() {
		seeds = 20
	}
	if *soak {
		seeds = 5000
	}
	if *seedsFlag > 0 {
		seeds = *seedsFlag
	}
	first := *firstFlag
	if *seedFlag >= 0 {
		first, seeds = uint64(*seedFlag), 1
	}
	for _, a := range algos {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			var rec []time.Duration
			var accepted, rejected int
			for seed := first; seed < first+uint64(seeds); seed++ {
				synctest.Test(t, func(t *testing.T) {
					d, w := runScenario(t, a, seed)
					rec = append(rec, d)
					accepted += w.accepted
					rejected += w.rejected
				})
				if t.Failed() {
					return
				}
			}
			slices.Sort(rec)
			t.Logf("%s: %d seeds; leader after faults stop: median %v, p99 %v, max %v (bound %v); writes accepted %d, refused by the fence %d",
				a.name, seeds, rec[len(rec)/2], rec[len(rec)*99/100], rec[len(rec)-1], a.bound, accepted, rejected)
			if rejected == 0 && seeds >= 20 {
				t.Errorf("the fence refused no write: the scenarios never exercised a deposed leader")
			}
		})
	}
}
