package hashring_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/hashring"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json from the current implementation")

// golden is the layout of testdata/golden.json: vectors another language can
// use to check its implementation of the scheme described in doc.go.
type golden struct {
	Comment string       `json:"comment"`
	Cases   []goldenCase `json:"cases"`
}

type goldenCase struct {
	VNodes  int               `json:"vnodes"`
	Probes  int               `json:"probes"`
	Members []hashring.Member `json:"members"`
	// Points lists the first positions of each member, as decimal strings
	// (JSON numbers lose precision past 2^53).
	Points map[string][]string `json:"points"`
	Keys   []goldenKey         `json:"keys"`
}

type goldenKey struct {
	Key    string   `json:"key"`
	Hash   string   `json:"xxhash64"`
	Probes []string `json:"probes"`
	Owner  string   `json:"owner"`
	// Preference is the key's full preference list (AppendN with n equal to
	// the member count).
	Preference []string `json:"preference"`
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{VNodes: 1, Probes: 1, Members: []hashring.Member{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}, {Name: "c", Weight: 1}}},
		{VNodes: 8, Probes: 2, Members: []hashring.Member{
			{Name: "cache-1", Weight: 1}, {Name: "cache-2", Weight: 0.5}, {Name: "cache-3", Weight: 2}, {Name: "ünïcode", Weight: 1},
		}},
		{VNodes: hashring.DefaultVNodes, Probes: hashring.DefaultProbes, Members: []hashring.Member{
			{Name: "10.0.0.1:6379", Weight: 1}, {Name: "10.0.0.2:6379", Weight: 1}, {Name: "10.0.0.3:6379", Weight: 1},
			{Name: "10.0.0.4:6379", Weight: 1}, {Name: "10.0.0.5:6379", Weight: 1.5},
		}},
		{VNodes: 16, Probes: 3, Members: []hashring.Member{{Name: "x", Weight: 1}, {Name: "y", Weight: 1}}},
	}
}

func goldenKeys() []string {
	keys := []string{"", "a", "user:42", "order/2024/0001", "日本語", "the quick brown fox jumps over the lazy dog"}
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("key-%d", i))
	}
	return keys
}

// computeGolden derives the vectors from the reference model, not from Ring,
// so that the file records the documented scheme.
func computeGolden() golden {
	g := golden{Comment: "hashring golden vectors; see doc.go for the scheme. Positions and hashes are unsigned 64-bit decimals."}
	for _, c := range goldenCases() {
		ref := refRing{vnodes: c.VNodes, probes: c.Probes, members: c.Members}
		c.Points = map[string][]string{}
		for _, m := range c.Members {
			pts := ref.refPoints(m)
			for _, p := range pts[:min(len(pts), 4)] {
				c.Points[m.Name] = append(c.Points[m.Name], fmt.Sprint(p))
			}
		}
		for _, k := range goldenKeys() {
			gk := goldenKey{Key: k, Hash: fmt.Sprint(xxhash.Sum64String(k))}
			for _, p := range ref.refProbes(k) {
				gk.Probes = append(gk.Probes, fmt.Sprint(p))
			}
			gk.Preference = ref.preference(k)
			gk.Owner = gk.Preference[0]
			c.Keys = append(c.Keys, gk)
		}
		g.Cases = append(g.Cases, c)
	}
	return g
}

func TestGoldenVectors(t *testing.T) {
	path := filepath.Join("testdata", "golden.json")
	if *update {
		b, err := json.MarshalIndent(computeGolden(), "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, append(b, '\n'), 0o644))
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var g golden
	require.NoError(t, json.Unmarshal(b, &g))
	// The file still describes the reference model...
	assert.Equal(t, computeGolden(), g, "testdata/golden.json is stale or the scheme changed; a change breaks compatibility")
	// ...and the Ring agrees with the file.
	for _, c := range g.Cases {
		r, err := hashring.New(hashring.Config{VNodes: c.VNodes, Probes: c.Probes})
		require.NoError(t, err)
		require.NoError(t, r.AddMembers(c.Members...))
		for _, k := range c.Keys {
			owner, err := r.Locate(k.Key)
			require.NoError(t, err)
			assert.Equal(t, k.Owner, owner, "case vnodes=%d probes=%d key %q", c.VNodes, c.Probes, k.Key)
			pref, err := r.AppendN(nil, k.Key, len(c.Members))
			require.NoError(t, err)
			assert.Equal(t, k.Preference, pref, "key %q", k.Key)
		}
	}
}
