package election_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/heartbeat"
)

// The process test re-executes this test binary as election nodes: with
// nodeEnv set, TestMain runs one node instead of the tests.
const (
	nodeEnv = "DISTKIT_ELECTION_NODE" // the algorithm
	idEnv   = "DISTKIT_ELECTION_ID"
)

func TestMain(m *testing.M) {
	if algo := os.Getenv(nodeEnv); algo != "" {
		if err := processNode(algo, os.Getenv(idEnv), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// nodeSetup is what the parent tells a node process once every node has
// bound its sockets.
type nodeSetup struct {
	Store string // the StoreServer's address (lease, sequence)
	Peers []struct{ ID, Addr, Mon string }
}

// processNode is one node in its own process. It binds its UDP sockets
// and prints "addr <election> <monitor>", reads a nodeSetup line, then
// campaigns for ever, printing "leader <id> <token>" for every change it
// observes, until its stdin closes; it then closes everything and
// prints "closed".
func processNode(algo, id string, in io.Reader, out io.Writer) error {
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", a...)
	}
	listen := func() (*heartbeat.UDPTransport, error) {
		return heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	}
	tr, err := listen()
	if err != nil {
		return err
	}
	defer tr.Close()
	var hb, mt *heartbeat.UDPTransport
	mon := "-"
	if algo == "bully" {
		if hb, err = listen(); err != nil {
			return err
		}
		defer hb.Close()
		if mt, err = listen(); err != nil {
			return err
		}
		defer mt.Close()
		mon = mt.LocalAddr()
	}
	say("addr %s %s", tr.LocalAddr(), mon)
	rd := bufio.NewReader(in)
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("node %s: reading its setup: %w", id, err)
	}
	var setup nodeSetup
	if err := json.Unmarshal(line, &setup); err != nil {
		return err
	}
	var peers []election.Peer
	for _, p := range setup.Peers {
		peers = append(peers, election.Peer{ID: p.ID, Addr: p.Addr})
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	var el election.Elector
	switch algo {
	case "lease", "sequence":
		rs, err := election.NewRemoteStore(tr, setup.Store, election.RemoteStoreConfig{Retry: 20 * time.Millisecond, Timeout: 300 * time.Millisecond})
		if err != nil {
			return err
		}
		defer rs.Close()
		cfg := udpLease
		cfg.ID = id
		if algo == "lease" {
			el, err = election.NewLease(rs, cfg)
		} else {
			el, err = election.NewSequence(rs, cfg)
		}
		if err != nil {
			return err
		}
	case "raft":
		cfg := udpRaft
		cfg.ID, cfg.Peers = id, peers
		if el, err = election.NewRaft(tr, cfg); err != nil {
			return err
		}
	case "bully":
		var hpeers []heartbeat.Peer
		var targets []string
		for _, p := range setup.Peers {
			hpeers = append(hpeers, heartbeat.Peer{ID: p.ID})
			targets = append(targets, p.Mon)
		}
		m, err := heartbeat.NewMonitor(mt, heartbeat.MonitorConfig{ID: id + "/mon", Interval: udpHB,
			Detector: heartbeat.DeadlineConfig{Timeout: 3 * udpHB}, DeadAfter: udpHB / 2, Peers: hpeers})
		if err != nil {
			return err
		}
		defer m.Close()
		n, err := heartbeat.NewNode(hb, heartbeat.NodeConfig{ID: id, Interval: udpHB, Targets: targets})
		if err != nil {
			return err
		}
		defer n.Close()
		wg.Go(func() { _ = m.Run(ctx) })
		wg.Go(func() { _ = n.Run(ctx) })
		cfg := udpBully
		cfg.ID, cfg.Peers = id, peers
		if el, err = election.NewBully(tr, m, cfg); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown algorithm %q", algo)
	}
	defer el.Close()
	obs := el.Observe()
	wg.Go(func() { _ = el.Run(ctx) })
	wg.Go(func() {
		for {
			ev, err := obs.Next(ctx)
			if err != nil {
				return
			}
			say("leader %s %d", ev.Leader.ID, ev.Leader.Token)
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			t, err := el.Campaign(ctx)
			if err != nil {
				continue
			}
			select {
			case <-t.Done():
			case <-ctx.Done():
			}
		}
	})
	_, _ = io.Copy(io.Discard, rd) // until the parent closes stdin
	cancel()
	el.Close()
	wg.Wait()
	say("closed")
	return nil
}

// nodeProc is a node process as the parent sees it.
type nodeProc struct {
	id, addr, mon string
	cmd           *exec.Cmd
	stdin         io.WriteCloser
	addrc         chan struct{}
	exited        chan struct{}
	mu            sync.Mutex
	leader        election.Leader
	closed        bool
	out           []string
}

func (p *nodeProc) view() (election.Leader, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leader, p.closed
}

func startNodeProc(t *testing.T, algo, id string) *nodeProc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	// A race-enabled binary sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), nodeEnv+"="+algo, idEnv+"="+id, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{id: id, cmd: cmd, stdin: stdin, addrc: make(chan struct{}), exited: make(chan struct{})}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			switch {
			case len(f) == 3 && f[0] == "addr":
				p.addr, p.mon = f[1], f[2]
				close(p.addrc)
			case len(f) >= 1 && f[0] == "leader":
				p.leader = election.Leader{}
				if len(f) == 3 {
					tok, _ := strconv.ParseUint(f[2], 10, 64)
					p.leader = election.Leader{ID: f[1], Token: tok}
				}
			case len(f) == 1 && f[0] == "closed":
				p.closed = true
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// TestProcessFailover runs every algorithm between separate processes
// (this test binary re-executed, one node each) over UDP on loopback: the
// nodes agree on a leader, its process is killed, the survivors agree on
// a successor with a greater token, and a node whose stdin closes shuts
// down cleanly (Close returns and the process exits 0).
func TestProcessFailover(t *testing.T) {
	for _, algo := range []string{"lease", "sequence", "raft", "bully"} {
		t.Run(algo, func(t *testing.T) {
			t.Parallel() // with each other only: the test is not parallel
			var store string
			if algo == "lease" || algo == "sequence" {
				tr := listenUDP(t)
				srv, err := election.NewStoreServer(tr, election.NewMemoryStore(), nil)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); _ = srv.Run(ctx) }()
				t.Cleanup(func() { cancel(); <-done; tr.Close() })
				store = tr.LocalAddr()
			}
			var procs []*nodeProc
			for i := range 3 {
				procs = append(procs, startNodeProc(t, algo, fmt.Sprintf("node-%d", i+1)))
			}
			for _, p := range procs {
				select {
				case <-p.addrc:
				case <-p.exited:
					t.Fatalf("%s exited before binding its sockets", p.id)
				case <-time.After(30 * time.Second):
					t.Fatalf("%s did not report its address", p.id)
				}
			}
			for _, p := range procs {
				setup := nodeSetup{Store: store}
				for _, q := range procs {
					if q != p {
						setup.Peers = append(setup.Peers, struct{ ID, Addr, Mon string }{q.id, q.addr, q.mon})
					}
				}
				b, _ := json.Marshal(setup)
				if _, err := p.stdin.Write(append(b, '\n')); err != nil {
					t.Fatal(err)
				}
			}
			// agreed waits, in real time, until every process in ps sees
			// the same leader, one of ps, with a token above min.
			agreed := func(ps []*nodeProc, min uint64) election.Leader {
				t.Helper()
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) {
					l, _ := ps[0].view()
					ok := l.ID != "" && l.Token > min
					member := false
					for _, p := range ps {
						v, _ := p.view()
						ok = ok && v == l
						member = member || p.id == l.ID
					}
					if ok && member {
						return l
					}
					time.Sleep(5 * time.Millisecond)
				}
				var views []string
				for _, p := range ps {
					p.mu.Lock()
					views = append(views, fmt.Sprintf("%s: %+v (%d lines, last %q)", p.id, p.leader, len(p.out), p.out[len(p.out)-1]))
					p.mu.Unlock()
				}
				t.Fatalf("no agreed leader with a token above %d:\n%s", min, strings.Join(views, "\n"))
				return election.Leader{}
			}
			first := agreed(procs, 0)
			var rest []*nodeProc
			for _, p := range procs {
				if p.id == first.ID {
					if err := p.cmd.Process.Kill(); err != nil {
						t.Fatal(err)
					}
					<-p.exited
					_ = p.cmd.Wait()
				} else {
					rest = append(rest, p)
				}
			}
			killed := time.Now()
			second := agreed(rest, first.Token)
			t.Logf("%s: process %s (token %d) killed; %s leads with token %d after %v", algo, first.ID, first.Token, second.ID, second.Token, time.Since(killed).Round(time.Millisecond))
			for _, p := range rest {
				p.stdin.Close()
			}
			for _, p := range rest {
				<-p.exited
				if err := p.cmd.Wait(); err != nil {
					t.Errorf("%s did not shut down cleanly: %v", p.id, err)
				}
				if _, closed := p.view(); !closed {
					t.Errorf("%s exited without closing its elector", p.id)
				}
			}
		})
	}
}
