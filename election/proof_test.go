package election_test

import (
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	seedFlag  = flag.Int64("seed", -1, "run the election fault proofs on this one seed only (replays a failing seed)")
	seedsFlag = flag.Int("seeds", 0, "seeds per algorithm in the election fault proofs (0: 500, or 5000 with -soak, 20 with -short)")
	firstFlag = flag.Uint64("firstseed", 0, "first seed of the election fault proofs")
)

// proofShards splits each algorithm's seeds into parallel subtests, so
// that the four algorithms, whose scenarios cost different amounts, keep
// every core busy until the end.
const proofShards = 4

// TestSafetyUnderFaults is the proof: for every algorithm, over 500
// seeds (5000 with -soak, or -seeds N), a simulated cluster of 3 or 5
// nodes elects under random partitions, drops, duplicates, reordering,
// delays, crashes, restarts, whole-node stalls and worker pauses longer
// than a lease, and the test checks that
//   - no token is granted twice (so no term has two leaders);
//   - for lease, sequence and Raft, tokens strictly increase in grant
//     order and no term is granted while an earlier one's context is
//     live;
//   - the fenced resource never accepts a write older than one it has
//     accepted, so a deposed leader's late write is refused;
//   - after the faults stop (the last stall included), one leader holds
//     a live term, every node reports it, and its writes are accepted,
//     within the algorithm's bound.
//
// A failing seed prints its violations, the scenario's own trace (faults,
// grants, term ends, refused writes), the network trace and the command
// that replays it: -args -seed N. The network, the fault schedule and
// Raft's election timeouts are drawn from the seed; goroutines that run
// at the same simulated instant may still interleave differently, so a
// replay is likely, not certain, to take the same path (rerun it with
// -count).
func TestSafetyUnderFaults(t *testing.T) {
	seeds := uint64(500)
	if testing.Short() {
		seeds = 20
	}
	if *soak {
		seeds = 5000
	}
	if *seedsFlag > 0 {
		seeds = uint64(*seedsFlag)
	}
	first := *firstFlag
	if *seedFlag >= 0 {
		first, seeds = uint64(*seedFlag), 1
	}
	for _, a := range algos {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu                 sync.Mutex
				rec                []time.Duration
				accepted, rejected int
			)
			t.Cleanup(func() { // after every shard
				if t.Failed() || len(rec) == 0 {
					return
				}
				slices.Sort(rec)
				t.Logf("%s: %d seeds; leader after faults stop: median %v, p99 %v, max %v (bound %v); writes accepted %d, refused by the fence %d",
					a.name, len(rec), rec[len(rec)/2], rec[len(rec)*99/100], rec[len(rec)-1], a.bound, accepted, rejected)
				if rejected == 0 && len(rec) >= 20 {
					t.Errorf("the fence refused no write: the scenarios never exercised a deposed leader")
				}
			})
			per := (seeds + proofShards - 1) / proofShards
			for lo := first; lo < first+seeds; lo += per {
				hi := min(lo+per, first+seeds)
				t.Run(fmt.Sprintf("seeds=%d-%d", lo, hi-1), func(t *testing.T) {
					t.Parallel()
					for seed := lo; seed < hi; seed++ {
						synctest.Test(t, func(t *testing.T) {
							d, w := runScenario(t, a, seed)
							mu.Lock()
							rec = append(rec, d)
							accepted += w.accepted
							rejected += w.rejected
							mu.Unlock()
						})
						if t.Failed() {
							return
						}
					}
				})
			}
		})
	}
}
