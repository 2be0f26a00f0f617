package heartbeat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/heartbeat/heartbeattest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func listenUDP(t testing.TB) *heartbeat.UDPTransport {
	t.Helper()
	tr, err := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestUDPTransportConformance(t *testing.T) {
	heartbeattest.TestTransport(t, func(t *testing.T, n int) []heartbeat.Transport {
		var ts []heartbeat.Transport
		for range n {
			ts = append(ts, listenUDP(t))
		}
		return ts
	})
}

func TestUDPTransportLimitsAndNames(t *testing.T) {
	small, err := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{MaxPacketSize: 100})
	require.NoError(t, err)
	defer small.Close()
	big := listenUDP(t)
	ctx := context.Background()
	assert.ErrorIs(t, small.Send(ctx, big.LocalAddr(), make([]byte, 101)), heartbeat.ErrPacketTooLarge)
	// An oversize datagram is dropped and counted; the next one arrives.
	require.NoError(t, big.Send(ctx, small.LocalAddr(), make([]byte, 101)))
	require.NoError(t, big.Send(ctx, small.LocalAddr(), []byte("fits")))
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := small.Recv(rctx)
	require.NoError(t, err)
	assert.Equal(t, "fits", string(p.Data))
	assert.Equal(t, uint64(1), small.Stats().Oversize)
	// Host names resolve.
	_, port, _ := splitPort(big.LocalAddr())
	require.NoError(t, small.Send(ctx, "localhost:"+port, []byte("by name")))
	p, err = big.Recv(rctx)
	require.NoError(t, err)
	assert.Equal(t, "by name", string(p.Data))
	assert.Error(t, small.Send(ctx, "no-port", []byte("x")))

	_, err = heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{MaxPacketSize: 70000})
	assert.ErrorIs(t, err, heartbeat.ErrInvalidConfig)
	_, err = heartbeat.ListenUDP("256.0.0.1:0", heartbeat.UDPConfig{})
	assert.Error(t, err)
}

func splitPort(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", errors.New("no port")
}
