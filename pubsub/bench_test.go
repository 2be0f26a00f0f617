package pubsub_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/pubsub"
)

// The speed gates of the broker are ratios against a baseline measured in
// the same run: one buffered channel per subscriber, no acknowledgements.
// Every benchmark checks what it delivered and fails on any loss or
// out-of-order delivery.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./pubsub/

const (
	payloadSize = 1024
	queueSize   = 1024
)

func payload(seq uint64) []byte {
	p := make([]byte, payloadSize)
	binary.BigEndian.PutUint64(p, seq)
	return p
}

// checker verifies that one subscriber sees 0, 1, 2, ... and signals when
// it has seen want messages.
type checker struct {
	next uint64
	bad  atomic.Pointer[string]
	want atomic.Uint64
	done chan struct{}
}

func newChecker() *checker { return &checker{done: make(chan struct{}, 1)} }

func (c *checker) see(p []byte) {
	seq := binary.BigEndian.Uint64(p)
	if seq != c.next && c.bad.Load() == nil {
		s := fmt.Sprintf("got message %d, want %d", seq, c.next)
		c.bad.Store(&s)
	}
	c.next++
	if c.next == c.want.Load() {
		c.done <- struct{}{}
	}
}

// finish waits until every checker saw n messages and fails on disorder.
func finish(b *testing.B, cs []*checker, n uint64) {
	b.Helper()
	for _, c := range cs {
		if c.want.Swap(n); c.next < n {
			select {
			case <-c.done:
			case <-time.After(30 * time.Second):
				b.Fatalf("lost messages: subscriber saw %d of %d", c.next, n)
			}
		}
		if s := c.bad.Load(); s != nil {
			b.Fatalf("out-of-order delivery: %s", *s)
		}
		if c.next != n {
			b.Fatalf("subscriber saw %d messages, want %d", c.next, n)
		}
	}
}

// gauge tracks the peak number of goroutines.
type gauge struct{ peak atomic.Int64 }

func (g *gauge) sample() {
	n := int64(runtime.NumGoroutine())
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func BenchmarkThroughput(b *testing.B) {
	for _, subs := range []int{1, 8} {
		b.Run(fmt.Sprintf("subs=%d/impl=channel", subs), func(b *testing.B) { benchChannel(b, subs) })
		b.Run(fmt.Sprintf("subs=%d/impl=broker", subs), func(b *testing.B) { benchBroker(b, subs) })
	}
}

func benchChannel(b *testing.B, subs int) {
	cs := make([]*checker, subs)
	chans := make([]chan []byte, subs)
	var wg sync.WaitGroup
	for i := range subs {
		cs[i], chans[i] = newChecker(), make(chan []byte, queueSize)
		wg.Go(func() {
			for p := range chans[i] {
				cs[i].see(p)
			}
		})
	}
	var n uint64
	start := time.Now()
	for b.Loop() {
		p := payload(n)
		for _, ch := range chans {
			ch <- p
		}
		n++
	}
	finish(b, cs, n)
	b.ReportMetric(float64(n)*float64(subs)/time.Since(start).Seconds(), "deliveries/s")
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
}

func benchBroker(b *testing.B, subs int) {
	ctx := context.Background()
	g0 := runtime.NumGoroutine()
	var g gauge
	br := newBroker(b, pubsub.MemoryConfig{})
	cs := make([]*checker, subs)
	for i := range subs {
		c := newChecker()
		cs[i] = c
		var k int
		_, err := br.Subscribe(ctx, "bench.topic", func(_ context.Context, m *pubsub.Message) error {
			if k++; k%1024 == 0 {
				g.sample()
			}
			c.see(m.Payload)
			return nil
		}, pubsub.SubscribeConfig{QueueSize: queueSize})
		if err != nil {
			b.Fatal(err)
		}
	}
	var n uint64
	start := time.Now()
	for b.Loop() {
		if err := br.Publish(ctx, "bench.topic", pubsub.NewMessage(payload(n))); err != nil {
			b.Fatal(err)
		}
		n++
	}
	finish(b, cs, n)
	b.ReportMetric(float64(n)*float64(subs)/time.Since(start).Seconds(), "deliveries/s")
	g.sample()
	extra := int(g.peak.Load()) - g0
	b.ReportMetric(float64(extra), "goroutines")
	if extra > subs+2 {
		b.Fatalf("peak goroutines %d above the baseline, want at most subscriptions (%d) + 2", extra, subs)
	}
	if st := br.Stats(); st.Published != n {
		b.Fatalf("broker published %d, want %d", st.Published, n)
	}
}

// BenchmarkLatency measures publish-to-handler latency with one message in
// flight, reported as p50-ns and p99-ns.
func BenchmarkLatency(b *testing.B) {
	b.Run("impl=channel", func(b *testing.B) {
		ch, ack := make(chan []byte, queueSize), make(chan struct{})
		c := newChecker()
		go func() {
			for p := range ch {
				c.see(p)
				ack <- struct{}{}
			}
		}()
		lat := make([]time.Duration, 0, 1<<16)
		var n uint64
		for b.Loop() {
			t0 := time.Now()
			ch <- payload(n)
			<-ack
			lat = append(lat, time.Since(t0))
			n++
		}
		close(ch)
		finish(b, []*checker{c}, n)
		reportPercentiles(b, lat)
	})
	b.Run("impl=broker", func(b *testing.B) {
		ctx := context.Background()
		br := newBroker(b, pubsub.MemoryConfig{})
		ack := make(chan struct{})
		c := newChecker()
		if _, err := br.Subscribe(ctx, "bench.latency", func(_ context.Context, m *pubsub.Message) error {
			c.see(m.Payload)
			ack <- struct{}{}
			return nil
		}, pubsub.SubscribeConfig{}); err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, 1<<16)
		var n uint64
		for b.Loop() {
			t0 := time.Now()
			if err := br.Publish(ctx, "bench.latency", pubsub.NewMessage(payload(n))); err != nil {
				b.Fatal(err)
			}
			<-ack
			lat = append(lat, time.Since(t0))
			n++
		}
		finish(b, []*checker{c}, n)
		reportPercentiles(b, lat)
	})
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
}

// BenchmarkPublishParallel has many goroutines publishing to one topic
// with one subscriber; each publisher's messages must arrive in order.
func BenchmarkPublishParallel(b *testing.B) {
	ctx := context.Background()
	br := newBroker(b, pubsub.MemoryConfig{})
	var mu sync.Mutex
	last := map[uint32]uint32{}
	var got atomic.Uint64
	var bad atomic.Pointer[string]
	if _, err := br.Subscribe(ctx, "bench.parallel", func(_ context.Context, m *pubsub.Message) error {
		pub, seq := binary.BigEndian.Uint32(m.Payload), binary.BigEndian.Uint32(m.Payload[4:])
		mu.Lock()
		if prev, ok := last[pub]; ok && seq != prev+1 && bad.Load() == nil {
			s := fmt.Sprintf("publisher %d: message %d after %d", pub, seq, prev)
			bad.Store(&s)
		}
		last[pub] = seq
		mu.Unlock()
		got.Add(1)
		return nil
	}, pubsub.SubscribeConfig{QueueSize: queueSize}); err != nil {
		b.Fatal(err)
	}
	var pubs atomic.Uint32
	var sent atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		id := pubs.Add(1)
		var seq uint32
		for pb.Next() {
			p := make([]byte, payloadSize)
			binary.BigEndian.PutUint32(p, id)
			binary.BigEndian.PutUint32(p[4:], seq)
			seq++
			if err := br.Publish(ctx, "bench.parallel", pubsub.NewMessage(p)); err != nil {
				b.Error(err)
				return
			}
			sent.Add(1)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < sent.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got.Load() != sent.Load() {
		b.Fatalf("lost messages: delivered %d of %d", got.Load(), sent.Load())
	}
	if s := bad.Load(); s != nil {
		b.Fatalf("out-of-order delivery: %s", *s)
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, c := range []struct{ pattern, topic string }{
		{"orders.*.created", "orders.eu.created"},
		{"orders.>", "orders.eu.west.created"},
		{"orders.eu.created", "orders.eu.updated"},
	} {
		b.Run(c.pattern, func(b *testing.B) {
			for b.Loop() {
				pubsub.Match(c.pattern, c.topic)
			}
		})
	}
}
