package heartbeat_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fastDeadline(timeout time.Duration) heartbeat.MonitorConfig {
	return heartbeat.MonitorConfig{
		Detector:  heartbeat.DeadlineConfig{Timeout: timeout},
		DeadAfter: time.Nanosecond,
		Peers:     []heartbeat.Peer{{ID: "n1"}},
	}
}

// A heartbeat that lingered in the network must not revive a peer
// declared dead after it was sent, even though its sequence number is
// the highest seen.
func TestStaleHeartbeatDoesNotReviveDeadPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{MinDelay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond})
		defer c.stop()
		mon := c.monitor("mon", fastDeadline(2*time.Second))
		n1 := c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}})
		time.Sleep(5*time.Second + 500*time.Millisecond) // beats at 0..5 s
		// The next heartbeat (at 6 s) is held for 20 s; then the node dies.
		require.NoError(t, c.net.SetLink("n1", "mon", simnet.LinkConfig{MinDelay: 20 * time.Second, MaxDelay: 20 * time.Second}))
		time.Sleep(time.Second)
		n1.kill()
		time.Sleep(30 * time.Second)
		st, _ := mon.m.Peer("n1")
		assert.Equal(t, heartbeat.Dead, st.State, "revived by a stale heartbeat:\n%s", describe(mon.rec.all(), time.Time{}))
		assert.Equal(t, uint64(1), mon.m.Stats().Stale, "the late heartbeat should be counted as stale")
		assert.Len(t, mon.rec.of("n1"), 3, "unknown->alive, alive->suspect, suspect->dead")
	})
}

// A slow network is not a dead node: heartbeats that arrive late but were
// sent after the verdict revive the peer.
func TestLateButFreshHeartbeatRevives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{MinDelay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond})
		defer c.stop()
		mon := c.monitor("mon", fastDeadline(2*time.Second))
		c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}})
		time.Sleep(5*time.Second + 500*time.Millisecond)
		require.NoError(t, c.net.SetLink("n1", "mon", simnet.LinkConfig{MinDelay: 3 * time.Second, MaxDelay: 3 * time.Second}))
		time.Sleep(10 * time.Second)
		st, _ := mon.m.Peer("n1")
		assert.Equal(t, heartbeat.Alive, st.State)
		assert.InDelta(t, 3*time.Second, st.Timing.Delay, float64(50*time.Millisecond), "the queueing delay shows a slow network")
		got := mon.rec.of("n1")
		require.Len(t, got, 4, describe(got, time.Time{}))
		assert.Equal(t, heartbeat.Alive, got[3].To)
	})
}

func TestDuplicatedAndReorderedHeartbeatsCountOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, simnet.LinkConfig{Duplicate: 0.5, Reorder: 0.5, MinDelay: time.Millisecond, MaxDelay: 3 * time.Second})
		defer c.stop()
		mon := c.monitor("mon", heartbeat.MonitorConfig{Peers: []heartbeat.Peer{{ID: "n1"}}, Detector: heartbeat.DeadlineConfig{Timeout: time.Hour}})
		n1 := c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Interval: 100 * time.Millisecond})
		time.Sleep(time.Minute)
		n1.kill()
		time.Sleep(5 * time.Second)
		ms, ns := mon.m.Stats(), c.net.Stats()
		assert.Positive(t, ns.Duplicated)
		assert.Positive(t, ms.Duplicates, "duplicates and overtaken heartbeats must be dropped")
		assert.LessOrEqual(t, ms.Heartbeats, ns.Sent, "a heartbeat was counted twice")
		assert.Equal(t, ns.Delivered, ms.Heartbeats+ms.Duplicates)
		st, _ := mon.m.Peer("n1")
		assert.Equal(t, st.Heartbeats, ms.Heartbeats)
	})
}

func TestOlderIncarnationIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{})
		defer c.stop()
		mon := c.monitor("mon", fastDeadline(2*time.Second))
		c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Incarnation: 10})
		time.Sleep(3 * time.Second)
		c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Incarnation: 9}) // a zombie of an earlier life
		time.Sleep(10 * time.Second)
		st, _ := mon.m.Peer("n1")
		assert.Equal(t, heartbeat.Dead, st.State)
		assert.Equal(t, uint64(10), st.Incarnation)
		assert.Positive(t, mon.m.Stats().Stale)
		c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Incarnation: 11})
		time.Sleep(100 * time.Millisecond)
		st, _ = mon.m.Peer("n1")
		assert.Equal(t, heartbeat.Alive, st.State)
		assert.Equal(t, uint64(11), st.Incarnation)
	})
}

// stallRecv stalls a monitor's receive loop: a packet received inside
// the window is handed over only when the window ends.
type stallRecv struct {
	heartbeat.Transport
	from, until time.Time
}

func (s *stallRecv) Recv(ctx context.Context) (heartbeat.Packet, error) {
	p, err := s.Transport.Recv(ctx)
	if now := time.Now(); err == nil && !now.Before(s.from) && now.Before(s.until) {
		time.Sleep(s.until.Sub(now))
	}
	return p, err
}

// A monitor that was itself paused does not convict peers for the
// silence it caused; with the guard disabled, the same pause convicts.
func TestLocalPauseDoesNotConvict(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold time.Duration
		convicts  bool
	}{
		{"guarded", 0, false},
		{"unguarded", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, 1, simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: time.Millisecond})
				defer c.stop()
				nd, err := c.net.Node("mon")
				require.NoError(t, err)
				from := time.Now().Add(5*time.Second + 50*time.Millisecond)
				until := from.Add(10 * time.Second)
				tr := &stallRecv{Transport: simTransport(nd), from: from, until: until.Add(time.Millisecond)}
				cfg := fastDeadline(2 * time.Second)
				cfg.ID, cfg.PauseThreshold = "mon", tc.threshold
				m, err := heartbeat.NewMonitor(tr, cfg)
				require.NoError(t, err)
				heartbeat.SetBeforeCheck(m, func() {
					if now := time.Now(); !now.Before(from) && now.Before(until) {
						time.Sleep(until.Sub(now)) // the whole process is stopped
					}
				})
				rec := record(m.Subscribe())
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error)
				go func() { done <- m.Run(ctx) }()
				c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}})
				time.Sleep(20 * time.Second)
				cancel()
				require.ErrorIs(t, <-done, context.Canceled)
				require.NoError(t, m.Close())
				rec.wait()
				_ = tr.Close()
				got := rec.of("n1")
				st := m.Stats()
				if tc.convicts {
					assert.Greater(t, len(got), 1, "without the guard the pause should convict")
					return
				}
				assert.Len(t, got, 1, "convicted for the monitor's own pause:\n%s", describe(got, time.Time{}))
				assert.Equal(t, uint64(1), st.LocalPauses)
				assert.InDelta(t, 10*time.Second, st.Paused, float64(200*time.Millisecond))
			})
		})
	}
}

func TestPullMeasuresRTTAndCarriesDiagnostics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{MinDelay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond})
		defer c.stop()
		mon := c.monitor("mon", heartbeat.MonitorConfig{Pull: true, Peers: []heartbeat.Peer{{ID: "n1", Addr: "n1"}}})
		calls := 0
		c.node("n1", heartbeat.NodeConfig{Diagnostics: func() []heartbeat.Metric {
			calls++
			return []heartbeat.Metric{{Key: "cpu", Value: 0.25}, {Key: "calls", Value: float64(calls)}}
		}})
		time.Sleep(10*time.Second + 500*time.Millisecond)
		st, _ := mon.m.Peer("n1")
		assert.Equal(t, heartbeat.Alive, st.State)
		assert.Equal(t, 20*time.Millisecond, st.Timing.RTT)
		assert.Equal(t, 10*time.Millisecond, st.Timing.Delay)
		assert.Equal(t, time.Duration(0), st.Timing.ClockOffset, "one clock in a bubble: no offset once the delay is known")
		require.Len(t, st.Diagnostics, 2)
		assert.Equal(t, heartbeat.Metric{Key: "cpu", Value: 0.25}, st.Diagnostics[0])
		assert.Equal(t, "calls", st.Diagnostics[1].Key)
		assert.InDelta(t, 10, st.Diagnostics[1].Value, 1)
		assert.Positive(t, c.nodes["n1"].n.Stats().Pings)
	})
}

func TestBadDiagnosticsAreNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{})
		defer c.stop()
		mon := c.monitor("mon", heartbeat.MonitorConfig{Peers: []heartbeat.Peer{{ID: "n1"}}})
		n1 := c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Diagnostics: func() []heartbeat.Metric {
			return make([]heartbeat.Metric, heartbeat.MaxMetrics+1)
		}})
		time.Sleep(3 * time.Second)
		st, _ := mon.m.Peer("n1")
		assert.Equal(t, heartbeat.Alive, st.State, "bad diagnostics must not stop the heartbeat")
		assert.Nil(t, st.Diagnostics)
		assert.Positive(t, n1.n.Stats().BadMetrics)
	})
}

func TestAckedPathReportsMonitorLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{MinDelay: 5 * time.Millisecond, MaxDelay: 5 * time.Millisecond})
		defer c.stop()
		c.monitor("mon", heartbeat.MonitorConfig{Peers: []heartbeat.Peer{{ID: "n1"}}})
		n1 := c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Ack: true})
		rec := record(n1.n.Subscribe())
		time.Sleep(5 * time.Second)
		p := n1.n.Paths()[0]
		assert.Equal(t, heartbeat.Alive, p.State)
		assert.Equal(t, 10*time.Millisecond, p.RTT)
		assert.Equal(t, "mon", p.Monitor)
		c.net.Cut("mon", "n1") // acks lost: the monitor hears us, we cannot tell
		time.Sleep(15 * time.Second)
		assert.Equal(t, heartbeat.Dead, n1.n.Paths()[0].State)
		c.net.Uncut("mon", "n1")
		time.Sleep(2 * time.Second)
		assert.Equal(t, heartbeat.Alive, n1.n.Paths()[0].State)
		c.stop()
		rec.wait()
		got := rec.all()
		checkTransitions(t, got)
		require.Len(t, got, 4, describe(got, time.Time{}))
	})
}

func TestSignedHeartbeats(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	old := []byte("an older key, still accepted....")
	for _, tc := range []struct {
		name             string
		nodeKeys         [][]byte
		alive            bool
		unsigned, forged bool
	}{
		{"same key", [][]byte{key}, true, false, false},
		{"rotating: old key still verifies", [][]byte{old}, true, false, false},
		{"unsigned", nil, false, true, false},
		{"forged", [][]byte{[]byte("not the key, but long enough....")}, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, 1, simnet.LinkConfig{})
				defer c.stop()
				mon := c.monitor("mon", heartbeat.MonitorConfig{Keys: [][]byte{key, old}, Peers: []heartbeat.Peer{{ID: "n1"}}})
				n1 := c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Keys: tc.nodeKeys, Ack: true})
				time.Sleep(3 * time.Second)
				st, _ := mon.m.Peer("n1")
				s := mon.m.Stats()
				assert.Equal(t, tc.alive, st.State == heartbeat.Alive, "state %v", st.State)
				assert.Equal(t, tc.unsigned, s.Unsigned > 0)
				assert.Equal(t, tc.forged, s.Forged > 0)
				if tc.alive {
					// Acks are signed with the monitor's first key, which
					// a node holding only the old key rejects.
					wantAcked := tc.nodeKeys[0][0] == key[0]
					assert.Equal(t, wantAcked, n1.n.Paths()[0].State == heartbeat.Alive)
				}
			})
		})
	}
}

func TestDiscover(t *testing.T) {
	for _, discover := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(t, 1, simnet.LinkConfig{})
			defer c.stop()
			mon := c.monitor("mon", heartbeat.MonitorConfig{Discover: discover})
			c.node("stranger", heartbeat.NodeConfig{Targets: []string{"mon"}})
			time.Sleep(2 * time.Second)
			st, ok := mon.m.Peer("stranger")
			assert.Equal(t, discover, ok)
			if discover {
				assert.Equal(t, heartbeat.Alive, st.State)
				assert.Equal(t, "stranger", st.Addr)
			} else {
				assert.Positive(t, mon.m.Stats().UnknownPeers)
			}
		})
	}
}

// A subscriber that never reads loses transitions beyond its buffer, is
// told how many, and never delays detection.
func TestSlowSubscriberOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{})
		defer c.stop()
		cfg := fastDeadline(2 * time.Second)
		cfg.SubscriptionBuffer = 2
		mon := c.monitor("mon", cfg)
		slow := mon.m.Subscribe()
		defer slow.Close()
		for i := range 3 {
			c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Incarnation: uint64(i + 1)})
			time.Sleep(time.Second)
			c.nodes["n1"].kill()
			time.Sleep(5 * time.Second)
		}
		st, _ := mon.m.Peer("n1")
		assert.Equal(t, heartbeat.Dead, st.State, "detection went on")
		assert.Len(t, mon.rec.of("n1"), 9, "the fast subscriber saw everything")
		ctx := context.Background()
		a, err := slow.Next(ctx)
		require.NoError(t, err)
		b, err := slow.Next(ctx)
		require.NoError(t, err)
		assert.Equal(t, []uint64{1, 2}, []uint64{a.Seq, b.Seq})
		assert.Equal(t, uint64(7), mon.m.Stats().DroppedTransitions)
		// Room again: the next transition reports the loss.
		c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}, Incarnation: 9})
		time.Sleep(100 * time.Millisecond)
		n, err := slow.Next(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(10), n.Seq)
		assert.Equal(t, uint64(7), n.Dropped)
	})
}

func TestLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, err := simnet.New(simnet.Config{})
		require.NoError(t, err)
		defer net.Close()
		nd, err := net.Node("mon")
		require.NoError(t, err)
		m, err := heartbeat.NewMonitor(simTransport(nd), heartbeat.MonitorConfig{ID: "mon", Peers: []heartbeat.Peer{{ID: "a"}}})
		require.NoError(t, err)
		sub := m.Subscribe()
		done := make(chan error)
		go func() { done <- m.Run(context.Background()) }()
		time.Sleep(time.Second)
		require.ErrorIs(t, m.Run(context.Background()), heartbeat.ErrRunning)
		time.Sleep(10 * time.Second) // a never heard from: suspect, then dead
		require.NoError(t, m.Close())
		require.ErrorIs(t, <-done, heartbeat.ErrClosed)
		require.NoError(t, m.Close(), "Close is idempotent")
		require.ErrorIs(t, m.Run(context.Background()), heartbeat.ErrClosed)
		require.ErrorIs(t, m.Add(heartbeat.Peer{ID: "b"}), heartbeat.ErrClosed)
		// Queued transitions survive Close, then the subscription ends.
		for _, want := range []heartbeat.State{heartbeat.Suspect, heartbeat.Dead} {
			tr, err := sub.Next(context.Background())
			require.NoError(t, err)
			assert.Equal(t, want, tr.To)
		}
		_, err = sub.Next(context.Background())
		require.ErrorIs(t, err, heartbeat.ErrClosed)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = m.Subscribe().Next(ctx)
		require.ErrorIs(t, err, heartbeat.ErrClosed)
	})
}

func TestAddRemove(t *testing.T) {
	net, err := simnet.New(simnet.Config{})
	require.NoError(t, err)
	defer net.Close()
	nd, err := net.Node("mon")
	require.NoError(t, err)
	m, err := heartbeat.NewMonitor(simTransport(nd), heartbeat.MonitorConfig{ID: "mon", MaxPeers: 2, Pull: true})
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Add(heartbeat.Peer{ID: "a", Addr: "a"}))
	assert.ErrorIs(t, m.Add(heartbeat.Peer{ID: "a", Addr: "a"}), heartbeat.ErrPeerExists)
	assert.ErrorIs(t, m.Add(heartbeat.Peer{ID: "", Addr: "x"}), heartbeat.ErrInvalidPeer)
	assert.ErrorIs(t, m.Add(heartbeat.Peer{ID: "b"}), heartbeat.ErrInvalidPeer, "pull mode needs an address")
	require.NoError(t, m.Add(heartbeat.Peer{ID: "b", Addr: "b"}))
	assert.ErrorIs(t, m.Add(heartbeat.Peer{ID: "c", Addr: "c"}), heartbeat.ErrTooManyPeers)
	require.NoError(t, m.Remove("a"))
	assert.ErrorIs(t, m.Remove("a"), heartbeat.ErrUnknownPeer)
	ps := m.Peers()
	require.Len(t, ps, 1)
	assert.Equal(t, "b", ps[0].ID)
	assert.Equal(t, heartbeat.Unknown, ps[0].State)
}

func TestConfigErrors(t *testing.T) {
	net, err := simnet.New(simnet.Config{})
	require.NoError(t, err)
	defer net.Close()
	nd, err := net.Node("x")
	require.NoError(t, err)
	tr := simTransport(nd)
	for _, tc := range []struct {
		name string
		cfg  heartbeat.MonitorConfig
		want string
	}{
		{"no ID", heartbeat.MonitorConfig{}, "MonitorConfig.ID"},
		{"negative interval", heartbeat.MonitorConfig{ID: "m", Interval: -1}, "MonitorConfig.Interval"},
		{"short key", heartbeat.MonitorConfig{ID: "m", Keys: [][]byte{[]byte("short")}}, "MonitorConfig.Keys[0]"},
		{"bad detector", heartbeat.MonitorConfig{ID: "m", Detector: heartbeat.PhiAccrualConfig{Threshold: -1}}, "Threshold"},
		{"self in quorum", heartbeat.MonitorConfig{ID: "m", Quorum: []string{"x"}}, "MonitorConfig.Quorum[0]"},
		{"tiny packets", heartbeat.MonitorConfig{ID: "m", MaxPacketSize: 10}, "MaxPacketSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := heartbeat.NewMonitor(tr, tc.cfg)
			require.ErrorIs(t, err, heartbeat.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	for _, tc := range []struct {
		name string
		cfg  heartbeat.NodeConfig
		want string
	}{
		{"no ID", heartbeat.NodeConfig{}, "NodeConfig.ID"},
		{"jitter", heartbeat.NodeConfig{ID: "n", Jitter: 0.9}, "Jitter"},
		{"duplicate target", heartbeat.NodeConfig{ID: "n", Targets: []string{"a", "a"}}, "Targets[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := heartbeat.NewNode(tr, tc.cfg)
			require.ErrorIs(t, err, heartbeat.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err = heartbeat.NewMonitor(nil, heartbeat.MonitorConfig{ID: "m"})
	assert.True(t, errors.Is(err, heartbeat.ErrInvalidConfig))
}
