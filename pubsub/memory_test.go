package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

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

func nop(context.Context, *pubsub.Message) error { return nil }

func TestNewMemoryBrokerRejectsInvalidConfig(t *testing.T) {
	for name, cfg := range map[string]pubsub.MemoryConfig{
		"negative DedupMax":       {DedupMax: -1},
		"negative Retention":      {Retention: -1},
		"negative RetentionAge":   {RetentionAge: -time.Second},
		"negative MaxMessageSize": {MaxMessageSize: -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pubsub.NewMemoryBroker(cfg)
			require.ErrorIs(t, err, pubsub.ErrInvalidConfig)
		})
	}
}

func TestGoroutinesGrowWithSubscriptionsNotMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{})
		before := runtime.NumGoroutine()
		release := make(chan struct{})
		var handled atomic.Int64
		for i := range 3 {
			_, err := b.Subscribe(t.Context(), "g.>", func(context.Context, *pubsub.Message) error {
				<-release
				handled.Add(1)
				return nil
			}, pubsub.SubscribeConfig{Concurrency: i + 1, QueueSize: 1000})
			require.NoError(t, err)
		}
		workers := 1 + 2 + 3
		const n = 500
		for i := range n {
			m := pubsub.NewMessage(nil)
			m.Key = strconv.Itoa(i % 7)
			require.NoError(t, b.Publish(t.Context(), "g.x", m))
		}
		synctest.Wait() // every handler is busy, every other message queued
		// Other tests' goroutines may still be winding down, so allow a
		// little slack; a goroutine per message would add 1500.
		require.LessOrEqual(t, runtime.NumGoroutine()-before, workers+3, "goroutines grew beyond the subscriptions' workers")
		close(release)
		for handled.Load() < 3*n {
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, b.Close())
	})
}

func TestMaxMessageSize(t *testing.T) {
	b := newBroker(t, pubsub.MemoryConfig{MaxMessageSize: 10})
	require.NoError(t, b.Publish(t.Context(), "size", &pubsub.Message{Payload: []byte("0123456789")}))
	err := b.Publish(t.Context(), "size", &pubsub.Message{Payload: []byte("0123456789a")})
	require.ErrorIs(t, err, pubsub.ErrMessageTooLarge)
	err = b.Publish(t.Context(), "size", &pubsub.Message{Payload: []byte("0123"), Headers: map[string]string{"abc": "defg"}})
	require.ErrorIs(t, err, pubsub.ErrMessageTooLarge, "headers count toward the size")
}

func TestPublishBatchReportsHowManyWereAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{})
		block := make(chan struct{})
		_, err := b.Subscribe(t.Context(), "batch", func(ctx context.Context, _ *pubsub.Message) error {
			<-block
			return nil
		}, pubsub.SubscribeConfig{QueueSize: 3})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		msgs := []*pubsub.Message{pubsub.NewMessage(nil), pubsub.NewMessage(nil), pubsub.NewMessage(nil), pubsub.NewMessage(nil), pubsub.NewMessage(nil)}
		err = b.Publish(ctx, "batch", msgs...)
		var pe *pubsub.PublishError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, 3, pe.Published)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		close(block)
	})
}

func TestDedupWindowExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{DedupWindow: time.Minute})
		var got atomic.Int64
		_, err := b.Subscribe(t.Context(), "d", func(context.Context, *pubsub.Message) error { got.Add(1); return nil }, pubsub.SubscribeConfig{})
		require.NoError(t, err)
		m := pubsub.NewMessage(nil)
		require.NoError(t, b.Publish(t.Context(), "d", m))
		time.Sleep(59 * time.Second)
		require.NoError(t, b.Publish(t.Context(), "d", m))
		synctest.Wait()
		require.EqualValues(t, 1, got.Load(), "duplicate within the window delivered")
		require.EqualValues(t, 1, b.Stats().Duplicates)
		time.Sleep(2 * time.Second)
		require.NoError(t, b.Publish(t.Context(), "d", m))
		synctest.Wait()
		require.EqualValues(t, 2, got.Load(), "republished after the window, not delivered")
		// The same ID on another topic is another message.
		_, err = b.Subscribe(t.Context(), "e", func(context.Context, *pubsub.Message) error { got.Add(1); return nil }, pubsub.SubscribeConfig{})
		require.NoError(t, err)
		require.NoError(t, b.Publish(t.Context(), "e", m))
		synctest.Wait()
		require.EqualValues(t, 3, got.Load())
	})
}

func TestDedupRemembersAtLeastHalfOfDedupMax(t *testing.T) {
	b := newBroker(t, pubsub.MemoryConfig{DedupMax: 100})
	var got atomic.Int64
	_, err := b.Subscribe(t.Context(), "d", func(context.Context, *pubsub.Message) error { got.Add(1); return nil }, pubsub.SubscribeConfig{QueueSize: 1000})
	require.NoError(t, err)
	var msgs []*pubsub.Message
	for range 200 {
		msgs = append(msgs, pubsub.NewMessage(nil))
	}
	require.NoError(t, b.Publish(t.Context(), "d", msgs...))
	require.NoError(t, b.Publish(t.Context(), "d", msgs[150:]...)) // the last 50 are remembered
	require.EqualValues(t, 50, b.Stats().Duplicates)
}

func TestRetentionBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{Retention: 5, RetentionAge: time.Minute})
		for i := range 8 {
			require.NoError(t, b.Publish(t.Context(), "r", pubsub.NewMessage([]byte{byte(i)})))
			time.Sleep(10 * time.Second)
		}
		// Kept: the last 5 (3..7), of which those older than a minute
		// (published at 30s and 40s; now is 105s) are gone too.
		time.Sleep(25 * time.Second)
		var got []byte
		var mu sync.Mutex
		_, err := b.Subscribe(t.Context(), "r", func(_ context.Context, m *pubsub.Message) error {
			mu.Lock()
			got = append(got, m.Payload[0])
			mu.Unlock()
			return nil
		}, pubsub.SubscribeConfig{Deliver: pubsub.DeliverAll})
		require.NoError(t, err)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []byte{5, 6, 7}, got)
	})
}

func TestLastGroupMemberReportsUndelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{})
		block := make(chan struct{})
		defer close(block)
		var s [2]pubsub.Subscription
		for i := range s {
			var err error
			s[i], err = b.Subscribe(t.Context(), "grp", func(ctx context.Context, _ *pubsub.Message) error {
				select {
				case <-block:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}, pubsub.SubscribeConfig{Group: "g"})
			require.NoError(t, err)
		}
		for range 10 {
			require.NoError(t, b.Publish(t.Context(), "grp", pubsub.NewMessage(nil)))
		}
		synctest.Wait()
		require.NoError(t, s[0].Close(), "the group lives on in s[1]")
		st := s[1].Stats()
		require.Equal(t, 10, st.Pending+st.InFlight, "messages of the member that left stay with the group")
		err := s[1].Close()
		var ue *pubsub.UndeliveredError
		require.ErrorAs(t, err, &ue)
		require.Len(t, ue.Messages, 10)
		require.NoError(t, s[1].Close(), "Close is idempotent")
	})
}

func TestHandlerContextCarriesSubscribeValues(t *testing.T) {
	type key struct{}
	b := newBroker(t, pubsub.MemoryConfig{})
	got := make(chan any, 1)
	ctx := context.WithValue(t.Context(), key{}, "v")
	_, err := b.Subscribe(ctx, "v", func(ctx context.Context, _ *pubsub.Message) error {
		got <- ctx.Value(key{})
		return nil
	}, pubsub.SubscribeConfig{})
	require.NoError(t, err)
	require.NoError(t, b.Publish(t.Context(), "v", pubsub.NewMessage(nil)))
	require.Equal(t, "v", <-got)
}

func TestUnlimitedMaxDeliverKeepsBackingOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{})
		var n atomic.Int64
		s, err := b.Subscribe(t.Context(), "u", func(context.Context, *pubsub.Message) error {
			n.Add(1)
			return errors.New("no")
		}, pubsub.SubscribeConfig{MaxDeliver: -1, Backoff: []time.Duration{time.Second, 10 * time.Second}})
		require.NoError(t, err)
		require.NoError(t, b.Publish(t.Context(), "u", pubsub.NewMessage(nil)))
		time.Sleep(time.Minute + time.Millisecond)
		// t=0, 1s, 11s, 21s, ..., 51s: 7 deliveries in a minute.
		require.EqualValues(t, 7, n.Load())
		st := s.Stats()
		require.EqualValues(t, 0, st.Terminated+st.DeadLettered)
		require.Equal(t, 1, st.Pending)
	})
}

func TestSubscribeContextEndingClosesAndReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{})
		ctx, cancel := context.WithCancel(t.Context())
		var cancelled atomic.Bool
		_, err := b.Subscribe(ctx, "c", func(ctx context.Context, _ *pubsub.Message) error {
			<-ctx.Done()
			cancelled.Store(true)
			return ctx.Err()
		}, pubsub.SubscribeConfig{})
		require.NoError(t, err)
		require.NoError(t, b.Publish(t.Context(), "c", pubsub.NewMessage(nil)))
		synctest.Wait()
		cancel()
		synctest.Wait()
		require.True(t, cancelled.Load(), "ending the Subscribe context cancels handlers")
		require.Equal(t, 0, b.Stats().Subscriptions)
	})
}

// TestAgainstModel publishes random messages to random topics and checks,
// for random subscriptions with failing handlers, that each subscription
// acknowledges exactly the messages its pattern matches, in order per key
// (per topic for ordered subscriptions), whatever the seed.
func TestAgainstModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runModel(t, seed) })
		})
	}
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := newBroker(t, pubsub.MemoryConfig{})
	topics := []string{"m.a", "m.b", "m.a.x", "m.b.y"}
	patterns := []string{"m.*", "m.>", "m.a.*", "m.a", ">"}
	type subState struct {
		pattern string
		keyed   bool
		mu      sync.Mutex
		acked   map[string]int // id -> times acked
		order   map[string][]int
	}
	var subs []*subState
	for i := range 4 {
		st := &subState{pattern: patterns[rng.IntN(len(patterns))], acked: map[string]int{}, order: map[string][]int{}}
		conc := 1 + rng.IntN(3)
		st.keyed = conc > 1
		failRate := rng.IntN(3) // 0: never, else 1 in failRate+1
		frng := rand.New(rand.NewPCG(seed, uint64(i)))
		var fmu sync.Mutex
		_, err := b.Subscribe(t.Context(), st.pattern, func(_ context.Context, m *pubsub.Message) error {
			fmu.Lock()
			fail := failRate > 0 && frng.IntN(failRate+1) == 0
			fmu.Unlock()
			if fail {
				return errors.New("random failure")
			}
			n, _ := strconv.Atoi(string(m.Payload))
			st.mu.Lock()
			st.acked[m.ID]++
			k := m.Topic
			if st.keyed {
				k = m.Key
			}
			st.order[k] = append(st.order[k], n)
			st.mu.Unlock()
			return nil
		}, pubsub.SubscribeConfig{Concurrency: conc, MaxDeliver: -1, Backoff: []time.Duration{time.Millisecond, 5 * time.Millisecond}})
		require.NoError(t, err)
		subs = append(subs, st)
	}
	want := make([]map[string]bool, len(subs))
	for i := range want {
		want[i] = map[string]bool{}
	}
	for n := range 300 {
		topic := topics[rng.IntN(len(topics))]
		m := pubsub.NewMessage([]byte(strconv.Itoa(n)))
		m.Key = "k" + strconv.Itoa(rng.IntN(4))
		if rng.IntN(5) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
		require.NoError(t, b.Publish(t.Context(), topic, m))
		for i, s := range subs {
			if pubsub.Match(s.pattern, topic) {
				want[i][m.ID] = true
			}
		}
	}
	time.Sleep(time.Minute)
	for i, s := range subs {
		s.mu.Lock()
		require.Len(t, s.acked, len(want[i]), "subscription %q acknowledged a different set", s.pattern)
		for id, n := range s.acked {
			require.True(t, want[i][id], "subscription %q got unmatched message", s.pattern)
			require.Equal(t, 1, n, "message acknowledged twice")
		}
		for k, ns := range s.order {
			require.True(t, slices.IsSorted(ns), "subscription %q, %s: out of order %v", s.pattern, k, ns)
		}
		s.mu.Unlock()
	}
}
