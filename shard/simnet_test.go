package shard_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/shard"
)

// This file runs the resharding protocol with every shard a server on a
// simulated network that drops, duplicates, delays and reorders packets and
// crashes and restarts servers, over many seeds. The router's resources are
// server addresses; a client retries each request until it is answered, and
// every write carries a version so that a duplicated or late packet can
// never undo a newer write. The Mover copies and cleans up over the same
// network.

type wireEntry struct {
	Val     []byte
	Ver     uint64
	Deleted bool
}

type wireMsg struct {
	ID   uint64
	Op   string // get, put, del, putIfAbsent, snapshot, deleteMove, purgeMove
	Key  string
	Val  []byte
	Ver  uint64
	Move *shard.Move
	// Replies.
	Entry   *wireEntry
	Entries map[string]wireEntry
}

// server is one shard's store behind a simnet node.
type server struct {
	node *simnet.Node
	data map[string]wireEntry // only the server goroutine touches it
}

func (s *server) run() {
	for p := range s.node.Inbox() {
		var m wireMsg
		if err := json.Unmarshal(p.Payload, &m); err != nil {
			panic(err)
		}
		reply := wireMsg{ID: m.ID}
		cur, ok := s.data[m.Key]
		switch m.Op {
		case "get":
			if ok {
				reply.Entry = &cur
			}
		case "put", "del":
			if !ok || m.Ver > cur.Ver {
				s.data[m.Key] = wireEntry{Val: m.Val, Ver: m.Ver, Deleted: m.Op == "del"}
			}
		case "putIfAbsent":
			if !ok {
				s.data[m.Key] = wireEntry{Val: m.Val, Ver: m.Ver}
			}
		case "snapshot":
			reply.Entries = map[string]wireEntry{}
			for k, e := range s.data {
				if !e.Deleted && m.Move.Contains(k) {
					reply.Entries[k] = e
				}
			}
		case "deleteMove", "purgeMove":
			for k, e := range s.data {
				if (m.Op == "deleteMove" || e.Deleted) && m.Move.Contains(k) {
					delete(s.data, k)
				}
			}
		}
		b, _ := json.Marshal(reply)
		_ = s.node.Send(p.From, b) // a lost reply is retried by the client
	}
}

// client sends requests and retries them until a reply arrives.
type client struct {
	node    *simnet.Node
	next    atomic.Uint64
	mu      sync.Mutex
	waiting map[uint64]chan wireMsg
}

func (c *client) run() {
	for p := range c.node.Inbox() {
		var m wireMsg
		if err := json.Unmarshal(p.Payload, &m); err != nil {
			panic(err)
		}
		c.mu.Lock()
		ch := c.waiting[m.ID]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default: // a duplicate reply
			}
		}
	}
}

func (c *client) call(ctx context.Context, to string, m wireMsg) (wireMsg, error) {
	m.ID = c.next.Add(1)
	ch := make(chan wireMsg, 1)
	c.mu.Lock()
	c.waiting[m.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, m.ID)
		c.mu.Unlock()
	}()
	b, _ := json.Marshal(m)
	for {
		if err := c.node.Send(to, b); err != nil {
			return wireMsg{}, err
		}
		select {
		case r := <-ch:
			return r, nil
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return wireMsg{}, ctx.Err()
		}
	}
}

// netKV is the KV protocol of shard.KV over the network.
type netKV struct {
	c       *client
	router  *shard.Router[string]
	version atomic.Uint64
}

func (kv *netKV) get(ctx context.Context, key string) (string, error) {
	var val string
	err := kv.router.Do(key, func(rt shard.Route[string]) error {
		r, err := kv.c.call(ctx, rt.Res, wireMsg{Op: "get", Key: key})
		if err != nil {
			return err
		}
		if r.Entry == nil && rt.Fallback != "" {
			if r, err = kv.c.call(ctx, rt.FallbackRes, wireMsg{Op: "get", Key: key}); err != nil {
				return err
			}
			if r.Entry != nil && r.Entry.Deleted {
				r.Entry = nil
			}
		}
		if r.Entry == nil || r.Entry.Deleted {
			return shard.ErrNotFound
		}
		val = string(r.Entry.Val)
		return nil
	})
	return val, err
}

func (kv *netKV) write(ctx context.Context, op, key, val string) error {
	return kv.router.Do(key, func(rt shard.Route[string]) error {
		_, err := kv.c.call(ctx, rt.Res, wireMsg{Op: op, Key: key, Val: []byte(val), Ver: kv.version.Add(1)})
		return err
	})
}

// Copy implements shard.Mover over the network.
func (kv *netKV) Copy(ctx context.Context, mv shard.Move) error {
	from, _ := kv.router.Resource(mv.From)
	to, _ := kv.router.Resource(mv.To)
	r, err := kv.c.call(ctx, from, wireMsg{Op: "snapshot", Move: &mv})
	if err != nil {
		return err
	}
	for k, e := range r.Entries {
		if _, err := kv.c.call(ctx, to, wireMsg{Op: "putIfAbsent", Key: k, Val: e.Val, Ver: e.Ver}); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup implements shard.Mover over the network.
func (kv *netKV) Cleanup(ctx context.Context, mv shard.Move) error {
	from, _ := kv.router.Resource(mv.From)
	to, _ := kv.router.Resource(mv.To)
	if _, err := kv.c.call(ctx, from, wireMsg{Op: "deleteMove", Move: &mv}); err != nil {
		return err
	}
	_, err := kv.c.call(ctx, to, wireMsg{Op: "purgeMove", Move: &mv})
	return err
}

func addr(name string) string { return "shard/" + name }

// reshardOverNetwork runs one seed and returns a description of the first
// violated invariant, or "".
func reshardOverNetwork(t *testing.T, seed uint64) (failure string, net *simnet.Network) {
	net, err := simnet.New(simnet.Config{
		Seed:  seed,
		Trace: true,
		Default: simnet.LinkConfig{
			Drop: 0.05, Duplicate: 0.05, Reorder: 0.2,
			MinDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer net.Close()
	start := func(name string) string {
		nd, err := net.Node(addr(name))
		if err != nil {
			t.Fatal(err)
		}
		s := &server{node: nd, data: map[string]wireEntry{}}
		wg.Go(s.run)
		return addr(name)
	}
	cn, err := net.Node("client")
	if err != nil {
		t.Fatal(err)
	}
	c := &client{node: cn, waiting: map[uint64]chan wireMsg{}}
	wg.Go(c.run)

	m, err := shard.NewHashMap(shard.HashConfig{Partitions: 64}, "s0", "s1", "s2")
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]string{}
	for _, s := range m.Shards() {
		res[s] = start(s)
	}
	router, err := shard.NewRouter(m, res)
	if err != nil {
		t.Fatal(err)
	}
	kv := &netKV{c: c, router: router}
	ctx := context.Background()

	const nKeys, writers, opsPerWriter = 60, 3, 40
	keyOf := func(i int) string { return fmt.Sprintf("k%02d", i) }
	deletable := func(i int) bool { return i%4 == 0 }
	for i := range nKeys {
		if err := kv.write(ctx, "put", keyOf(i), "0"); err != nil {
			t.Fatal(err)
		}
	}

	var failMu sync.Mutex
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if failure == "" {
			failure = fmt.Sprintf(format, args...)
		}
	}
	models := make([]map[string]string, writers)
	var work sync.WaitGroup
	for w := range writers {
		models[w] = map[string]string{}
		work.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for n := range opsPerWriter {
				i := rng.IntN(nKeys/writers)*writers + w
				k := keyOf(i)
				if deletable(i) && rng.IntN(3) == 0 {
					if err := kv.write(ctx, "del", k, ""); err != nil {
						fail("writer %d: delete %s: %v", w, k, err)
						return
					}
					models[w][k] = ""
					if v, err := kv.get(ctx, k); !errors.Is(err, shard.ErrNotFound) {
						fail("writer %d: %s deleted, then read %q, %v", w, k, v, err)
					}
					continue
				}
				val := strconv.Itoa(n + 1)
				if err := kv.write(ctx, "put", k, val); err != nil {
					fail("writer %d: put %s: %v", w, k, err)
					return
				}
				models[w][k] = val
				if v, err := kv.get(ctx, k); err != nil || v != val {
					fail("writer %d: %s = %s written, then read %q, %v", w, k, val, v, err)
				}
			}
		})
	}
	work.Go(func() { // a reader of keys that are never deleted
		rng := rand.New(rand.NewPCG(seed, 99))
		for range 2 * opsPerWriter {
			i := rng.IntN(nKeys)
			if deletable(i) {
				continue
			}
			if _, err := kv.get(ctx, keyOf(i)); err != nil {
				fail("reader: %s: %v", keyOf(i), err)
			}
		}
	})
	work.Go(func() { // crash and restart shard servers
		rng := rand.New(rand.NewPCG(seed, 7))
		for range 3 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			victim := addr(fmt.Sprint("s", rng.IntN(3)))
			net.Crash(victim)
			time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
			net.Restart(victim)
		}
	})
	work.Go(func() { // reshard while all of the above runs
		cur := m
		for _, change := range []func(*shard.Map) (*shard.Map, error){
			func(m *shard.Map) (*shard.Map, error) { return m.AddShards("s3") },
			func(m *shard.Map) (*shard.Map, error) { return m.RemoveShards("s1") },
			func(m *shard.Map) (*shard.Map, error) { return m.AddShards("s4") },
		} {
			next, err := change(cur)
			if err != nil {
				fail("map change: %v", err)
				return
			}
			add := map[string]string{}
			for _, s := range next.Shards() {
				if !cur.Has(s) {
					add[s] = start(s)
				}
			}
			if err := router.Reshard(ctx, next, kv, add); err != nil {
				fail("reshard to epoch %d: %v", next.Epoch(), err)
				return
			}
			cur = next
		}
	})
	work.Wait()
	if failure != "" {
		return failure, net
	}

	// Every key has its latest value, read through the final map.
	want := map[string]string{}
	for i := range nKeys {
		want[keyOf(i)] = "0"
	}
	for _, model := range models {
		for k, v := range model {
			want[k] = v
		}
	}
	for k, v := range want {
		got, err := kv.get(ctx, k)
		if v == "" {
			if !errors.Is(err, shard.ErrNotFound) {
				return fmt.Sprintf("final: %s deleted, read %q, %v", k, got, err), net
			}
			continue
		}
		if err != nil || got != v {
			return fmt.Sprintf("final: %s = %q, read %q, %v", k, v, got, err), net
		}
	}
	if got := strings.Join(router.Map().Shards(), ","); got != "s0,s2,s3,s4" {
		return "final shards " + got, net
	}
	return "", net
}

func TestReshardOverSimulatedNetwork(t *testing.T) {
	seeds := uint64(24)
	if testing.Short() {
		seeds = 4
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				failure, net := reshardOverNetwork(t, seed)
				if failure != "" {
					var b strings.Builder
					_ = net.WriteTrace(&b)
					t.Fatalf("seed %d: %s\nnetwork trace:\n%s", seed, failure, b.String())
				}
			})
		})
	}
}
