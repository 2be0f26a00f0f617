package heartbeat_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/internal/simtransport"
)

// reentrantHandler is a slog handler that calls back into the monitor or
// node it logs for, as a handler that adds their counters would.
type reentrantHandler struct {
	call  atomic.Pointer[func()]
	calls atomic.Int64
}

func (h *reentrantHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *reentrantHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *reentrantHandler) WithGroup(string) slog.Handler            { return h }
func (h *reentrantHandler) Handle(context.Context, slog.Record) error {
	if f := h.call.Load(); f != nil {
		(*f)()
		h.calls.Add(1)
	}
	return nil
}

// TestLoggerMayCallTheMonitor: the Logger is user code, so the monitor
// and the node never call it under their locks; a handler that reads
// their state while a transition, a local pause or a dropped packet is
// logged must not deadlock them. It runs in real time because a deadlock on a mutex would
// hang a synctest bubble rather than fail it.
func TestLoggerMayCallTheMonitor(t *testing.T) {
	net, err := simnet.New(simnet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	tr, err := simtransport.Listen(net, "mon")
	if err != nil {
		t.Fatal(err)
	}
	h := &reentrantHandler{}
	cfg := fastDeadline(time.Second)
	cfg.ID = "mon"
	cfg.CheckInterval = 100 * time.Millisecond
	cfg.Logger = slog.New(h)
	m, err := heartbeat.NewMonitor(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	call := func() { m.Stats(); m.Peer("n1") }
	h.call.Store(&call)
	done := make(chan struct{})
	go func() {
		defer close(done)
		now := time.Now()
		for i := range 30 { // n1 never heard from: suspect, then dead
			heartbeat.Check(m, now.Add(time.Duration(i)*cfg.CheckInterval))
		}
		heartbeat.Check(m, now.Add(time.Hour)) // a local pause
		heartbeat.HandlePacket(m, heartbeat.NewCodec(), heartbeat.Packet{From: "x", Data: []byte{0xff}}, now)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the monitor deadlocked when its Logger read its state")
	}
	if h.calls.Load() < 4 {
		t.Fatalf("the handler was called %d times, want two transitions, a pause and a dropped packet", h.calls.Load())
	}

	ntr, err := simtransport.Listen(net, "n1")
	if err != nil {
		t.Fatal(err)
	}
	nh := &reentrantHandler{}
	n, err := heartbeat.NewNode(ntr, heartbeat.NodeConfig{ID: "n1", Targets: []string{"mon"}, Ack: true, Logger: slog.New(nh)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ncall := func() { n.Stats(); n.Paths() }
	nh.call.Store(&ncall)
	done = make(chan struct{})
	go func() {
		defer close(done)
		now := time.Now()
		for i := range 10 { // checks 10 s apart: local pauses, and the path to mon goes suspect
			heartbeat.CheckNode(n, now.Add(time.Duration(i)*10*time.Second))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the node deadlocked when its Logger read its state")
	}
	if nh.calls.Load() == 0 {
		t.Fatal("the node's handler was never called")
	}
}
