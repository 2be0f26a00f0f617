package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distkit/distkit/shard"
)

// customers is the customer store, sharded by customer ID: each key holds
// a customer's orders and their statuses
// ("profile|o0001=completed,o0007=placed").
type customers struct {
	kv      *shard.KV
	keys    []string       // every customer's key
	stripes [64]sync.Mutex // serialise read-modify-writes of one customer
	failed  atomic.Int64   // reads that failed
}

// newCustomers registers n customers on four shards.
func newCustomers(n int) (*customers, error) {
	m, err := shard.NewHashMap(shard.HashConfig{}, "shard-0", "shard-1", "shard-2", "shard-3")
	if err != nil {
		return nil, err
	}
	kv, err := shard.NewKV(m)
	if err != nil {
		return nil, err
	}
	c := &customers{kv: kv, keys: make([]string, n)}
	for i := range c.keys {
		c.keys[i] = c.key(fmt.Sprintf("c%04d", i))
		kv.Put(c.keys[i], []byte("profile|"))
	}
	return c, nil
}

func (c *customers) key(customer string) string { return "customer/" + customer }

// set records order's status in customer's record.
func (c *customers) set(customer, order, status string) error {
	h := fnv.New32a()
	h.Write([]byte(customer))
	mu := &c.stripes[h.Sum32()%uint32(len(c.stripes))]
	mu.Lock()
	defer mu.Unlock()
	v, err := c.kv.Get(c.key(customer))
	if err != nil {
		c.failed.Add(1)
		return fmt.Errorf("customer %s: %w", customer, err)
	}
	orders := parseOrders(v)
	orders[order] = status
	c.kv.Put(c.key(customer), formatOrders(orders))
	return nil
}

func parseOrders(v []byte) map[string]string {
	out := map[string]string{}
	_, list, _ := strings.Cut(string(v), "|")
	for _, kv := range strings.Split(list, ",") {
		if k, s, ok := strings.Cut(kv, "="); ok {
			out[k] = s
		}
	}
	return out
}

func formatOrders(orders map[string]string) []byte {
	ids := make([]string, 0, len(orders))
	for id := range orders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	b.WriteString("profile|")
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id + "=" + orders[id])
	}
	return []byte(b.String())
}

// balance describes how the keys are spread over the shards.
func (c *customers) balance() string {
	counts, err := shard.Gather(context.Background(), c.kv.Router(), 0,
		func(_ context.Context, _ string, st *shard.MemoryStore) (int, error) { return st.Len(), nil })
	if err != nil {
		return "balance: " + err.Error()
	}
	names := make([]string, 0, len(counts))
	total, hi := 0, 0
	for n, k := range counts {
		names = append(names, n)
		total += k
		hi = max(hi, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, counts[n])
	}
	return fmt.Sprintf("keys per shard:%s (max/mean %.2f)", b.String(), float64(hi)*float64(len(counts))/float64(total))
}
