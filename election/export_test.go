package election

import "math/rand/v2"

// SeedRaftForTest makes r draw its election timeouts from a source seeded
// with seed, so that a simulated scenario replays with the same timeouts.
// Call it before Run.
func SeedRaftForTest(r *RaftElector, seed uint64) {
	r.rng = rand.New(rand.NewPCG(seed, 0x5eed))
}

// DecodeForTest exposes the wire decoder and encoder to the fuzz target.
func DecodeForTest(b []byte) ([]byte, error) {
	m, err := decode(b)
	if err != nil {
		return nil, err
	}
	return m.append(nil)
}

// EncodeForTest encodes a message for the fuzz seed corpus.
func EncodeForTest(kind byte, from string, term uint64, leases []Lease) []byte {
	b, _ := (&wmsg{kind: kind, from: from, term: term, key: "k", holder: "h", leases: leases}).append(nil)
	return b
}
