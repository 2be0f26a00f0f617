// Package quality measures how evenly a hashring.Ring spreads keys and how
// many keys move when members change. The hashring tests use it at small
// sizes; go run ./hashring/internal/ringreport prints the full-size report.
package quality

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/distkit/distkit/hashring"
)

// Params describes one experiment.
type Params struct {
	Config hashring.Config
	Nodes  int
	Keys   int
	Seed   uint64
	// Epsilon, when positive, also measures bounded-load assignment
	// (hashring.Ring.Assign) with this epsilon.
	Epsilon float64
}

// Result holds the measured figures. Ratios are against the ideal: the
// mean load for balance, Keys/(Nodes+1) for a join and the leaver's own
// keys for a leave.
type Result struct {
	Params
	Points       int
	MaxOverMean  float64
	MinOverMean  float64
	JoinMoved    int     // keys that changed owner when one node joined
	JoinRatio    float64 // JoinMoved / (Keys/(Nodes+1))
	JoinStrayed  int     // keys that moved between nodes that stayed (must be 0)
	LeaveMoved   int     // keys that changed owner when one node left
	LeaveStrayed int     // keys that moved but were not the leaver's (must be 0)
	LeaveOwned   int     // keys the leaver owned

	// Bounded loads, when Epsilon > 0.
	BoundedMax       int     // fullest node under Assign
	BoundedCap       int     // ceil((1+eps)*mean)
	BoundedJoinRatio float64 // keys moved by Assign on a join / ideal
}

func (r Result) String() string {
	s := fmt.Sprintf("nodes=%d keys=%d seed=%d vnodes=%d probes=%d points=%d  max/mean=%.4f min/mean=%.4f  join=%.4f (strayed %d)  leave moved=%d owned=%d (strayed %d)",
		r.Nodes, r.Keys, r.Seed, r.Config.VNodes, r.Config.Probes, r.Points, r.MaxOverMean, r.MinOverMean,
		r.JoinRatio, r.JoinStrayed, r.LeaveMoved, r.LeaveOwned, r.LeaveStrayed)
	if r.Epsilon > 0 {
		s += fmt.Sprintf("  bounded(eps=%.2f): max=%d cap=%d join=%.4f", r.Epsilon, r.BoundedMax, r.BoundedCap, r.BoundedJoinRatio)
	}
	return s
}

// Keys returns n distinct random keys drawn from seed.
func Keys(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 0x6b657973))
	keys := make([]string, n)
	var b [12]byte
	for i := range keys {
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		keys[i] = fmt.Sprintf("%s-%d", hex.EncodeToString(b[:]), i)
	}
	return keys
}

// Names returns n node names that depend on seed.
func Names(n int, seed uint64) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("node-%d-%d", seed, i)
	}
	return names
}

func owners(r *hashring.Ring, keys []string) ([]string, error) {
	out := make([]string, len(keys))
	for i, k := range keys {
		o, err := r.Locate(k)
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	return out, nil
}

// Measure runs one experiment: balance over p.Nodes nodes, then one node
// joining, then one of the original nodes leaving.
func Measure(p Params) (Result, error) {
	res := Result{Params: p}
	r, err := hashring.New(p.Config)
	if err != nil {
		return res, err
	}
	res.Config = r.Config()
	names := Names(p.Nodes, p.Seed)
	if err := r.Add(names...); err != nil {
		return res, err
	}
	res.Points = r.Points()
	keys := Keys(p.Keys, p.Seed)
	base, err := owners(r, keys)
	if err != nil {
		return res, err
	}
	load := map[string]int{}
	for _, o := range base {
		load[o]++
	}
	mean := float64(p.Keys) / float64(p.Nodes)
	lo, hi := p.Keys, 0
	for _, n := range names {
		lo, hi = min(lo, load[n]), max(hi, load[n])
	}
	res.MaxOverMean, res.MinOverMean = float64(hi)/mean, float64(lo)/mean

	joiner := fmt.Sprintf("joiner-%d", p.Seed)
	if err := r.Add(joiner); err != nil {
		return res, err
	}
	joined, err := owners(r, keys)
	if err != nil {
		return res, err
	}
	for i := range keys {
		if joined[i] != base[i] {
			res.JoinMoved++
			if joined[i] != joiner {
				res.JoinStrayed++
			}
		}
	}
	res.JoinRatio = float64(res.JoinMoved) / (float64(p.Keys) / float64(p.Nodes+1))

	if err := r.Remove(joiner); err != nil {
		return res, err
	}
	leaver := names[0]
	res.LeaveOwned = load[leaver]
	if err := r.Remove(leaver); err != nil {
		return res, err
	}
	left, err := owners(r, keys)
	if err != nil {
		return res, err
	}
	for i := range keys {
		if left[i] != base[i] {
			res.LeaveMoved++
			if base[i] != leaver {
				res.LeaveStrayed++
			}
		}
	}
	if p.Epsilon > 0 {
		if err := measureBounded(&res, p, keys, names, joiner); err != nil {
			return res, err
		}
	}
	return res, nil
}

func measureBounded(res *Result, p Params, keys, names []string, joiner string) error {
	r, err := hashring.New(p.Config)
	if err != nil {
		return err
	}
	if err := r.Add(names...); err != nil {
		return err
	}
	before, err := r.Assign(keys, p.Epsilon)
	if err != nil {
		return err
	}
	load := map[string]int{}
	for _, o := range before {
		load[o]++
	}
	for _, n := range load {
		res.BoundedMax = max(res.BoundedMax, n)
	}
	res.BoundedCap = int(math.Ceil((1 + p.Epsilon) * float64(len(keys)) / float64(p.Nodes)))
	if err := r.Add(joiner); err != nil {
		return err
	}
	after, err := r.Assign(keys, p.Epsilon)
	if err != nil {
		return err
	}
	moved := 0
	for i := range keys {
		if after[i] != before[i] {
			moved++
		}
	}
	res.BoundedJoinRatio = float64(moved) / (float64(p.Keys) / float64(p.Nodes+1))
	return nil
}
