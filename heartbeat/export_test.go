package heartbeat

import (
	"context"
	"time"
)

// SetBeforeCheck installs a hook that runs at the start of every check
// of m, before its lock is taken; tests use it to stall the monitor.
func SetBeforeCheck(m *Monitor, f func()) { m.beforeCheck = f }

// HandlePacket feeds one packet to m as its receive loop would, for
// benchmarks, and returns the length of the reply it would send.
func HandlePacket(m *Monitor, c *Codec, p Packet, now time.Time) int {
	reply, _ := m.handle(c.c, c.buf[:0], p, now)
	c.buf = reply
	return len(reply)
}

// Codec exposes the wire codec to external tests and benchmarks.
type Codec struct {
	c   *codec
	buf []byte
}

// NewCodec returns a codec signing with keys[0], if any.
func NewCodec(keys ...[]byte) *Codec { return &Codec{c: newCodec(keys)} }

// AppendHeartbeat appends an encoded heartbeat.
func (c *Codec) AppendHeartbeat(dst []byte, id string, inc, seq uint64, wall int64, mono uint64, interval time.Duration) []byte {
	return c.c.encode(dst, &message{typ: msgHeartbeat, id: []byte(id), inc: inc, seq: seq, wall: wall, mono: mono, interval: uint64(interval)})
}

// Decode decodes b and returns its sender ID and sequence number.
func (c *Codec) Decode(b []byte) (string, uint64, error) {
	m, err := c.c.decode(b)
	if err != nil {
		return "", 0, err
	}
	return string(m.id), m.seq, nil
}

// Check runs one check of m (detectors, pings, views) at now.
func Check(m *Monitor, now time.Time) { m.check(context.Background(), now) }

// CheckNode runs one check of n's paths at now.
func CheckNode(n *Node, now time.Time) { n.check(now) }
