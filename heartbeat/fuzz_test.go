package heartbeat

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

var fuzzKey = []byte("fuzzing key of at least 16 bytes")

func sampleMessages() []message {
	return []message{
		{typ: msgHeartbeat, ackReq: true, id: []byte("node-1"), inc: 1 << 60, seq: 7, wall: 1_700_000_000_000_000_000, mono: 12345, interval: 1e9, rtt: 2e6,
			metrics: []wireMetric{{key: []byte("cpu"), value: 0.5}, {key: []byte("mem"), value: -1e300}}},
		{typ: msgAck, id: []byte("mon"), inc: 3, seq: 1, wall: -5, mono: 1, echoSeq: 7, echoMono: 12345, echoWall: 99},
		{typ: msgPing, id: []byte("mon"), inc: 3, seq: 2, wall: 1, mono: 2},
		{typ: msgPong, id: []byte("n"), inc: 1, seq: 9, echoSeq: 2, echoMono: 2, echoWall: 3, interval: 1, metrics: []wireMetric{{key: []byte("q"), value: 1}}},
		{typ: msgView, id: []byte("m2"), inc: 4, seq: 10, entries: []viewEntry{{id: []byte("a"), inc: 1, state: Dead}, {id: []byte("b"), state: Suspect}}},
	}
}

// normalize makes decoded and constructed messages comparable.
func normalize(m message) message {
	m.id = append([]byte{}, m.id...)
	if len(m.metrics) == 0 {
		m.metrics = nil
	}
	if len(m.entries) == 0 {
		m.entries = nil
	}
	ms := m.metrics
	m.metrics = nil
	for _, x := range ms {
		m.metrics = append(m.metrics, wireMetric{key: append([]byte{}, x.key...), value: x.value})
	}
	es := m.entries
	m.entries = nil
	for _, e := range es {
		m.entries = append(m.entries, viewEntry{id: append([]byte{}, e.id...), inc: e.inc, state: e.state})
	}
	return m
}

func TestWireRoundTrip(t *testing.T) {
	for _, keys := range [][][]byte{nil, {fuzzKey}} {
		c := newCodec(keys)
		for _, m := range sampleMessages() {
			b := c.encode(nil, &m)
			got, err := c.decode(b)
			if err != nil {
				t.Fatalf("decode(%v): %v", m.typ, err)
			}
			if want, have := normalize(m), normalize(*got); !reflect.DeepEqual(want, have) {
				t.Fatalf("round trip of type %d:\n got %+v\nwant %+v", m.typ, have, want)
			}
			// Every strict prefix is rejected, never accepted or a panic.
			for i := range b {
				if _, err := c.decode(b[:i]); err == nil {
					t.Fatalf("type %d: prefix of %d/%d bytes decoded", m.typ, i, len(b))
				}
			}
		}
	}
}

func TestWireRejects(t *testing.T) {
	c := newCodec(nil)
	hb := sampleMessages()[0]
	good := c.encode(nil, &hb)
	signer := newCodec([][]byte{fuzzKey})
	signed := signer.encode(nil, &hb)
	tamper := func(b []byte, i int, v byte) []byte { b = append([]byte{}, b...); b[i] = v; return b }
	for name, tc := range map[string]struct {
		b    []byte
		dec  *codec
		want error
	}{
		"empty":            {nil, c, ErrMalformed},
		"bad magic":        {tamper(good, 0, 'x'), c, ErrMalformed},
		"future version":   {tamper(good, 2, 2), c, ErrMalformed},
		"unknown type":     {tamper(good, 3, 9), c, ErrMalformed},
		"unknown flag":     {tamper(good, 4, 0x80), c, ErrMalformed},
		"trailing byte":    {append(append([]byte{}, good...), 0), c, ErrMalformed},
		"oversized":        {make([]byte, maxWirePacket+1), c, ErrMalformed},
		"unsigned":         {good, signer, errUnsigned},
		"forged":           {tamper(signed, len(signed)-1, signed[len(signed)-1]^1), signer, errForged},
		"tampered payload": {tamper(signed, 7, signed[7]^1), signer, errForged},
		"too many metrics": {c.encode(nil, &message{typ: msgHeartbeat, id: []byte("a"), interval: 1, metrics: make([]wireMetric, MaxMetrics+1)}), c, ErrMalformed},
		"nan metric":       {c.encode(nil, &message{typ: msgHeartbeat, id: []byte("a"), interval: 1, metrics: []wireMetric{{key: []byte("k"), value: math.NaN()}}}), c, ErrMalformed},
		"zero interval":    {c.encode(nil, &message{typ: msgHeartbeat, id: []byte("a")}), c, ErrMalformed},
		"empty id":         {c.encode(nil, &message{typ: msgPing}), c, ErrMalformed},
		"bad state":        {c.encode(nil, &message{typ: msgView, id: []byte("a"), entries: []viewEntry{{id: []byte("b"), state: 9}}}), c, ErrMalformed},
	} {
		_, err := tc.dec.decode(tc.b)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	// A codec without keys accepts signed packets (it cannot check them).
	if _, err := c.decode(signed); err != nil {
		t.Errorf("keyless decode of a signed packet: %v", err)
	}
}

// FuzzDecode: the decoder never panics, and whatever it accepts
// re-encodes to a packet that decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, keys := range [][][]byte{nil, {fuzzKey}} {
		c := newCodec(keys)
		for _, m := range sampleMessages() {
			f.Add(c.encode(nil, &m))
		}
	}
	f.Add([]byte("hb\x01\x01\x00"))
	f.Add([]byte{'h', 'b', 1, 5, 0, 1, 'a', 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	plain, signed := newCodec(nil), newCodec([][]byte{fuzzKey})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = signed.decode(b)
		m, err := plain.decode(b)
		if err != nil {
			return
		}
		first := normalize(*m)
		again, err := plain.decode(plain.encode(nil, &first))
		if err != nil {
			t.Fatalf("re-encoded packet rejected: %v", err)
		}
		if second := normalize(*again); !reflect.DeepEqual(first, second) {
			t.Fatalf("re-encoding changed the message:\n%+v\n%+v", first, second)
		}
	})
}
