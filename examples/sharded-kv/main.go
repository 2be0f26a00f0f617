// Command sharded-kv shows consistent-hash sharding and online resharding
// with distkit's shard package: it starts four in-memory shards, writes
// keys, adds a fifth shard and migrates to it while clients keep reading
// and writing, then removes a shard, printing how many keys moved against
// the ideal and how evenly the keys are spread at each step. It stops on
// its own.
//
//	go run ./examples/sharded-kv [-keys 20000]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/distkit/distkit/shard"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sharded-kv:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("sharded-kv", flag.ContinueOnError)
	fs.SetOutput(w)
	nKeys := fs.Int("keys", 20000, "number of keys to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nKeys < 1 {
		return fmt.Errorf("-keys must be positive, got %d", *nKeys)
	}
	keys := make([]string, *nKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%06d", i)
	}

	m, err := shard.NewHashMap(shard.HashConfig{}, "shard-0", "shard-1", "shard-2", "shard-3")
	if err != nil {
		return err
	}
	kv, err := shard.NewKV(m)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "started %d shards, map epoch %d\n", len(m.Shards()), m.Epoch())
	for _, k := range keys {
		kv.Put(k, []byte("v0:"+k))
	}
	fmt.Fprintf(w, "wrote %d keys\n", len(keys))
	printBalance(w, kv)

	steps := []struct {
		what   string
		change func(*shard.Map) (*shard.Map, error)
	}{
		{"add shard-4", func(m *shard.Map) (*shard.Map, error) { return m.AddShards("shard-4") }},
		{"remove shard-1", func(m *shard.Map) (*shard.Map, error) { return m.RemoveShards("shard-1") }},
	}
	for _, step := range steps {
		if err := reshard(ctx, w, kv, keys, step.what, step.change); err != nil {
			return err
		}
	}

	for _, k := range keys {
		v, err := kv.Get(k)
		if err != nil {
			return fmt.Errorf("%s lost: %w", k, err)
		}
		if len(v) < 3 || string(v[len(v)-len(k):]) != k {
			return fmt.Errorf("%s has a foreign value %q", k, v)
		}
	}
	fmt.Fprintf(w, "all %d keys readable on %v at epoch %d\n", len(keys), kv.Router().Map().Shards(), kv.Router().Map().Epoch())
	return nil
}

// reshard applies one map change while clients keep reading and writing,
// and prints the movement and the balance after it.
func reshard(ctx context.Context, w io.Writer, kv *shard.KV, keys []string, what string, change func(*shard.Map) (*shard.Map, error)) error {
	old := kv.Router().Map()
	next, err := change(old)
	if err != nil {
		return err
	}
	moves, err := shard.Diff(old, next)
	if err != nil {
		return err
	}
	moved := 0
	for _, k := range keys {
		if old.Locate(k) != next.Locate(k) {
			moved++
		}
	}
	// The ideal: a joining shard takes 1/(N+1) of the keys, a leaving one
	// gives up its own 1/N.
	ideal := float64(len(keys)) / float64(max(len(old.Shards()), len(next.Shards())))
	fmt.Fprintf(w, "\n%s (epoch %d -> %d): %d keys move (%.1f%% of all, %.2fx the ideal %.0f)\n",
		what, old.Epoch(), next.Epoch(), moved, 100*float64(moved)/float64(len(keys)), float64(moved)/ideal, ideal)
	for _, mv := range moves {
		fmt.Fprintf(w, "  %s -> %s: %d hash ranges\n", mv.From, mv.To, len(mv.Ranges))
	}

	// Clients keep working during the migration: every read must succeed.
	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		reads    atomic.Int64
		failures atomic.Int64
		firstErr error
		errOnce  sync.Once
	)
	for c := range 2 {
		wg.Go(func() {
			for i := c; !stop.Load(); i += 2 {
				k := keys[i%len(keys)]
				if i%10 == 0 {
					kv.Put(k, []byte(fmt.Sprintf("v%d:%s", next.Epoch(), k)))
				}
				if _, err := kv.Get(k); err != nil {
					failures.Add(1)
					errOnce.Do(func() { firstErr = fmt.Errorf("%s: %w", k, err) })
				}
				reads.Add(1)
			}
		})
	}
	err = kv.Reshard(ctx, next)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  migrated while clients ran: failed reads %d\n", failures.Load())
	if failures.Load() > 0 {
		return errors.Join(errors.New("reads failed during the migration"), firstErr)
	}
	printBalance(w, kv)
	return nil
}

// printBalance prints the keys on each shard and the spread around the
// mean.
func printBalance(w io.Writer, kv *shard.KV) {
	counts, err := shard.Gather(context.Background(), kv.Router(), 0,
		func(_ context.Context, _ string, st *shard.MemoryStore) (int, error) { return st.Len(), nil })
	if err != nil {
		fmt.Fprintln(w, "balance:", err)
		return
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range counts {
			if !yield(n) {
				return
			}
		}
	})
	total := 0
	for _, n := range counts {
		total += n
	}
	mean := float64(total) / float64(len(counts))
	lo, hi := total, 0
	fmt.Fprint(w, "  keys per shard:")
	for _, n := range names {
		fmt.Fprintf(w, " %s=%d", n, counts[n])
		lo, hi = min(lo, counts[n]), max(hi, counts[n])
	}
	fmt.Fprintf(w, "\n  balance: max/mean %.3f, min/mean %.3f\n", float64(hi)/mean, float64(lo)/mean)
}
