// Package heartbeattest checks implementations of heartbeat's interfaces
// against their documented contracts, so that a new transport (QUIC, a
// message bus, a test double) or a new failure detector can prove it
// behaves as the package expects.
//
//	func TestMyTransport(t *testing.T) {
//		heartbeattest.TestTransport(t, func(t *testing.T, n int) []heartbeat.Transport {
//			return newConnectedTransports(t, n)
//		})
//	}
package heartbeattest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
)

// recvTimeout bounds how long the suite waits for a datagram that should
// arrive; it is a failure deadline, not a synchronisation delay.
const recvTimeout = 5 * time.Second

// TestTransport runs the [heartbeat.Transport] conformance suite. newNet
// must return n fresh transports that can reach one another at their
// LocalAddr, on a network that does not lose packets while the suite
// runs (loopback, or a simulated network without faults). The suite
// closes every transport it is given.
func TestTransport(t *testing.T, newNet func(t *testing.T, n int) []heartbeat.Transport) {
	t.Run("RoundTrip", func(t *testing.T) {
		ts := open(t, newNet, 2)
		a, b := ts[0], ts[1]
		send(t, a, b.LocalAddr(), []byte("ping"))
		p := recv(t, b)
		if string(p.Data) != "ping" {
			t.Fatalf("received %q, want %q", p.Data, "ping")
		}
		if p.From != a.LocalAddr() {
			t.Fatalf("From = %q, want the sender's LocalAddr %q", p.From, a.LocalAddr())
		}
		send(t, b, p.From, []byte("pong"))
		if q := recv(t, a); string(q.Data) != "pong" {
			t.Fatalf("reply received as %q", q.Data)
		}
	})
	t.Run("SendDoesNotRetainPayload", func(t *testing.T) {
		ts := open(t, newNet, 2)
		buf := []byte("original")
		send(t, ts[0], ts[1].LocalAddr(), buf)
		copy(buf, "XXXXXXXX")
		if p := recv(t, ts[1]); string(p.Data) != "original" {
			t.Fatalf("received %q: the transport kept the caller's buffer", p.Data)
		}
	})
	t.Run("ReceivedDataIsOwned", func(t *testing.T) {
		ts := open(t, newNet, 2)
		send(t, ts[0], ts[1].LocalAddr(), []byte("first"))
		p := recv(t, ts[1])
		send(t, ts[0], ts[1].LocalAddr(), []byte("second"))
		q := recv(t, ts[1])
		if string(p.Data) != "first" || string(q.Data) != "second" {
			t.Fatalf("received %q then %q: data of one packet aliases another", p.Data, q.Data)
		}
	})
	t.Run("DatagramsStayWhole", func(t *testing.T) {
		ts := open(t, newNet, 2)
		var want [][]byte
		for i := range 50 {
			b := bytes.Repeat([]byte{byte(i)}, 1+i*23)
			want = append(want, b)
			send(t, ts[0], ts[1].LocalAddr(), b)
		}
		var got [][]byte
		for range want {
			got = append(got, recv(t, ts[1]).Data)
		}
		cmp := func(a, b []byte) int { return bytes.Compare(a, b) }
		slices.SortFunc(want, cmp)
		slices.SortFunc(got, cmp)
		for i := range want {
			if !bytes.Equal(want[i], got[i]) {
				t.Fatalf("datagram %d: got %d bytes, want %d: split, merged or corrupted", i, len(got[i]), len(want[i]))
			}
		}
	})
	t.Run("ConcurrentSenders", func(t *testing.T) {
		ts := open(t, newNet, 4)
		dst := ts[3]
		var wg sync.WaitGroup
		errs := make(chan error, 60)
		for s := range 3 {
			wg.Go(func() {
				for i := range 20 {
					if err := ts[s].Send(context.Background(), dst.LocalAddr(), fmt.Appendf(nil, "%d/%d", s, i)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent Send: %v", err)
		}
		seen := map[string]bool{}
		for range 60 {
			p := recv(t, dst)
			seen[string(p.Data)] = true
		}
		if len(seen) != 60 {
			t.Fatalf("received %d distinct datagrams, want 60", len(seen))
		}
	})
	t.Run("RecvHonoursContext", func(t *testing.T) {
		ts := open(t, newNet, 1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := ts[0].Recv(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Recv with a cancelled context: %v, want context.Canceled", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := ts[0].Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Recv past its deadline: %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("SendHonoursContext", func(t *testing.T) {
		ts := open(t, newNet, 2)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := ts[0].Send(ctx, ts[1].LocalAddr(), []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Send with a cancelled context: %v, want context.Canceled", err)
		}
	})
	t.Run("CloseUnblocksRecv", func(t *testing.T) {
		ts := open(t, newNet, 2)
		errc := make(chan error, 1)
		go func() {
			_, err := ts[0].Recv(context.Background())
			errc <- err
		}()
		if err := ts[0].Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, heartbeat.ErrClosed) {
				t.Fatalf("Recv after Close: %v, want heartbeat.ErrClosed", err)
			}
		case <-time.After(recvTimeout):
			t.Fatal("Close did not unblock Recv")
		}
		if err := ts[0].Send(context.Background(), ts[1].LocalAddr(), []byte("x")); !errors.Is(err, heartbeat.ErrClosed) {
			t.Fatalf("Send after Close: %v, want heartbeat.ErrClosed", err)
		}
		if _, err := ts[0].Recv(context.Background()); !errors.Is(err, heartbeat.ErrClosed) {
			t.Fatalf("Recv after Close: %v, want heartbeat.ErrClosed", err)
		}
		if err := ts[0].Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func open(t *testing.T, newNet func(t *testing.T, n int) []heartbeat.Transport, n int) []heartbeat.Transport {
	t.Helper()
	ts := newNet(t, n)
	if len(ts) != n {
		t.Fatalf("newNet returned %d transports, want %d", len(ts), n)
	}
	t.Cleanup(func() {
		for _, tr := range ts {
			_ = tr.Close()
		}
	})
	return ts
}

func send(t *testing.T, tr heartbeat.Transport, to string, b []byte) {
	t.Helper()
	if err := tr.Send(context.Background(), to, b); err != nil {
		t.Fatalf("Send to %s: %v", to, err)
	}
}

func recv(t *testing.T, tr heartbeat.Transport) heartbeat.Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recvTimeout)
	defer cancel()
	p, err := tr.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv at %s: %v", tr.LocalAddr(), err)
	}
	return p
}
