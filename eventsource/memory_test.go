package eventsource_test

import (
	"testing"

	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/eventsource/eventsourcetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	eventsourcetest.Run(t, func(*testing.T) eventsource.Store { return eventsource.NewMemoryStore() })
}

func TestMemorySnapshotStoreConformance(t *testing.T) {
	eventsourcetest.RunSnapshotStore(t, func(*testing.T) eventsource.SnapshotStore { return eventsource.NewMemorySnapshotStore() })
}

// The baseline in bench_test.go implements the same contract: running the
// suite on it shows the suite assumes nothing beyond the interface.
func TestNaiveStoreConformance(t *testing.T) {
	eventsourcetest.Run(t, func(*testing.T) eventsource.Store { return newNaiveStore() })
}
