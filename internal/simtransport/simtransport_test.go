package simtransport_test

import (
	"fmt"
	"testing"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/heartbeat/heartbeattest"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
)

func TestTransportConformance(t *testing.T) {
	heartbeattest.TestTransport(t, func(t *testing.T, n int) []heartbeat.Transport {
		net, err := simnet.New(simnet.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = net.Close() })
		var ts []heartbeat.Transport
		for i := range n {
			tr, err := simtransport.Listen(net, fmt.Sprintf("node-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, tr)
		}
		return ts
	})
}
