package election_test

import (
	"testing"

	"github.com/distkit/distkit/election"
	"github.com/distkit/distkit/election/electiontest"
)

func TestMemoryStoreConformance(t *testing.T) {
	electiontest.Run(t, electiontest.Config{
		New:      func(*testing.T) election.LeaseStore { return election.NewMemoryStore() },
		FakeTime: true,
	})
}
