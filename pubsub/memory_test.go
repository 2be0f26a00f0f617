package pubsub_test

import (
	"testing"

	"github.com/distkit/distkit/pubsub"
	"github.com/distkit/distkit/pubsub/pubsubtest"
)

func newBroker(t testing.TB, cfg pubsub.MemoryConfig) *pubsub.MemoryBroker {
	t.Helper()
	b, err := pubsub.NewMemoryBroker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestMemoryBrokerConformance(t *testing.T) {
	pubsubtest.Run(t, pubsubtest.Features{
		ConsumerGroups: true, Redelivery: true, DeadLetter: true, Dedup: true, Replay: true,
		AckDeadline: true, Overflow: true, Shutdown: true, Synctest: true,
	}, func(t *testing.T) pubsubtest.Backend {
		return newBroker(t, pubsub.MemoryConfig{Retention: 100})
	})
}
