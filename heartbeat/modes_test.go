package heartbeat_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
)

var soak = flag.Bool("soak", false, "run the seeded fault scenarios over 1000 seeds per mode instead of 40")

func seeds() int {
	if *soak {
		return 1000
	}
	return 40
}

type mode struct {
	name              string
	pull, ack, quorum bool
}

var modes = []mode{
	{name: "push"},
	{name: "pull", pull: true},
	{name: "acked", ack: true},
	{name: "quorum", quorum: true},
}

// TestModesUnderFaults runs every mode over many seeds. Each seed draws a
// scenario on a lossy, duplicating, reordering network (1-20 ms delay):
//
//   - n1 crashes for good;
//   - n2 is healthy but cut off from the monitors three times for up to
//     1.5 s;
//   - n3 is partitioned from the monitors for 12 s, then healed;
//   - n4 crashes and restarts 12 s later with a new incarnation;
//   - in quorum mode, monitor m3 is also isolated for 10 s.
//
// and checks: the crashed node is declared dead within its bound and never
// revived; the healthy node is never declared dead (in quorum mode not
// even by the isolated monitor, which alone cannot form a majority);
// partitioned and restarted nodes go dead and come back; every transition
// stream is gap-free and consistent; acknowledged nodes know their paths.
func TestModesUnderFaults(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			t.Parallel()
			for seed := range uint64(seeds()) {
				ok := t.Run(fmt.Sprint(seed), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) { runScenario(t, seed, md) })
				})
				if !ok {
					return // one failing seed with its trace is enough
				}
			}
		})
	}
}

func runScenario(t *testing.T, seed uint64, md mode) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	c := newCluster(t, seed, simnet.LinkConfig{Drop: 0.01, Duplicate: 0.01, Reorder: 0.01, MinDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	defer c.stop()
	monAddrs := []string{"m1"}
	if md.quorum {
		monAddrs = []string{"m1", "m2", "m3"}
	}
	nodeAddrs := []string{"n1", "n2", "n3", "n4"}
	var peers []heartbeat.Peer
	for _, n := range nodeAddrs {
		peers = append(peers, heartbeat.Peer{ID: n, Addr: n})
	}
	mons := map[string]*monHandle{}
	for _, a := range monAddrs {
		cfg := heartbeat.MonitorConfig{Peers: peers, Pull: md.pull}
		if md.quorum {
			cfg.Quorum = slices.DeleteFunc(slices.Clone(monAddrs), func(s string) bool { return s == a })
		}
		mons[a] = c.monitor(a, cfg)
	}
	nodeCfg := heartbeat.NodeConfig{Ack: md.ack, Jitter: 0.1}
	if !md.pull {
		nodeCfg.Targets = monAddrs
	}
	nodes := map[string]*nodeHandle{}
	for _, n := range nodeAddrs {
		nodes[n] = c.node(n, nodeCfg)
	}
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }

	// The fault schedule, as timed events.
	type event struct {
		at time.Duration
		do func()
	}
	var evs []event
	cut := func(n string, on bool) {
		for _, m := range monAddrs {
			if on {
				c.net.Cut(n, m)
				c.net.Cut(m, n)
			} else {
				c.net.Uncut(n, m)
				c.net.Uncut(m, n)
			}
		}
	}
	tc := between(8*time.Second, 14*time.Second)
	evs = append(evs, event{tc, func() { nodes["n1"].kill(); c.net.Crash("n1") }})
	for range 3 {
		s, d := between(5*time.Second, 35*time.Second), between(300*time.Millisecond, 1500*time.Millisecond)
		evs = append(evs, event{s, func() { cut("n2", true) }}, event{s + d, func() { cut("n2", false) }})
	}
	tp := between(10*time.Second, 15*time.Second)
	const long = 12 * time.Second
	evs = append(evs, event{tp, func() { cut("n3", true) }}, event{tp + long, func() { cut("n3", false) }})
	td := between(5*time.Second, 10*time.Second)
	evs = append(evs,
		event{td, func() { nodes["n4"].kill(); c.net.Crash("n4") }},
		event{td + long, func() { c.net.Restart("n4"); nodes["n4"] = c.node("n4", nodeCfg) }})
	ti := between(5*time.Second, 20*time.Second)
	if md.quorum {
		iso := func(on bool) {
			for _, a := range append(slices.Clone(nodeAddrs), "m1", "m2") {
				if on {
					c.net.Cut("m3", a)
					c.net.Cut(a, "m3")
				} else {
					c.net.Uncut("m3", a)
					c.net.Uncut(a, "m3")
				}
			}
		}
		evs = append(evs, event{ti, func() { iso(true) }}, event{ti + 10*time.Second, func() { iso(false) }})
	}
	slices.SortStableFunc(evs, func(a, b event) int { return int(a.at - b.at) })
	for _, e := range evs {
		time.Sleep(time.Until(at(e.at)))
		e.do()
	}
	const end = 45 * time.Second
	time.Sleep(time.Until(at(end)))

	var fails []string
	fail := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	// Crash detection bound: φ suspects within interval + acceptable
	// pause + ~5σ of the last heartbeat (σ inflated by drops), then
	// DeadAfter (3 s) confirms.
	const deadBound = 12 * time.Second
	const reviveBound = 3 * time.Second
	for _, a := range monAddrs {
		mh := mons[a]
		all := mh.rec.all()
		checkSeq(&fails, a, all)
		// In quorum mode a Dead needs a majority.
		for _, tr := range all {
			if md.quorum && tr.To == heartbeat.Dead && len(tr.Agreed) < 2 {
				fail("%s: %s declared dead without a majority: agreed %v", a, tr.Peer, tr.Agreed)
			}
		}
		// n2 is healthy: never dead.
		for _, tr := range mh.rec.of("n2") {
			if tr.To == heartbeat.Dead {
				fail("%s: healthy n2 declared dead at %v", a, tr.At.Sub(t0))
			}
		}
		// n1 crashed: dead by the end everywhere, never alive afterwards.
		if st, _ := mh.m.Peer("n1"); st.State != heartbeat.Dead {
			fail("%s: crashed n1 is %v at the end", a, st.State)
		}
		for _, tr := range mh.rec.of("n1") {
			if tr.To == heartbeat.Alive && tr.At.After(at(tc+deadBound)) {
				fail("%s: crashed n1 revived at %v", a, tr.At.Sub(t0))
			}
		}
		// n3 and n4 are alive at the end (n4 in its new incarnation).
		for _, n := range []string{"n3", "n4"} {
			if st, _ := mh.m.Peer(n); st.State != heartbeat.Alive {
				fail("%s: %s is %v at the end", a, n, st.State)
			}
		}
		if st, _ := mh.m.Peer("n4"); st.Incarnation != nodes["n4"].n.Incarnation() {
			fail("%s: n4 incarnation %d, want the restarted %d", a, st.Incarnation, nodes["n4"].n.Incarnation())
		}
	}
	// Timing bounds at m1, which is never isolated.
	m1 := mons["m1"].rec
	if tr, ok := m1.firstTo("n1", heartbeat.Dead, at(tc)); !ok || tr.At.After(at(tc+deadBound)) {
		fail("m1: crashed n1 not dead within %v of its crash", deadBound)
	}
	if tr, ok := m1.firstTo("n3", heartbeat.Dead, at(tp)); !ok || tr.At.After(at(tp+long)) {
		fail("m1: partitioned n3 not dead during its %v partition", long)
	}
	if tr, ok := m1.firstTo("n3", heartbeat.Alive, at(tp+long)); !ok || tr.At.After(at(tp+long+reviveBound)) {
		fail("m1: n3 not alive within %v of the heal", reviveBound)
	}
	if tr, ok := m1.firstTo("n4", heartbeat.Dead, at(td)); !ok || tr.At.After(at(td+long)) {
		fail("m1: crashed n4 not dead before its restart")
	}
	if tr, ok := m1.firstTo("n4", heartbeat.Alive, at(td+long)); !ok || tr.At.After(at(td+long+reviveBound)) {
		fail("m1: restarted n4 not alive within %v", reviveBound)
	}
	if md.ack {
		for _, n := range []string{"n2", "n3", "n4"} {
			for _, p := range nodes[n].n.Paths() {
				if p.State != heartbeat.Alive || p.RTT <= 0 || p.Monitor != "m1" {
					fail("%s: path %+v at the end, want alive with an RTT", n, p)
				}
			}
		}
	}
	if len(fails) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "seed %d, mode %s: crash n1 %v, partition n3 %v, crash n4 %v, isolate m3 %v\n", seed, md.name, tc, tp, td, ti)
		for _, f := range fails {
			b.WriteString("  " + f + "\n")
		}
		for _, a := range monAddrs {
			fmt.Fprintf(&b, "transitions at %s:\n%s", a, describe(mons[a].rec.all(), t0))
		}
		b.WriteString("network trace (most recent events):\n" + c.trace())
		t.Fatal(b.String())
	}
}

func checkSeq(fails *[]string, who string, ts []heartbeat.Transition) {
	last := map[string]heartbeat.State{}
	for i, tr := range ts {
		switch {
		case tr.Seq != uint64(i+1):
			*fails = append(*fails, fmt.Sprintf("%s: transition %d has Seq %d", who, i+1, tr.Seq))
		case last[tr.Peer] != tr.From:
			*fails = append(*fails, fmt.Sprintf("%s: transition %d of %s from %v, but it was %v", who, tr.Seq, tr.Peer, tr.From, last[tr.Peer]))
		case tr.From == tr.To:
			*fails = append(*fails, fmt.Sprintf("%s: no-op transition %d", who, tr.Seq))
		}
		last[tr.Peer] = tr.To
	}
}
