package heartbeat_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stallTransport models a stalled process: a Send that starts inside a
// stall window blocks until the window ends, so the node's heartbeat
// loop stops for that long, as in a stop-the-world pause.
type stallTransport struct {
	heartbeat.Transport
	mu     sync.Mutex
	stalls [][2]time.Time
}

func (s *stallTransport) Send(ctx context.Context, addr string, b []byte) error {
	now := time.Now()
	s.mu.Lock()
	var until time.Time
	for _, w := range s.stalls {
		if !now.Before(w[0]) && now.Before(w[1]) {
			until = w[1]
		}
	}
	s.mu.Unlock()
	if !until.IsZero() {
		time.Sleep(until.Sub(now))
	}
	return s.Transport.Send(ctx, addr, b)
}

// TestPhiAccrualHourTrace is the detector proof: one simulated hour of a
// healthy peer heartbeating every second with ±10 % jitter and 1-30 ms
// of network delay, stalled five times for 2.5 s, then crashed. Every
// detector watches the same heartbeats. φ accrual at Akka's defaults must
// make no false conviction and suspect the crash within
// interval + acceptable pause + interval (5 s); the fixed deadlines must
// show the trade-off between false convictions and detection time.
func TestPhiAccrualHourTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 42, simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond})
		defer c.stop()
		type det struct {
			name string
			f    heartbeat.DetectorFactory
		}
		dets := []det{
			{"phi accrual (Akka defaults)", heartbeat.PhiAccrualConfig{}},
			{"exponential (Cassandra defaults)", heartbeat.ExponentialConfig{}},
			{"fixed deadline 2s", heartbeat.DeadlineConfig{Timeout: 2 * time.Second}},
			{"fixed deadline 3s", heartbeat.DeadlineConfig{Timeout: 3 * time.Second}},
			{"fixed deadline 4s", heartbeat.DeadlineConfig{Timeout: 4 * time.Second}},
			{"fixed deadline 5s", heartbeat.DeadlineConfig{Timeout: 5 * time.Second}},
		}
		var targets []string
		mons := make([]*monHandle, len(dets))
		for i, d := range dets {
			addr := fmt.Sprintf("m%d", i)
			mons[i] = c.monitor(addr, heartbeat.MonitorConfig{Detector: d.f, Peers: []heartbeat.Peer{{ID: "peer"}}})
			targets = append(targets, addr)
		}
		t0 := time.Now()
		st := &stallTransport{}
		for i := 1; i <= 5; i++ {
			at := t0.Add(time.Duration(i) * 10 * time.Minute)
			st.stalls = append(st.stalls, [2]time.Time{at, at.Add(2500 * time.Millisecond)})
		}
		nd, err := c.net.Node("peer")
		require.NoError(t, err)
		peer := c.startNodeOn(nd, st, heartbeat.NodeConfig{ID: "peer", Targets: targets, Jitter: 0.1})

		time.Sleep(time.Hour)
		peer.kill()
		crash := time.Now()
		time.Sleep(time.Minute)

		var b strings.Builder
		fmt.Fprintf(&b, "1 h trace, 1 s ±10%% heartbeats, 1-30 ms delay, five 2.5 s stalls, crash at %v:\n", crash.Sub(t0))
		fmt.Fprintf(&b, "  %-34s %16s %16s %22s\n", "detector", "false suspicions", "suspected after", "after last heartbeat")
		type result struct {
			fp              int
			detect, sinceHB time.Duration
		}
		res := make([]result, len(dets))
		for i, d := range dets {
			for _, tr := range mons[i].rec.of("peer") {
				if tr.To == heartbeat.Suspect && tr.At.Before(crash) {
					res[i].fp++
				}
			}
			s, ok := mons[i].rec.firstTo("peer", heartbeat.Suspect, crash)
			require.True(t, ok, "%s never suspected the crash:\n%s", d.name, describe(mons[i].rec.all(), t0))
			res[i].detect = s.At.Sub(crash)
			ps, _ := mons[i].m.Peer("peer")
			res[i].sinceHB = s.At.Sub(ps.LastHeartbeat).Round(time.Millisecond)
			fmt.Fprintf(&b, "  %-34s %16d %16v %22v\n", d.name, res[i].fp, res[i].detect, res[i].sinceHB)
			checkTransitions(t, mons[i].rec.all())
		}
		t.Log(b.String())

		bound := time.Second + 3*time.Second + time.Second
		assert.Zero(t, res[0].fp, "phi accrual convicted a healthy peer:\n%s", describe(mons[0].rec.all(), t0))
		assert.LessOrEqual(t, res[0].detect, bound, "phi accrual detected the crash too late")
		// Stronger: within the bound of the last heartbeat's arrival, the
		// worst case of a crash right after a heartbeat.
		assert.LessOrEqual(t, res[0].sinceHB, bound, "phi accrual detected the crash too late")
		t.Logf("phi accrual bound: interval + acceptable pause + interval = %v", bound)
		assert.Zero(t, res[1].fp, "exponential convicted a healthy peer")
		// The fixed deadline trades one against the other: the short one
		// is fast but convicts the stalled peer, the long one is slow.
		assert.Positive(t, res[2].fp, "a 2 s deadline should convict a peer stalled for 2.5 s")
		assert.Less(t, res[2].detect, res[0].detect)
		last := len(dets) - 1
		assert.Zero(t, res[last].fp)
		assert.Greater(t, res[last].detect, res[0].detect)
		for i := 3; i < len(dets); i++ {
			assert.LessOrEqual(t, res[i].fp, res[i-1].fp, "false suspicions must not grow with the timeout")
			assert.GreaterOrEqual(t, res[i].detect, res[i-1].detect, "detection must not get faster with the timeout")
		}
	})
}
