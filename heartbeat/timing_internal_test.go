package heartbeat

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type nopTransport struct{}

func (nopTransport) LocalAddr() string                          { return "nop" }
func (nopTransport) Send(context.Context, string, []byte) error { return nil }
func (nopTransport) Recv(ctx context.Context) (Packet, error) {
	<-ctx.Done()
	return Packet{}, ctx.Err()
}
func (nopTransport) Close() error { return nil }

// A peer whose wall clock runs 5 s ahead, heartbeating over a path with
// 10 to 30 ms of one-way delay and reporting a 20 ms RTT from its acks:
// the monitor recovers the offset and the delay of the latest heartbeat
// from the timestamps alone.
func TestTimingEstimatesOffsetAndDelay(t *testing.T) {
	m, err := NewMonitor(nopTransport{}, MonitorConfig{ID: "mon", Peers: []Peer{{ID: "p"}}})
	require.NoError(t, err)
	c := newCodec(nil)
	const skew = 5 * time.Second
	peerStart := m.start.Add(-time.Hour) // the peer's monotonic origin
	delays := []time.Duration{30, 10, 25, 12, 30}
	for i, d := range delays {
		sent := m.start.Add(time.Duration(i+1) * time.Second)
		msg := message{
			typ: msgHeartbeat, id: []byte("p"), inc: 1, seq: uint64(i + 1),
			wall: sent.Add(skew).UnixNano(), mono: uint64(sent.Sub(peerStart)),
			interval: uint64(time.Second), rtt: uint64(20 * time.Millisecond),
		}
		m.handle(c, nil, Packet{From: "p", Data: c.encode(nil, &msg)}, sent.Add(d*time.Millisecond))
	}
	st, ok := m.Peer("p")
	require.True(t, ok)
	assert.Equal(t, Alive, st.State)
	assert.Equal(t, 20*time.Millisecond, st.Timing.RTT)
	assert.Equal(t, 30*time.Millisecond, st.Timing.Delay, "RTT/2 plus 20 ms of queueing over the fastest")
	assert.Equal(t, skew, st.Timing.ClockOffset, "taken from the fastest heartbeat, whose delay is RTT/2")
	assert.Positive(t, st.Timing.Jitter)
}
