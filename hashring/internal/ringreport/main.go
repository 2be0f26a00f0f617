// Command ringreport prints the hashring quality report at full size: for
// several seeds, 1,000,000 keys over 100 nodes at the default config, the
// fullest and emptiest node against the mean, the keys moved by a join
// against the ideal 1/(N+1) share, the keys moved by a leave, and the same
// for bounded-load assignment.
//
//	go run ./hashring/internal/ringreport [-keys 1000000] [-nodes 100] [-seeds 5] [-vnodes 0] [-probes 0] [-eps 0.05]
//
// It exits non-zero if any figure breaks the package's quality contract.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/distkit/distkit/hashring"
	"github.com/distkit/distkit/hashring/internal/quality"
)

func main() {
	if err := run(context.Background(), os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ringreport:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("ringreport", flag.ContinueOnError)
	keys := fs.Int("keys", 1_000_000, "number of keys")
	nodes := fs.Int("nodes", 100, "number of nodes")
	seeds := fs.Int("seeds", 5, "number of seeds")
	vnodes := fs.Int("vnodes", 0, "Config.VNodes (0: default)")
	probes := fs.Int("probes", 0, "Config.Probes (0: default)")
	eps := fs.Float64("eps", 0.05, "epsilon for the bounded-load figures (0: skip)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	failed := 0
	for seed := uint64(1); seed <= uint64(*seeds); seed++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := quality.Measure(quality.Params{
			Config:  hashring.Config{VNodes: *vnodes, Probes: *probes},
			Nodes:   *nodes,
			Keys:    *keys,
			Seed:    seed,
			Epsilon: *eps,
		})
		if err != nil {
			return err
		}
		ok := res.MaxOverMean <= 1.10 && res.MinOverMean >= 0.90 && res.JoinRatio <= 1.05 &&
			res.JoinStrayed == 0 && res.LeaveStrayed == 0 && res.LeaveMoved == res.LeaveOwned
		verdict := "ok"
		if !ok {
			verdict = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "%s  %s\n", verdict, res)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d seeds break the contract (max/mean <= 1.10, min/mean >= 0.90, join <= 1.05, no stray moves)", failed, *seeds)
	}
	return nil
}
