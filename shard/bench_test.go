package shard_test

import (
	"fmt"
	"testing"

	"github.com/distkit/distkit/shard"
)

var sinkShard string

func benchKeys() []string {
	ks := make([]string, 1<<12)
	for i := range ks {
		ks[i] = fmt.Sprintf("user:%08d", i*7919)
	}
	return ks
}

// BenchmarkLocate measures routing a key by a map of 16 shards.
func BenchmarkLocate(b *testing.B) {
	ks := benchKeys()
	hm := mustHash(b, shard.HashConfig{}, names(16)...)
	var as []shard.Assignment
	for i := range 16 {
		start, end := "", ""
		if i > 0 {
			start = fmt.Sprintf("user:%08d", i*2_000_000)
		}
		if i < 15 {
			end = fmt.Sprintf("user:%08d", (i+1)*2_000_000)
		}
		as = append(as, kr(start, end, fmt.Sprint("s", i)))
	}
	rm := mustRange(b, as...)
	for _, m := range []struct {
		name string
		m    *shard.Map
	}{{"hash", hm}, {"range", rm}} {
		b.Run(m.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				sinkShard = m.m.Locate(ks[i&(len(ks)-1)])
				i++
			}
		})
	}
}

// BenchmarkRouterDo measures a pinned route from every CPU at once, the
// per-operation cost the resharding guarantee adds.
func BenchmarkRouterDo(b *testing.B) {
	ks := benchKeys()
	m := mustHash(b, shard.HashConfig{}, names(16)...)
	r, err := shard.NewRouter(m, resources(names(16)...))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Route", func(b *testing.B) {
		i := 0
		for b.Loop() {
			sinkShard = r.Route(ks[i&(len(ks)-1)]).Shard
			i++
		}
	})
	b.Run("Do-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			var s string
			for pb.Next() {
				_ = r.Do(ks[i&(len(ks)-1)], func(rt shard.Route[string]) error {
					s = rt.Shard
					return nil
				})
				i++
			}
			sinkShard = s
		})
	})
}

// BenchmarkNewHashMap measures building a map of 16 shards with the
// default 16384 partitions, the cost of every map change.
func BenchmarkNewHashMap(b *testing.B) {
	for b.Loop() {
		mustHash(b, shard.HashConfig{}, names(16)...)
	}
}
