package simnet_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/internal/simnet"
)

func newNet(t *testing.T, cfg simnet.Config, addrs ...string) (*simnet.Network, map[string]*simnet.Node) {
	t.Helper()
	n, err := simnet.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	nodes := make(map[string]*simnet.Node)
	for _, a := range addrs {
		nd, err := n.Node(a)
		require.NoError(t, err)
		nodes[a] = nd
	}
	return n, nodes
}

// drain returns every packet currently in the node's inbox.
func drain(nd *simnet.Node) []simnet.Packet {
	var out []simnet.Packet
	for {
		select {
		case p, ok := <-nd.Inbox():
			if !ok {
				return out
			}
			out = append(out, p)
		default:
			return out
		}
	}
}

func TestPerfectLinkDeliversImmediatelyInOrder(t *testing.T) {
	_, nodes := newNet(t, simnet.Config{}, "a", "b")
	for i := range 10 {
		require.NoError(t, nodes["a"].Send("b", []byte{byte(i)}))
	}
	got := drain(nodes["b"])
	require.Len(t, got, 10)
	for i, p := range got {
		assert.Equal(t, []byte{byte(i)}, p.Payload)
		assert.Equal(t, "a", p.From)
		assert.Equal(t, "b", p.To)
		assert.Equal(t, uint64(i+1), p.Seq)
	}
}

func TestCopiesAreIndependent(t *testing.T) {
	n, nodes := newNet(t, simnet.Config{Seed: 1, Default: simnet.LinkConfig{Duplicate: 1}}, "a", "b")
	buf := []byte("hello")
	require.NoError(t, nodes["a"].Send("b", buf))
	buf[0] = 'J' // the sender reuses its buffer
	got := drain(nodes["b"])
	require.Len(t, got, 2, "Duplicate=1 delivers the packet twice")
	assert.Equal(t, "hello", string(got[0].Payload))
	got[0].Payload[0] = 'X' // one receiver copy is altered
	assert.Equal(t, "hello", string(got[1].Payload))
	assert.Equal(t, got[0].Seq, got[1].Seq)
	assert.Equal(t, uint64(1), n.Stats().Duplicated)
}

func TestDelaysRespectedOnFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := simnet.Config{Seed: 7, Default: simnet.LinkConfig{MinDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}}
		_, nodes := newNet(t, cfg, "a", "b")
		start := time.Now()
		const count = 200
		for i := range count {
			require.NoError(t, nodes["a"].Send("b", []byte{byte(i)}))
		}
		synctest.Wait()
		assert.Empty(t, drain(nodes["b"]), "nothing arrives before MinDelay")

		prev := -1
		var last time.Duration
		for range count {
			p, err := nodes["b"].Recv(t.Context())
			require.NoError(t, err)
			took := time.Since(start)
			require.GreaterOrEqual(t, took, 10*time.Millisecond)
			require.LessOrEqual(t, took, 50*time.Millisecond)
			require.Greater(t, int(p.Payload[0]), prev, "FIFO link keeps send order")
			prev = int(p.Payload[0])
			last = took
		}
		// With 200 draws over a 40ms range, the last FIFO delivery lands near
		// the maximum: the order was kept by holding packets, not by luck.
		assert.Greater(t, last, 45*time.Millisecond)
	})
}

func TestReorderLetsPacketsOvertake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := simnet.Config{Seed: 3, Default: simnet.LinkConfig{Reorder: 1, MinDelay: time.Millisecond, MaxDelay: 100 * time.Millisecond}}
		_, nodes := newNet(t, cfg, "a", "b")
		for i := range 50 {
			require.NoError(t, nodes["a"].Send("b", []byte{byte(i)}))
		}
		time.Sleep(time.Second)
		got := drain(nodes["b"])
		require.Len(t, got, 50)
		inversions := 0
		for i := 1; i < len(got); i++ {
			if got[i].Payload[0] < got[i-1].Payload[0] {
				inversions++
			}
		}
		assert.Positive(t, inversions)
	})
}

// run sends a fixed workload over a lossy, delaying, duplicating network
// and returns what each node received, rendered as text.
func run(t *testing.T, seed uint64) string {
	var out strings.Builder
	synctest.Test(t, func(t *testing.T) {
		cfg := simnet.Config{Seed: seed, Default: simnet.LinkConfig{
			Drop: 0.2, Duplicate: 0.1, Reorder: 0.3, MinDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond,
		}}
		n, nodes := newNet(t, cfg, "a", "b", "c")
		addrs := []string{"a", "b", "c"}
		for i := range 300 {
			from, to := addrs[i%3], addrs[(i+1+i/3)%3]
			if from == to {
				continue
			}
			require.NoError(t, nodes[from].Send(to, fmt.Appendf(nil, "%d", i)))
			if i%17 == 0 {
				time.Sleep(3 * time.Millisecond)
			}
		}
		time.Sleep(time.Second)
		for _, a := range addrs {
			for _, p := range drain(nodes[a]) {
				fmt.Fprintf(&out, "%s<-%s:%s@%v ", a, p.From, p.Payload, p.SentAt.UnixNano())
			}
		}
		fmt.Fprintf(&out, "%+v", n.Stats())
	})
	return out.String()
}

func TestDeterministicForSeed(t *testing.T) {
	first := run(t, 42)
	for range 3 {
		require.Equal(t, first, run(t, 42), "same seed, same sends, same deliveries")
	}
	assert.NotEqual(t, first, run(t, 43), "another seed gives another run")
}

func TestPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := simnet.Config{Default: simnet.LinkConfig{MinDelay: 5 * time.Millisecond, MaxDelay: 5 * time.Millisecond}}
		n, nodes := newNet(t, cfg, "a", "b", "c", "d")
		require.NoError(t, nodes["a"].Send("c", []byte("in flight")))
		require.NoError(t, n.Partition([]string{"a", "b"}, []string{"c"}))
		// "d" is named nowhere: it joins the implicit group of unnamed nodes.
		for _, from := range []string{"a", "b", "c", "d"} {
			for _, to := range []string{"a", "b", "c", "d"} {
				if from != to {
					require.NoError(t, nodes[from].Send(to, []byte(from)))
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
		got := map[string][]string{}
		for a, nd := range nodes {
			for _, p := range drain(nd) {
				got[a] = append(got[a], p.From)
			}
		}
		assert.Equal(t, []string{"b"}, got["a"])
		assert.Equal(t, []string{"a"}, got["b"])
		assert.Empty(t, got["c"], "neither the in-flight packet nor new ones cross the partition")
		assert.Empty(t, got["d"])
		assert.Equal(t, uint64(11), n.Stats().DroppedPartition)

		n.Heal()
		require.NoError(t, nodes["c"].Send("a", []byte("after heal")))
		time.Sleep(10 * time.Millisecond)
		require.Len(t, drain(nodes["a"]), 1)
	})
}

func TestOneWayCut(t *testing.T) {
	n, nodes := newNet(t, simnet.Config{}, "a", "b")
	n.Cut("a", "b")
	require.NoError(t, nodes["a"].Send("b", []byte("x")))
	require.NoError(t, nodes["b"].Send("a", []byte("y")))
	assert.Empty(t, drain(nodes["b"]))
	assert.Len(t, drain(nodes["a"]), 1)
	n.Uncut("a", "b")
	require.NoError(t, nodes["a"].Send("b", []byte("x")))
	assert.Len(t, drain(nodes["b"]), 1)
}

func TestCrashAndRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := simnet.Config{Default: simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: time.Millisecond}}
		n, nodes := newNet(t, cfg, "a", "b")
		require.NoError(t, n.SetLink("a", "b", simnet.LinkConfig{})) // a->b immediate
		require.NoError(t, nodes["a"].Send("b", []byte("queued in inbox")))
		require.NoError(t, nodes["b"].Send("a", []byte("in flight from b")))
		require.NoError(t, nodes["a"].Send("b", []byte("x")))
		n.Crash("b")
		assert.True(t, n.Crashed("b"))
		assert.Empty(t, drain(nodes["b"]), "the inbox is discarded")
		require.NoError(t, nodes["a"].Send("b", []byte("to crashed")))
		require.NoError(t, nodes["b"].Send("a", []byte("from crashed")))
		time.Sleep(5 * time.Millisecond)
		assert.Empty(t, drain(nodes["a"]), "nothing from a crashed node, not even what was in flight")
		assert.Empty(t, drain(nodes["b"]))

		n.Restart("b")
		require.NoError(t, nodes["a"].Send("b", []byte("after restart")))
		time.Sleep(5 * time.Millisecond)
		got := drain(nodes["b"])
		require.Len(t, got, 1)
		assert.Equal(t, "after restart", string(got[0].Payload))
		assert.Equal(t, uint64(5), n.Stats().DroppedCrash)
	})
}

func TestInboxOverflowDrops(t *testing.T) {
	n, nodes := newNet(t, simnet.Config{InboxSize: 2}, "a", "b")
	for range 5 {
		require.NoError(t, nodes["a"].Send("b", nil))
	}
	assert.Len(t, drain(nodes["b"]), 2)
	s := n.Stats()
	assert.Equal(t, uint64(3), s.DroppedOverflow)
	assert.Equal(t, s.Sent, s.Delivered+s.Dropped)
}

func TestUnknownDestinationIsDropped(t *testing.T) {
	n, nodes := newNet(t, simnet.Config{}, "a")
	require.NoError(t, nodes["a"].Send("nobody", []byte("x")))
	assert.Equal(t, uint64(1), n.Stats().DroppedNoRoute)
}

func TestRandomDropRate(t *testing.T) {
	n, nodes := newNet(t, simnet.Config{Seed: 9, InboxSize: 10_000, Default: simnet.LinkConfig{Drop: 0.3}}, "a", "b")
	for range 10_000 {
		require.NoError(t, nodes["a"].Send("b", nil))
	}
	s := n.Stats()
	assert.InDelta(t, 3000, s.DroppedRandom, 200)
	assert.Equal(t, s.Sent, s.Delivered+s.Dropped)
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  simnet.LinkConfig
	}{
		{"drop above one", simnet.LinkConfig{Drop: 1.5}},
		{"negative duplicate", simnet.LinkConfig{Duplicate: -0.1}},
		{"NaN reorder", simnet.LinkConfig{Reorder: nan()}},
		{"negative delay", simnet.LinkConfig{MinDelay: -1}},
		{"min above max", simnet.LinkConfig{MinDelay: 2, MaxDelay: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := simnet.New(simnet.Config{Default: tc.cfg})
			require.ErrorIs(t, err, simnet.ErrInvalidConfig)
			n, _ := newNet(t, simnet.Config{})
			require.ErrorIs(t, n.SetLink("a", "b", tc.cfg), simnet.ErrInvalidConfig)
			require.ErrorIs(t, n.SetDefault(tc.cfg), simnet.ErrInvalidConfig)
		})
	}
	_, err := simnet.New(simnet.Config{InboxSize: -1})
	require.ErrorIs(t, err, simnet.ErrInvalidConfig)
	n, _ := newNet(t, simnet.Config{})
	require.ErrorIs(t, n.Partition([]string{"a"}, []string{"a", "b"}), simnet.ErrInvalidConfig)
}

func nan() float64 { zero := 0.0; return zero / zero }

func TestAddresses(t *testing.T) {
	n, nodes := newNet(t, simnet.Config{}, "a")
	_, err := n.Node("")
	require.ErrorIs(t, err, simnet.ErrInvalidAddr)
	_, err = n.Node("a")
	require.ErrorIs(t, err, simnet.ErrAddrInUse)
	require.NoError(t, nodes["a"].Close())
	require.NoError(t, nodes["a"].Close(), "Close is idempotent")
	require.ErrorIs(t, nodes["a"].Send("a", nil), simnet.ErrClosed)
	again, err := n.Node("a")
	require.NoError(t, err, "a closed node's address can be reused")
	assert.Equal(t, []string{"a"}, n.Nodes())
	assert.Equal(t, "a", again.Addr())
}

func TestCloseLeavesNothingRunning(t *testing.T) {
	// synctest.Test fails if any goroutine of the bubble outlives it.
	synctest.Test(t, func(t *testing.T) {
		n, err := simnet.New(simnet.Config{Default: simnet.LinkConfig{MinDelay: time.Second, MaxDelay: 2 * time.Second}})
		require.NoError(t, err)
		a, _ := n.Node("a")
		b, _ := n.Node("b")
		recvErr := make(chan error, 1)
		go func() {
			for {
				if _, err := b.Recv(context.Background()); err != nil {
					recvErr <- err
					return
				}
			}
		}()
		for range 100 {
			require.NoError(t, a.Send("b", []byte("x")))
		}
		time.Sleep(1500 * time.Millisecond) // some delivered, some still pending
		require.NoError(t, n.Close())
		require.NoError(t, n.Close(), "Close is idempotent")
		require.ErrorIs(t, <-recvErr, simnet.ErrClosed, "a receiver is released by Close")
		require.ErrorIs(t, a.Send("b", nil), simnet.ErrClosed)
		_, err = n.Node("c")
		require.ErrorIs(t, err, simnet.ErrClosed)
	})
}

func TestRecvHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, nodes := newNet(t, simnet.Config{}, "a")
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := nodes["a"].Recv(ctx)
		require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	})
}

func TestTrace(t *testing.T) {
	n, nodes := newNet(t, simnet.Config{Trace: true, TraceLimit: 4}, "a", "b")
	n.Cut("a", "b")
	for i := range 3 {
		require.NoError(t, nodes["a"].Send("b", []byte{byte(i)}))
	}
	tr := n.Trace()
	require.Len(t, tr, 4, "bounded to the most recent events")
	assert.Equal(t, simnet.EventDrop, tr[3].Kind)
	assert.Equal(t, uint64(3), tr[3].Seq)
	assert.Equal(t, "partition", tr[3].Detail)
	var sb strings.Builder
	require.NoError(t, n.WriteTrace(&sb))
	assert.Contains(t, sb.String(), "drop      a->b #3 (1 B) partition")
	assert.Contains(t, sb.String(), "stats:")
}
