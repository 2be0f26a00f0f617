package heartbeat_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/heartbeat"
)

// A node pushes heartbeats over UDP to a monitor, which reports it alive,
// then suspect and dead once the node stops.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	monTr, _ := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	defer monTr.Close()
	mon, _ := heartbeat.NewMonitor(monTr, heartbeat.MonitorConfig{
		ID:        "monitor",
		Interval:  50 * time.Millisecond,
		Detector:  heartbeat.DeadlineConfig{Timeout: 500 * time.Millisecond},
		DeadAfter: 100 * time.Millisecond,
		Peers:     []heartbeat.Peer{{ID: "worker-1"}},
	})
	defer mon.Close()
	sub := mon.Subscribe()
	go mon.Run(ctx)

	nodeTr, _ := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	defer nodeTr.Close()
	node, _ := heartbeat.NewNode(nodeTr, heartbeat.NodeConfig{
		ID:       "worker-1",
		Interval: 50 * time.Millisecond,
		Targets:  []string{monTr.LocalAddr()},
	})
	nodeCtx, stopNode := context.WithCancel(ctx)
	defer stopNode()
	go node.Run(nodeCtx)

	for {
		t, err := sub.Next(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: %v -> %v\n", t.Peer, t.From, t.To)
		switch t.To {
		case heartbeat.Alive:
			stopNode() // the worker crashes
		case heartbeat.Dead:
			return
		}
	}
	// Output:
	// worker-1: unknown -> alive
	// worker-1: alive -> suspect
	// worker-1: suspect -> dead
}

// φ grows with silence; at the default threshold of 8 the peer is
// suspected, here about 4.5 s after its last heartbeat (1 s interval,
// 3 s acceptable pause, σ at its 100 ms floor).
func ExamplePhiAccrual() {
	d, _ := heartbeat.NewPhiAccrual(heartbeat.PhiAccrualConfig{}, time.Second)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 30 {
		d.Heartbeat(start.Add(time.Duration(i) * time.Second))
	}
	last := start.Add(29 * time.Second)
	for _, silence := range []time.Duration{time.Second, 3 * time.Second, 4 * time.Second, 4500 * time.Millisecond, 5 * time.Second} {
		phi, suspect := d.Suspicion(last.Add(silence))
		fmt.Printf("after %v: phi %.1f suspect %v\n", silence, phi, suspect)
	}
	// Output:
	// after 1s: phi 0.0 suspect false
	// after 3s: phi 0.0 suspect false
	// after 4s: phi 0.3 suspect false
	// after 4.5s: phi 7.3 suspect false
	// after 5s: phi 37.6 suspect true
}

// Configuration mistakes are reported by the constructor, naming the
// field.
func ExampleNewMonitor_invalidConfig() {
	tr, _ := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	defer tr.Close()
	_, err := heartbeat.NewMonitor(tr, heartbeat.MonitorConfig{ID: "monitor", Keys: [][]byte{[]byte("secret")}})
	fmt.Println(errors.Is(err, heartbeat.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// heartbeat: invalid config: MonitorConfig.Keys[0] has 6 bytes; use at least 16
}
