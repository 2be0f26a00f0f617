// Command leader-election runs five Raft electors on a simulated network
// in real time. The leader writes to a fenced resource; the program
// stalls the leader and partitions it away, heals the network, then
// kills the new leader, printing who leads with which token and every
// write the fence refused. It stops on its own.
//
//	go run ./examples/leader-election
//	go run ./examples/leader-election -nodes 3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// resource is the protected resource: a log that only takes writes
// through a fence.
type resource struct {
	fence election.Fence
	say   func(format string, a ...any)
	mu    sync.Mutex
	n     int
}

func (r *resource) write(node string, token uint64) error {
	err := r.fence.Do(token, func() error { r.mu.Lock(); r.n++; r.mu.Unlock(); return nil })
	var stale *election.StaleTokenError
	if errors.As(err, &stale) {
		r.say("fence REJECTED a write from %s with token %d (a leader with token %d has written)", node, stale.Token, stale.Highest)
	}
	return err
}

type node struct {
	id    string
	el    *election.RaftElector
	stop  func()
	mu    sync.Mutex
	term  *election.Term
	stall time.Duration // the next write waits this long first (a pause)
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("leader-election", flag.ContinueOnError)
	fs.SetOutput(w)
	size := fs.Int("nodes", 5, "cluster size, 3 to 5")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size < 3 || *size > 5 {
		return fmt.Errorf("-nodes %d: want 3 to 5", *size)
	}
	net, err := simnet.New(simnet.Config{Seed: 1, Default: simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	if err != nil {
		return err
	}
	defer net.Close()
	ids := make([]string, *size)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i+1)
	}
	nodes := map[string]*node{}
	var out sync.Mutex // one line at a time
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(w, format+"\n", a...)
	}
	res := &resource{say: say}
	for _, id := range ids {
		tr, err := simtransport.Listen(net, id)
		if err != nil {
			return err
		}
		var peers []election.Peer
		for _, p := range ids {
			if p != id {
				peers = append(peers, election.Peer{ID: p, Addr: p})
			}
		}
		el, err := election.NewRaft(tr, election.RaftConfig{ID: id, Peers: peers,
			HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
		if err != nil {
			return err
		}
		n := &node{id: id, el: el}
		nctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = el.Run(nctx) })
		wg.Go(func() { n.work(nctx, res) })
		n.stop = func() { cancel(); el.Close(); wg.Wait(); tr.Close() }
		nodes[id] = n
		defer n.stop()
	}
	leader := func(notID string, minToken uint64) (*node, error) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, n := range nodes {
				n.mu.Lock()
				t := n.term
				n.mu.Unlock()
				if n.id != notID && t != nil && t.Err() == nil && t.Token() > minToken {
					return n, nil
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil, errors.New("no leader within 10s")
	}

	first, err := leader("", 0)
	if err != nil {
		return err
	}
	tok1 := first.token()
	say("%d nodes; %s leads with token %d", *size, first.id, tok1)

	say("%s stalls for 1s in the middle of a write, and is partitioned away", first.id)
	first.mu.Lock()
	first.stall = time.Second
	first.mu.Unlock()
	var rest []string
	for _, id := range ids {
		if id != first.id {
			rest = append(rest, id)
		}
	}
	if err := net.Partition([]string{first.id}, rest); err != nil {
		return err
	}
	second, err := leader(first.id, tok1)
	if err != nil {
		return err
	}
	say("%s leads with token %d", second.id, second.token())
	time.Sleep(1200 * time.Millisecond) // the stalled write lands, and is refused

	say("healing the network")
	net.Heal()
	time.Sleep(500 * time.Millisecond)
	cur, err := leader("", 0)
	if err != nil {
		return err
	}
	say("after the heal %s leads with token %d; %s follows it", cur.id, cur.token(), first.id)

	say("killing %s", cur.id)
	net.Crash(cur.id)
	cur.stop()
	third, err := leader(cur.id, cur.token())
	if err != nil {
		return err
	}
	say("%s leads with token %d", third.id, third.token())
	time.Sleep(200 * time.Millisecond)
	st := res.fence.Stats()
	say("done: the resource accepted %d writes and refused %d; highest token %d", st.Accepted, st.Rejected, res.fence.Highest())
	return nil
}

func (n *node) token() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.term.Token()
}

// work campaigns and, while leading, writes every 50 ms.
func (n *node) work(ctx context.Context, res *resource) {
	for ctx.Err() == nil {
		t, err := n.el.Campaign(ctx)
		if err != nil {
			continue
		}
		n.mu.Lock()
		n.term = t
		n.mu.Unlock()
		_ = res.write(n.id, t.Token())
		for t.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-t.Done():
				continue
			case <-time.After(50 * time.Millisecond):
			}
			n.mu.Lock()
			stall := n.stall
			n.stall = 0
			n.mu.Unlock()
			if stall > 0 {
				// The term was live when the write began; the process
				// then stops, and resumes after its term has ended.
				select {
				case <-time.After(stall):
				case <-ctx.Done():
					return
				}
			}
			_ = res.write(n.id, t.Token())
		}
	}
}
