package shard_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/distkit/distkit/shard"
)

func Example() {
	m, err := shard.NewHashMap(shard.HashConfig{}, "s0", "s1", "s2")
	if err != nil {
		panic(err)
	}
	kv, err := shard.NewKV(m)
	if err != nil {
		panic(err)
	}
	for i := range 1000 {
		kv.Put(fmt.Sprint("user:", i), []byte("data"))
	}
	// Add a shard: only the keys it takes move, and none is lost.
	next, _ := kv.Router().Map().AddShards("s3")
	if err := kv.Reshard(context.Background(), next); err != nil {
		panic(err)
	}
	v, err := kv.Get("user:42")
	fmt.Println(string(v), err, kv.Router().Map().Epoch())

	_, err = kv.Get("user:1000")
	fmt.Println(errors.Is(err, shard.ErrNotFound))
	// Output:
	// data <nil> 2
	// true
}

func ExampleDiff() {
	m, _ := shard.NewRangeMap(
		shard.Assignment{Range: shard.Range{Start: "", End: "m"}, Shard: "a"},
		shard.Assignment{Range: shard.Range{Start: "m", End: ""}, Shard: "b"},
	)
	next, _ := m.Split("t", "c")
	moves, _ := shard.Diff(m, next)
	for _, mv := range moves {
		fmt.Println(mv.From, "->", mv.To, mv.Ranges)
	}
	fmt.Println(next.Locate("k"), next.Locate("p"), next.Locate("x"), next.Epoch())
	// Output:
	// b -> c [["t", end)]
	// a b c 2
}

func ExampleNewRangeMap_overlap() {
	_, err := shard.NewRangeMap(
		shard.Assignment{Range: shard.Range{Start: "", End: "m"}, Shard: "a"},
		shard.Assignment{Range: shard.Range{Start: "k", End: ""}, Shard: "b"},
	)
	fmt.Println(errors.Is(err, shard.ErrOverlap))
	// Output:
	// true
}

func ExampleGather() {
	m, _ := shard.NewHashMap(shard.HashConfig{}, "s0", "s1", "s2")
	kv, _ := shard.NewKV(m)
	for i := range 300 {
		kv.Put(fmt.Sprint("k", i), nil)
	}
	// Count keys on every shard, two shards at a time.
	counts, err := shard.Gather(context.Background(), kv.Router(), 2,
		func(_ context.Context, name string, st *shard.MemoryStore) (int, error) {
			return st.Len(), nil
		})
	total := 0
	for _, n := range counts {
		total += n
	}
	fmt.Println(len(counts), total, err)
	// Output:
	// 3 300 <nil>
}
