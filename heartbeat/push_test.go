package heartbeat_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/stretchr/testify/require"
)

func TestPushDetectsCrashAndRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		defer c.stop()
		mon := c.monitor("mon", heartbeat.MonitorConfig{Peers: []heartbeat.Peer{{ID: "n1"}}})
		n1 := c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}})
		t0 := time.Now()
		time.Sleep(20 * time.Second)
		st, ok := mon.m.Peer("n1")
		require.True(t, ok)
		require.Equal(t, heartbeat.Alive, st.State)
		n1.kill()
		crash := time.Now()
		time.Sleep(15 * time.Second)
		st, _ = mon.m.Peer("n1")
		require.Equal(t, heartbeat.Dead, st.State, describe(mon.rec.all(), t0))
		c.node("n1", heartbeat.NodeConfig{Targets: []string{"mon"}})
		time.Sleep(2 * time.Second)
		st, _ = mon.m.Peer("n1")
		require.Equal(t, heartbeat.Alive, st.State)
		sus, ok := mon.rec.firstTo("n1", heartbeat.Suspect, crash)
		require.True(t, ok)
		t.Logf("suspected %v after crash, transitions:\n%s", sus.At.Sub(crash), describe(mon.rec.all(), t0))
	})
}
