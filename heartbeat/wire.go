package heartbeat

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"unicode/utf8"
)

// Wire limits. Packets that exceed them are rejected by the decoder.
const (
	// MaxIDLen is the longest node or monitor ID, in bytes.
	MaxIDLen = 128
	// MaxMetrics is the most diagnostics one heartbeat carries.
	MaxMetrics = 32
	// MaxMetricKeyLen is the longest diagnostic key, in bytes.
	MaxMetricKeyLen = 64
	// maxWirePacket is the largest packet the decoder accepts: the
	// largest UDP payload.
	maxWirePacket = 65507
	// maxInterval bounds an announced heartbeat interval.
	maxInterval = 24 * 3600 * 1e9
)

// The wire format, version 1. Every packet starts with a five-byte
// header:
//
//	'h' 'b' version type flags
//
// followed by the body and, when flags has flagSigned, a 32-byte
// HMAC-SHA256 of everything before it. Integers are unsigned varints
// (wall-clock times are zig-zag varints), strings are a varint length
// and bytes, and a float64 is 8 little-endian bytes. The body starts
// with the sender's ID, incarnation, sequence number, wall-clock send
// time (Unix ns) and monotonic send time (ns since its incarnation
// began); then, by type:
//
//	heartbeat: interval, rtt, metrics
//	ack:       echoed seq, echoed monotonic time, receive wall time
//	ping:      (nothing)
//	pong:      echoed seq, echoed monotonic time, receive wall time,
//	           interval, rtt, metrics
//	view:      count, then (id, incarnation, state byte) per entry
//
// metrics is a count then (key, float64) pairs. A decoder rejects an
// unknown version, type or flag, a length past the end, trailing bytes,
// and any field out of range, with an error wrapping [ErrMalformed].
const (
	magic0      = 'h'
	magic1      = 'b'
	wireVersion = 1
	headerLen   = 5
	macLen      = sha256.Size

	flagSigned = 1 << 0
	flagAckReq = 1 << 1
	knownFlags = flagSigned | flagAckReq
)

type msgType uint8

const (
	msgHeartbeat msgType = iota + 1
	msgAck
	msgPing
	msgPong
	msgView
)

var (
	errUnsigned = errors.New("heartbeat: unsigned packet")
	errForged   = errors.New("heartbeat: bad signature")
)

// Metric is one diagnostic a heartbeat carries: CPU load, memory in use,
// queue depth, anything a monitor may weigh besides liveness.
type Metric struct {
	Key   string
	Value float64
}

// message is one decoded or to-be-encoded packet. Byte slices alias the
// packet they were decoded from.
type message struct {
	typ    msgType
	ackReq bool
	id     []byte
	inc    uint64
	seq    uint64
	wall   int64  // sender's wall clock at send, Unix ns
	mono   uint64 // sender's monotonic clock at send, ns since its start

	interval uint64 // heartbeat, pong
	rtt      uint64 // heartbeat, pong: sender's smoothed RTT, 0 if unknown
	metrics  []wireMetric

	echoSeq  uint64 // ack, pong
	echoMono uint64 // ack, pong
	echoWall int64  // ack, pong: when the echoed packet was received

	entries []viewEntry // view
}

type wireMetric struct {
	key   []byte
	value float64
}

type viewEntry struct {
	id    []byte
	inc   uint64
	state State
}

// codec encodes and decodes packets and signs and verifies them. It is
// not safe for concurrent use; each goroutine that sends or receives
// keeps its own.
type codec struct {
	macs []hash.Hash // macs[0] signs; every one verifies
	sum  [macLen]byte
	msg  message // reused by decode
}

func newCodec(keys [][]byte) *codec {
	c := &codec{}
	for _, k := range keys {
		c.macs = append(c.macs, hmac.New(sha256.New, k))
	}
	return c
}

// encode appends m to dst and returns the result.
func (c *codec) encode(dst []byte, m *message) []byte {
	start := len(dst)
	var flags byte
	if len(c.macs) > 0 {
		flags |= flagSigned
	}
	if m.ackReq {
		flags |= flagAckReq
	}
	dst = append(dst, magic0, magic1, wireVersion, byte(m.typ), flags)
	dst = appendBytes(dst, m.id)
	dst = binary.AppendUvarint(dst, m.inc)
	dst = binary.AppendUvarint(dst, m.seq)
	dst = binary.AppendVarint(dst, m.wall)
	dst = binary.AppendUvarint(dst, m.mono)
	switch m.typ {
	case msgHeartbeat:
		dst = appendBeat(dst, m)
	case msgAck:
		dst = appendEcho(dst, m)
	case msgPong:
		dst = appendEcho(dst, m)
		dst = appendBeat(dst, m)
	case msgView:
		dst = binary.AppendUvarint(dst, uint64(len(m.entries)))
		for _, e := range m.entries {
			dst = appendBytes(dst, e.id)
			dst = binary.AppendUvarint(dst, e.inc)
			dst = append(dst, byte(e.state))
		}
	}
	if len(c.macs) > 0 {
		h := c.macs[0]
		h.Reset()
		h.Write(dst[start:])
		dst = h.Sum(dst)
	}
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendEcho(dst []byte, m *message) []byte {
	dst = binary.AppendUvarint(dst, m.echoSeq)
	dst = binary.AppendUvarint(dst, m.echoMono)
	return binary.AppendVarint(dst, m.echoWall)
}

func appendBeat(dst []byte, m *message) []byte {
	dst = binary.AppendUvarint(dst, m.interval)
	dst = binary.AppendUvarint(dst, m.rtt)
	dst = binary.AppendUvarint(dst, uint64(len(m.metrics)))
	for _, x := range m.metrics {
		dst = appendBytes(dst, x.key)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(x.value))
	}
	return dst
}

// decode parses and authenticates b. The returned message is owned by
// the codec and valid until the next decode; its byte slices alias b. It
// returns an error wrapping [ErrMalformed], or errUnsigned / errForged
// when the codec has keys and the packet is unsigned or its signature
// does not verify.
func (c *codec) decode(b []byte) (*message, error) {
	if len(b) > maxWirePacket {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrMalformed, len(b), maxWirePacket)
	}
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(b))
	}
	if b[0] != magic0 || b[1] != magic1 {
		return nil, fmt.Errorf("%w: bad magic %#x %#x", ErrMalformed, b[0], b[1])
	}
	if b[2] != wireVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrMalformed, b[2])
	}
	typ := msgType(b[3])
	if typ < msgHeartbeat || typ > msgView {
		return nil, fmt.Errorf("%w: unknown type %d", ErrMalformed, b[3])
	}
	flags := b[4]
	if flags&^knownFlags != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	body := b[headerLen:]
	if flags&flagSigned != 0 {
		if len(body) < macLen {
			return nil, fmt.Errorf("%w: signed packet shorter than its signature", ErrMalformed)
		}
		body = body[:len(body)-macLen]
		if len(c.macs) > 0 && !c.verify(b[:len(b)-macLen], b[len(b)-macLen:]) {
			return nil, errForged
		}
	} else if len(c.macs) > 0 {
		return nil, errUnsigned
	}

	m := &c.msg
	*m = message{metrics: m.metrics[:0], entries: m.entries[:0]}
	m.typ = typ
	m.ackReq = flags&flagAckReq != 0
	r := reader{b: body}
	m.id = r.str(MaxIDLen, "id")
	if len(m.id) == 0 && r.err == nil {
		r.fail("empty id")
	}
	m.inc = r.uvarint("incarnation")
	m.seq = r.uvarint("seq")
	m.wall = r.varint("wall time")
	m.mono = r.uvarint("monotonic time")
	switch typ {
	case msgHeartbeat:
		c.readBeat(&r, m)
	case msgAck:
		readEcho(&r, m)
	case msgPong:
		readEcho(&r, m)
		c.readBeat(&r, m)
	case msgView:
		n := r.uvarint("entry count")
		// Each entry takes at least three bytes, which bounds n before
		// anything is allocated for it.
		if r.err == nil && n > uint64(len(r.b)-r.off)/3 {
			r.fail("entry count exceeds the packet")
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			var e viewEntry
			e.id = r.str(MaxIDLen, "entry id")
			if len(e.id) == 0 && r.err == nil {
				r.fail("empty entry id")
			}
			e.inc = r.uvarint("entry incarnation")
			s := r.byte("entry state")
			if r.err == nil && s > byte(Dead) {
				r.fail(fmt.Sprintf("entry state %d", s))
			}
			e.state = State(s)
			m.entries = append(m.entries, e)
		}
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail(fmt.Sprintf("%d trailing bytes", len(r.b)-r.off))
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

func (c *codec) verify(signed, mac []byte) bool {
	for _, h := range c.macs {
		h.Reset()
		h.Write(signed)
		if hmac.Equal(h.Sum(c.sum[:0]), mac) {
			return true
		}
	}
	return false
}

func readEcho(r *reader, m *message) {
	m.echoSeq = r.uvarint("echo seq")
	m.echoMono = r.uvarint("echo time")
	m.echoWall = r.varint("echo wall time")
}

func (c *codec) readBeat(r *reader, m *message) {
	m.interval = r.uvarint("interval")
	if r.err == nil && (m.interval == 0 || m.interval > maxInterval) {
		r.fail(fmt.Sprintf("interval %dns out of range", m.interval))
	}
	m.rtt = r.uvarint("rtt")
	n := r.uvarint("metric count")
	if r.err == nil && n > MaxMetrics {
		r.fail(fmt.Sprintf("%d metrics, over %d", n, MaxMetrics))
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		var x wireMetric
		x.key = r.str(MaxMetricKeyLen, "metric key")
		if r.err == nil && (len(x.key) == 0 || !utf8.Valid(x.key)) {
			r.fail("metric key empty or not UTF-8")
		}
		x.value = math.Float64frombits(r.uint64("metric value"))
		if r.err == nil && (math.IsNaN(x.value) || math.IsInf(x.value, 0)) {
			r.fail("metric value not finite")
		}
		m.metrics = append(m.metrics, x)
	}
}

// reader decodes fields; after the first failure every method is a no-op
// and err holds the reason.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, why)
	}
}

func (r *reader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("truncated or overlong " + field)
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint(field string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail("truncated or overlong " + field)
		return 0
	}
	r.off += n
	return v
}

func (r *reader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("truncated " + field)
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) uint64(field string) uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 8 {
		r.fail("truncated " + field)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *reader) str(maxLen int, field string) []byte {
	n := r.uvarint(field + " length")
	if r.err != nil {
		return nil
	}
	if n > uint64(maxLen) {
		r.fail(fmt.Sprintf("%s of %d bytes, over %d", field, n, maxLen))
		return nil
	}
	if uint64(len(r.b)-r.off) < n {
		r.fail("truncated " + field)
		return nil
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}
