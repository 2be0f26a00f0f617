package heartbeat_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
)

// Recording a heartbeat and computing the suspicion level, per detector.
// The fixed deadline is the baseline: the cheapest possible detector.
// "healthy" evaluates 300 ms after a heartbeat, as most checks of a live
// peer do; "late" evaluates after 4.3 s of silence, where φ accrual needs
// its exponential and logarithm.
func BenchmarkDetector(b *testing.B) {
	for _, d := range []struct {
		name string
		f    heartbeat.DetectorFactory
	}{
		{"Deadline", heartbeat.DeadlineConfig{}},
		{"PhiAccrual", heartbeat.PhiAccrualConfig{}},
		{"Exponential", heartbeat.ExponentialConfig{}},
	} {
		for _, at := range []struct {
			name  string
			after time.Duration
		}{{"healthy", 300 * time.Millisecond}, {"late", 4300 * time.Millisecond}} {
			b.Run(d.name+"/"+at.name, func(b *testing.B) {
				det, err := d.f.NewDetector(time.Second)
				if err != nil {
					b.Fatal(err)
				}
				now := time.Now()
				for i := range 2000 { // fill the sample window
					det.Heartbeat(now.Add(time.Duration(i) * time.Second))
				}
				now = now.Add(2000 * time.Second)
				var sink float64
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					i++
					now = now.Add(time.Second + time.Duration(i%64)*time.Millisecond)
					det.Heartbeat(now)
					l, _ := det.Suspicion(now.Add(at.after))
					sink += l
				}
				_ = sink
			})
		}
	}
}

func benchMonitor(b *testing.B, peers int, keys [][]byte) *heartbeat.Monitor {
	b.Helper()
	net, err := simnet.New(simnet.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = net.Close() })
	nd, err := net.Node("mon")
	if err != nil {
		b.Fatal(err)
	}
	m, err := heartbeat.NewMonitor(simTransport(nd), heartbeat.MonitorConfig{ID: "mon", Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	for i := range peers {
		if err := m.Add(heartbeat.Peer{ID: fmt.Sprintf("node-%05d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// A monitor tracking 10,000 peers receiving their heartbeats round-robin:
// decode, (verify,) deduplicate, record, timing, state. Each op also
// encodes the packet it handles (see BenchmarkWire for that cost alone).
// heartbeats/s is per core: the benchmark is single-threaded.
func BenchmarkMonitorHeartbeats10kPeers(b *testing.B) {
	key := []byte("benchmark key of thirty-two byte")
	for _, tc := range []struct {
		name string
		keys [][]byte
	}{{"unsigned", nil}, {"signed", [][]byte{key}}} {
		b.Run(tc.name, func(b *testing.B) {
			const peers = 10_000
			m := benchMonitor(b, peers, tc.keys)
			ids := make([]string, peers)
			for i := range ids {
				ids[i] = fmt.Sprintf("node-%05d", i)
			}
			enc, dec := heartbeat.NewCodec(tc.keys...), heartbeat.NewCodec(tc.keys...)
			var buf []byte
			now := time.Now()
			i, seq := 0, uint64(1)
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.AppendHeartbeat(buf[:0], ids[i], 1, seq, now.UnixNano(), seq*1e9, time.Second)
				now = now.Add(100 * time.Microsecond) // 10k peers at 1 s each
				heartbeat.HandlePacket(m, dec, heartbeat.Packet{From: ids[i], Data: buf}, now)
				if i++; i == peers {
					i, seq = 0, seq+1
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
			if s := m.Stats(); s.Heartbeats != uint64(b.N) {
				b.Fatalf("%d of %d heartbeats accepted: %+v", s.Heartbeats, b.N, s)
			}
		})
	}
}

// One check of 10,000 peers: every detector consulted, every state
// re-evaluated. At the default check interval of 100 ms this runs ten
// times a second.
func BenchmarkMonitorCheck10kPeers(b *testing.B) {
	m := benchMonitor(b, 10_000, nil)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		heartbeat.Check(m, now)
	}
}

// Encoding and decoding one heartbeat, with and without HMAC-SHA256.
func BenchmarkWire(b *testing.B) {
	key := []byte("benchmark key of thirty-two byte")
	for _, tc := range []struct {
		name string
		keys [][]byte
	}{{"unsigned", nil}, {"signed", [][]byte{key}}} {
		b.Run(tc.name, func(b *testing.B) {
			c := heartbeat.NewCodec(tc.keys...)
			var buf []byte
			seq := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				seq++
				buf = c.AppendHeartbeat(buf[:0], "node-00042", 1, seq, 1_700_000_000_000_000_000, seq*1e9, time.Second)
				if _, _, err := c.Decode(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "bytes/packet")
		})
	}
}

// A heartbeat through real UDP sockets on loopback: encode, send, receive,
// decode.
func BenchmarkUDPRoundTrip(b *testing.B) {
	a, err := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	z, err := heartbeat.ListenUDP("127.0.0.1:0", heartbeat.UDPConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer z.Close()
	c := heartbeat.NewCodec()
	ctx := context.Background()
	var buf []byte
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		buf = c.AppendHeartbeat(buf[:0], "node-00042", 1, seq, 1_700_000_000_000_000_000, seq*1e9, time.Second)
		if err := a.Send(ctx, z.LocalAddr(), buf); err != nil {
			b.Fatal(err)
		}
		p, err := z.Recv(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, got, err := c.Decode(p.Data); err != nil || got != seq {
			b.Fatalf("decoded seq %d, err %v; want %d", got, err, seq)
		}
	}
}
