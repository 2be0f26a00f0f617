package heartbeat_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitFor waits until peer has a transition to state with a Seq above
// after, failing after a generous deadline (real sockets, real time).
func waitFor(t *testing.T, rec *recorder, peer string, state heartbeat.State, after uint64) heartbeat.Transition {
	t.Helper()
	var got heartbeat.Transition
	require.Eventually(t, func() bool {
		for _, tr := range rec.of(peer) {
			if tr.To == state && tr.Seq > after {
				got = tr
				return true
			}
		}
		return false
	}, 20*time.Second, time.Millisecond, "waiting for %s to become %v", peer, state)
	return got
}

// Several real UDP nodes and a monitor on loopback, signed and
// acknowledged: a stopped node is suspected then declared dead, and comes
// back alive when restarted (on a new port, with a new incarnation).
func TestUDPLoopbackDetectsStopAndRestart(t *testing.T) {
	key := []byte("loopback test key, 32 bytes long")
	const interval = 50 * time.Millisecond
	monTr := listenUDP(t)
	var peers []heartbeat.Peer
	for i := range 4 {
		peers = append(peers, heartbeat.Peer{ID: fmt.Sprintf("n%d", i)})
	}
	mon, err := heartbeat.NewMonitor(monTr, heartbeat.MonitorConfig{ID: "mon", Interval: interval, Peers: peers, Keys: [][]byte{key}})
	require.NoError(t, err)
	rec := record(mon.Subscribe())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	monDone := make(chan error, 1)
	go func() { monDone <- mon.Run(ctx) }()

	start := func(id string) (*heartbeat.Node, func()) {
		tr := listenUDP(t)
		n, err := heartbeat.NewNode(tr, heartbeat.NodeConfig{ID: id, Interval: interval, Targets: []string{monTr.LocalAddr()}, Keys: [][]byte{key}, Ack: true})
		require.NoError(t, err)
		nctx, ncancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- n.Run(nctx) }()
		return n, func() { ncancel(); <-done; _ = n.Close(); _ = tr.Close() }
	}
	stops := map[string]func(){}
	nodes := map[string]*heartbeat.Node{}
	for _, p := range peers {
		nodes[p.ID], stops[p.ID] = start(p.ID)
	}
	for _, p := range peers {
		waitFor(t, rec, p.ID, heartbeat.Alive, 0)
	}
	stops["n2"]()
	sus := waitFor(t, rec, "n2", heartbeat.Suspect, 0)
	dead := waitFor(t, rec, "n2", heartbeat.Dead, sus.Seq)
	assert.False(t, dead.At.Before(sus.At))
	oldInc := sus.Incarnation
	nodes["n2"], stops["n2"] = start("n2")
	back := waitFor(t, rec, "n2", heartbeat.Alive, dead.Seq)
	assert.Greater(t, back.Incarnation, oldInc)
	st, ok := mon.Peer("n2")
	require.True(t, ok)
	assert.Equal(t, heartbeat.Alive, st.State)
	require.Eventually(t, func() bool {
		st, _ := mon.Peer("n2")
		return st.Timing.RTT > 0
	}, 20*time.Second, interval, "acked nodes report their RTT")
	require.Eventually(t, func() bool { return nodes["n2"].Paths()[0].State == heartbeat.Alive }, 20*time.Second, interval, "the node sees its acks")
	for _, stop := range stops {
		stop()
	}
	cancel()
	require.ErrorIs(t, <-monDone, context.Canceled)
	require.NoError(t, mon.Close())
	rec.wait()
	assert.Zero(t, mon.Stats().Forged+mon.Stats().Unsigned+mon.Stats().Malformed)
}
