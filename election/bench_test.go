package election_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit/distkit/election"
)

// BenchmarkFailover measures, per algorithm, the time from the leader's
// crash to a successor that holds a live term and that every live node
// reports, between three nodes on UDP loopback with the udp* timings
// above (lease 600/400/100 ms; Raft heartbeat 25 ms, election timeout
// 250 ms; Bully heartbeat 50 ms with a 150 ms deadline detector, answer
// timeout 100 ms). ns/op includes restarting the crashed node; the
// failover itself is reported as ms/failover.
func BenchmarkFailover(b *testing.B) {
	for _, algo := range []string{"lease", "sequence", "raft", "bully"} {
		b.Run(algo, func(b *testing.B) {
			c := newUDPCluster(b, algo, 3)
			defer c.close()
			lead, err := c.waitLeader(0, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			n := 0
			for b.Loop() {
				c.kill(lead.ID)
				start := time.Now()
				next, err := c.waitLeader(lead.Token, 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				n++
				c.start(lead.ID)
				if lead, err = c.waitLeader(next.Token-1, 10*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(n), "ms/failover")
		})
	}
}

// BenchmarkFence is the cost of a fenced write's check.
func BenchmarkFence(b *testing.B) {
	var f election.Fence
	b.Run("Check", func(b *testing.B) {
		tok := uint64(1)
		for b.Loop() {
			_ = f.Check(tok)
		}
	})
	b.Run("CheckParallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = f.Check(1)
			}
		})
	})
}

// BenchmarkMemoryStoreRenew is the reference store's renewal, the
// leader's steady-state cost.
func BenchmarkMemoryStoreRenew(b *testing.B) {
	s := election.NewMemoryStore()
	ctx := context.Background()
	l, err := s.Acquire(ctx, "k", "h", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Renew(ctx, "k", l.Epoch, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
