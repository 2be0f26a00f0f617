package hashring_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/distkit/distkit/hashring"
)

// FuzzRing applies random add, remove and weight sequences and checks every
// invariant after each step: owners are members, preference lists are
// distinct and start with Locate, Ring agrees with the reference model, bad
// operations change nothing, and keys move only to or from the changed node.
func FuzzRing(f *testing.F) {
	f.Add(uint8(4), uint8(2), []byte{0, 1, 2, 3, 0x41, 0x82, 0xc3, 1})
	f.Add(uint8(1), uint8(1), []byte{0, 0, 0x40, 0x40, 0x80})
	f.Add(uint8(16), uint8(3), []byte{7, 6, 5, 4, 3, 2, 1, 0, 0x47, 0x86, 0xc5, 0xc4})
	f.Fuzz(func(t *testing.T, vnodes, probes uint8, ops []byte) {
		cfg := hashring.Config{VNodes: 1 + int(vnodes)%24, Probes: 1 + int(probes)%4}
		r, err := hashring.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		weights := map[string]float64{}
		keys := []string{"a", "b", "user:1", "user:2", "order:7", "z", "", "k9"}
		for step, op := range ops {
			if step > 40 {
				break
			}
			name := fmt.Sprintf("n%d", op&7)
			w := 0.5 + float64((op>>3)&7)/4
			before := ownersOrEmpty(r, keys)
			var err error
			var moveTo, moveFrom string // keys may only move to / from this node
			switch op >> 6 {
			case 0, 1:
				err = r.AddMembers(hashring.Member{Name: name, Weight: w})
				moveTo = name
			case 2:
				err = r.Remove(name)
				moveFrom = name
			case 3:
				old := weights[name]
				err = r.SetWeight(name, w)
				if w >= old {
					moveTo = name
				} else {
					moveFrom = name
				}
			}
			_, present := weights[name]
			switch {
			case op>>6 <= 1 && present, op>>6 >= 2 && !present:
				if err == nil {
					t.Fatalf("step %d: op %#x on %q succeeded, want an error", step, op, name)
				}
				moveTo, moveFrom = "", ""
			case err != nil:
				t.Fatalf("step %d: op %#x on %q: %v", step, op, name, err)
			case op>>6 == 2:
				delete(weights, name)
			default:
				weights[name] = w
			}
			after := ownersOrEmpty(r, keys)
			for i, k := range keys {
				if before[i] == after[i] || before[i] == "" || after[i] == "" {
					continue
				}
				if after[i] != moveTo && before[i] != moveFrom {
					t.Fatalf("step %d: key %q moved %s -> %s after op %#x on %q", step, k, before[i], after[i], op, name)
				}
			}
			checkAgainstModel(t, r, cfg, weights, keys)
		}
	})
}

func ownersOrEmpty(r *hashring.Ring, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i], _ = r.Locate(k)
	}
	return out
}

func checkAgainstModel(t *testing.T, r *hashring.Ring, cfg hashring.Config, weights map[string]float64, keys []string) {
	t.Helper()
	var members []hashring.Member
	for n, w := range weights {
		members = append(members, hashring.Member{Name: n, Weight: w})
	}
	slices.SortFunc(members, func(a, b hashring.Member) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	if got := r.Members(); !slices.Equal(got, members) {
		t.Fatalf("members %v, want %v", got, members)
	}
	ref := refRing{vnodes: cfg.VNodes, probes: cfg.Probes, members: members}
	for _, k := range keys {
		owner, err := r.Locate(k)
		if len(members) == 0 {
			if err == nil {
				t.Fatalf("Locate on an empty ring returned %q", owner)
			}
			continue
		}
		want := ref.preference(k)
		if err != nil || owner != want[0] {
			t.Fatalf("Locate(%q) = %q, %v; want %q", k, owner, err, want[0])
		}
		list, err := r.AppendN(nil, k, len(members))
		if err != nil || !slices.Equal(list, want) {
			t.Fatalf("AppendN(%q) = %q, %v; want %q", k, list, err, want)
		}
		if _, err := r.AppendN(nil, k, len(members)+1); err == nil {
			t.Fatalf("AppendN(%q, %d) with %d members succeeded", k, len(members)+1, len(members))
		}
	}
}
