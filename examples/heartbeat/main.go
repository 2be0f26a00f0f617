// Command heartbeat runs a monitor and five nodes that push signed,
// acknowledged heartbeats over UDP on loopback. It kills one node, prints
// its φ as suspicion grows, shows it become suspect and then dead,
// restarts it, shows it alive again in a new incarnation, and exits.
//
//	go run ./examples/heartbeat [-nodes 5] [-interval 100ms] [-kill node-3]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/distkit/distkit/heartbeat"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "heartbeat:", err)
		os.Exit(1)
	}
}

// node is one running heartbeat.Node with its socket.
type node struct {
	n    *heartbeat.Node
	tr   *heartbeat.UDPTransport
	stop context.CancelFunc
	done chan error
}

func (n *node) kill() error {
	n.stop()
	err := <-n.done
	_ = n.n.Close()
	_ = n.tr.Close()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("heartbeat", flag.ContinueOnError)
	fs.SetOutput(w)
	count := fs.Int("nodes", 5, "number of nodes")
	interval := fs.Duration("interval", 100*time.Millisecond, "heartbeat interval")
	victim := fs.String("kill", "node-3", "the node to kill and restart")
	warmup := fs.Duration("warmup", 0, "how long all nodes run before the kill (0: 10 intervals)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *count < 1 || *interval <= 0 {
		return fmt.Errorf("need at least one node and a positive interval")
	}
	if *warmup <= 0 {
		*warmup = 10 * *interval
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	key := []byte("example shared key, 32 bytes....")

	monTr, err := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	if err != nil {
		return err
	}
	defer monTr.Close()
	var peers []heartbeat.Peer
	for i := 1; i <= *count; i++ {
		peers = append(peers, heartbeat.Peer{ID: fmt.Sprintf("node-%d", i)})
	}
	found := false
	for _, p := range peers {
		found = found || p.ID == *victim
	}
	if !found {
		return fmt.Errorf("-kill %q is not one of the %d nodes", *victim, *count)
	}
	// φ accrual with Akka's defaults, scaled to the interval: acceptable
	// pause 3 intervals, σ at least interval/10, threshold 8.
	mon, err := heartbeat.NewMonitor(monTr, heartbeat.MonitorConfig{
		ID: "monitor", Interval: *interval, Peers: peers, Keys: [][]byte{key},
	})
	if err != nil {
		return err
	}
	defer mon.Close()
	sub := mon.Subscribe()
	monDone := make(chan error, 1)
	go func() { monDone <- mon.Run(ctx) }()
	transitions := make(chan heartbeat.Transition)
	go func() {
		defer close(transitions)
		for {
			t, err := sub.Next(ctx)
			if err != nil {
				return
			}
			select {
			case transitions <- t:
			case <-ctx.Done():
				return
			}
		}
	}()

	start := time.Now()
	stamp := func() string { return fmt.Sprintf("%6.2fs", time.Since(start).Seconds()) }
	startNode := func(id string) (*node, error) {
		tr, err := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
		if err != nil {
			return nil, err
		}
		n, err := heartbeat.NewNode(tr, heartbeat.NodeConfig{
			ID: id, Interval: *interval, Jitter: 0.1, Targets: []string{monTr.LocalAddr()},
			Ack: true, Keys: [][]byte{key},
			Diagnostics: func() []heartbeat.Metric {
				return []heartbeat.Metric{{Key: "uptime_s", Value: time.Since(start).Seconds()}}
			},
		})
		if err != nil {
			_ = tr.Close()
			return nil, err
		}
		nctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- n.Run(nctx) }()
		return &node{n: n, tr: tr, stop: stop, done: done}, nil
	}
	nodes := map[string]*node{}
	defer func() {
		for _, n := range nodes {
			_ = n.kill()
		}
	}()
	for _, p := range peers {
		n, err := startNode(p.ID)
		if err != nil {
			return err
		}
		nodes[p.ID] = n
	}
	fmt.Fprintf(w, "%s monitor on %s, %d nodes heartbeating every %v\n", stamp(), monTr.LocalAddr(), *count, *interval)

	// The scenario advances on transitions: all alive, kill, suspect,
	// dead, restart, alive.
	const (
		starting = iota
		warming
		killed
		suspected
		restarted
	)
	phase, alive := starting, 0
	phiTicker := time.NewTicker(*interval)
	defer phiTicker.Stop()
	var killAt <-chan time.Time
	for {
		select {
		case <-killAt:
			killAt = nil
			st, _ := mon.Peer(*victim)
			fmt.Fprintf(w, "%s killing %s (phi %.2f after %d heartbeats)\n", stamp(), *victim, st.Level, st.Heartbeats)
			if err := nodes[*victim].kill(); err != nil {
				return err
			}
			delete(nodes, *victim)
			phase = killed
		case <-ctx.Done():
			return fmt.Errorf("scenario did not finish: %w", ctx.Err())
		case err := <-monDone:
			return fmt.Errorf("monitor stopped: %w", err)
		case <-phiTicker.C:
			if phase == killed || phase == suspected {
				st, _ := mon.Peer(*victim)
				fmt.Fprintf(w, "%s   %s phi %6.2f (%v)\n", stamp(), *victim, st.Level, st.State)
			}
		case t, ok := <-transitions:
			if !ok {
				return errors.New("subscription ended early")
			}
			fmt.Fprintf(w, "%s %s: %v -> %v (phi %.2f, incarnation %d)\n", stamp(), t.Peer, t.From, t.To, t.Level, t.Incarnation)
			switch {
			case phase == starting && t.To == heartbeat.Alive:
				if alive++; alive == *count {
					fmt.Fprintf(w, "%s all %d nodes alive\n", stamp(), *count)
					killAt = time.After(*warmup)
					phase = warming
				}
			case phase == killed && t.Peer == *victim && t.To == heartbeat.Suspect:
				phase = suspected
			case phase == suspected && t.Peer == *victim && t.To == heartbeat.Dead:
				fmt.Fprintf(w, "%s restarting %s\n", stamp(), *victim)
				n, err := startNode(*victim)
				if err != nil {
					return err
				}
				nodes[*victim] = n
				phase = restarted
			case phase == restarted && t.Peer == *victim && t.To == heartbeat.Alive:
				fmt.Fprintf(w, "%s %s is back; final view:\n", stamp(), *victim)
				for _, st := range mon.Peers() {
					var diag string
					for _, m := range st.Diagnostics {
						diag += fmt.Sprintf(" %s=%.2f", m.Key, m.Value)
					}
					fmt.Fprintf(w, "  %-8s %-7v phi %5.2f  rtt %-10v heartbeats %4d%s\n", st.ID, st.State, st.Level, st.Timing.RTT.Round(time.Microsecond), st.Heartbeats, diag)
				}
				s := mon.Stats()
				fmt.Fprintf(w, "monitor: %d heartbeats, %d duplicates, %d stale, %d forged, %d transitions\n", s.Heartbeats, s.Duplicates, s.Stale, s.Forged, s.Transitions)
				return nil
			case t.Peer != *victim && t.To != heartbeat.Alive:
				fmt.Fprintf(w, "%s note: healthy %s flapped (a loaded machine can delay heartbeats)\n", stamp(), t.Peer)
			}
		}
	}
}
