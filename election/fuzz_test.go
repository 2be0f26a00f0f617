package election_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/distkit/distkit/election"
)

// FuzzDecode: the decoder never panics, rejects garbage with
// ErrMalformed, and what it accepts survives a re-encoding unchanged
// (non-minimal varints are accepted but re-encoded minimally).
func FuzzDecode(f *testing.F) {
	f.Add(election.EncodeForTest(20, "node-1", 7, nil))
	f.Add(election.EncodeForTest(7, "", 0, []election.Lease{{Key: "q/a", Holder: "a#1", Epoch: 3, TTL: 5}}))
	f.Add([]byte("dke"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := election.DecodeForTest(b)
		if err != nil {
			if !errors.Is(err, election.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := election.DecodeForTest(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("re-encoding changed the packet:\n%x\n%x", b, out)
		}
	})
}
