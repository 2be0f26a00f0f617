package election

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
