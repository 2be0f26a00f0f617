package eventsource_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

func TestMemoryStoreZeroValue(t *testing.T) {
	var s eventsource.MemoryStore
	ctx := context.Background()
	h, err := s.Head(ctx)
	require.NoError(t, err)
	assert.Zero(t, h)
	for range s.ReadAll(ctx, 0, eventsource.Filter{}) {
		t.Fatal("an empty store yielded an event")
	}
	for range s.ReadStream(ctx, "x", eventsource.StreamQuery{}) {
		t.Fatal("an empty store yielded an event")
	}
	_, err = s.Append(ctx, "x", eventsource.NoStream, eventsource.EventData{Type: "t"})
	require.NoError(t, err)
	assert.Equal(t, eventsource.MemoryStats{Events: 1, Streams: 1}, s.Stats())
}

func TestMemoryStoreStats(t *testing.T) {
	s := eventsource.NewMemoryStore()
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 10_000) // larger than an arena chunk's per-event limit
	_, err := s.Append(ctx, "a-1", eventsource.NoStream, eventsource.EventData{Type: "t", Data: []byte("abc")}, eventsource.EventData{Type: "t", Data: big})
	require.NoError(t, err)
	_, err = s.Append(ctx, "b-1", eventsource.NoStream, eventsource.EventData{Type: "t"})
	require.NoError(t, err)
	assert.Equal(t, eventsource.MemoryStats{Events: 3, Streams: 2, PayloadBytes: 10_003}, s.Stats())
	for e, err := range s.ReadStream(ctx, "a-1", eventsource.StreamQuery{From: 2}) {
		require.NoError(t, err)
		assert.Equal(t, big, e.Data)
	}
}

// Many appends cross log segments and payload arena chunks; every event
// reads back intact.
func TestMemoryStoreManySegments(t *testing.T) {
	s := eventsource.NewMemoryStore()
	ctx := context.Background()
	const n = 3000
	for i := range n {
		data := bytes.Repeat([]byte{byte(i)}, i%300)
		_, err := s.Append(ctx, fmt.Sprint("s-", i%7), eventsource.Any, eventsource.EventData{Type: "t", Data: data})
		require.NoError(t, err)
	}
	i := 0
	for e, err := range s.ReadAll(ctx, 0, eventsource.Filter{}) {
		require.NoError(t, err)
		require.Equal(t, uint64(i+1), e.Position)
		require.True(t, bytes.Equal(bytes.Repeat([]byte{byte(i)}, i%300), e.Data), "data of event %d", i+1)
		i++
	}
	require.Equal(t, n, i)
	got := 0
	for e, err := range s.ReadStream(ctx, "s-3", eventsource.StreamQuery{From: 100, To: 200}) {
		require.NoError(t, err)
		require.Equal(t, uint64(100+got), e.Version)
		require.Equal(t, uint64(3+7*(99+got)+1), e.Position)
		got++
	}
	require.Equal(t, 101, got)
}

// With fake time the instants are exact: the stream as of any instant is
// exactly the events committed by then.
func TestMemoryStoreTimeTravel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := eventsource.NewMemoryStore()
		ctx := context.Background()
		start := time.Now()
		for i := range 5 {
			res, err := s.Append(ctx, "acct-1", eventsource.Any, eventsource.EventData{Type: "t", Data: []byte{byte(i)}})
			require.NoError(t, err)
			require.True(t, res.Time.Equal(start.Add(time.Duration(i)*time.Hour)))
			time.Sleep(time.Hour)
		}
		tests := []struct {
			at   time.Duration
			want []uint64
		}{
			{-time.Nanosecond, nil},
			{0, []uint64{1}},
			{time.Hour - 1, []uint64{1}},
			{time.Hour, []uint64{1, 2}},
			{150 * time.Minute, []uint64{1, 2, 3}},
			{4 * time.Hour, []uint64{1, 2, 3, 4, 5}},
			{99 * time.Hour, []uint64{1, 2, 3, 4, 5}},
		}
		for _, tc := range tests {
			var got []uint64
			for e, err := range s.ReadStream(ctx, "acct-1", eventsource.StreamQuery{AsOf: start.Add(tc.at)}) {
				require.NoError(t, err)
				got = append(got, e.Version)
			}
			assert.Equal(t, tc.want, got, "as of start%+v", tc.at)
		}
	})
}

// Subscribers and waiters block on the store without polling and leave no
// goroutine behind once their context ends (synctest fails on leaks).
func TestMemoryStoreSubscribeInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := eventsource.NewMemoryStore()
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan uint64)
		done := make(chan error)
		go func() {
			for e, err := range eventsource.Subscribe(ctx, s, 0, eventsource.Filter{Types: []string{"wanted"}}) {
				if err != nil {
					done <- err
					return
				}
				got <- e.Position
			}
		}()
		synctest.Wait() // the subscriber is blocked in Wait
		_, err := s.Append(ctx, "a-1", eventsource.Any, eventsource.EventData{Type: "other"})
		require.NoError(t, err)
		synctest.Wait()
		select {
		case p := <-got:
			t.Fatalf("filtered-out event %d delivered", p)
		default:
		}
		_, err = s.Append(ctx, "a-1", eventsource.Any, eventsource.EventData{Type: "wanted"})
		require.NoError(t, err)
		assert.Equal(t, uint64(2), <-got)

		// A bare Wait with a deadline ends at the deadline, in fake time.
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		defer wcancel()
		before := time.Now()
		_, err = s.Wait(wctx, 2)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Minute, time.Since(before))

		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
}
