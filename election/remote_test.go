package election_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/election/electiontest"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
)

// TestRemoteStoreConformance holds the store client and server (the pair
// that lets the lease and sequence electors run between processes) to the
// same LeaseStore contract as the in-memory store. It runs them on a
// simulated network with 1-5 ms delays and 10 % loss, on fake time, so
// that retransmission is exercised and expiry takes no real time;
// TestUDPFailover runs them on UDP.
func TestRemoteStoreConformance(t *testing.T) {
	electiontest.Run(t, electiontest.Config{
		FakeTime: true,
		New: func(t *testing.T) election.LeaseStore {
			net, err := simnet.New(simnet.Config{Seed: 1, Default: simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Drop: 0.1}})
			if err != nil {
				t.Fatal(err)
			}
			str, err := simtransport.Listen(net, "store")
			if err != nil {
				t.Fatal(err)
			}
			srv, err := election.NewStoreServer(str, election.NewMemoryStore(), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = srv.Run(ctx) }()
			ctr, err := simtransport.Listen(net, "client")
			if err != nil {
				t.Fatal(err)
			}
			rs, err := election.NewRemoteStore(ctr, "store", election.RemoteStoreConfig{Retry: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				rs.Close()
				cancel()
				<-done
				srv.Close()
				net.Close()
			})
			return rs
		},
	})
}
