package heartbeat

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runner is the Run/Close lifecycle shared by Monitor and Node: one Run
// at a time, Close cancels it and waits, and Run after Close fails.
type runner struct {
	mu      sync.Mutex
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// begin starts a Run. It returns Run's context and the function Run must
// defer, or [ErrClosed] or [ErrRunning].
func (r *runner) begin(ctx context.Context) (context.Context, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, ErrClosed
	}
	if r.running {
		return nil, nil, ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r.running, r.cancel, r.done = true, cancel, done
	return ctx, func() {
		cancel()
		r.mu.Lock()
		r.running, r.cancel = false, nil
		r.mu.Unlock()
		close(done)
	}, nil
}

// close marks the owner closed, then cancels a running Run and waits for
// it to return.
func (r *runner) close() {
	r.mu.Lock()
	r.closed = true
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (r *runner) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// exit is Run's error once its context has ended.
func (r *runner) exit(ctx context.Context, who string) error {
	if r.isClosed() {
		return ErrClosed
	}
	return fmt.Errorf("heartbeat: %s: %w", who, ctx.Err())
}

// receive reads packets from tr until ctx ends (returning nil) or Recv
// fails (returning its error). handle returns the reply to send, if any,
// appended to the buffer it is given.
func receive(ctx context.Context, tr Transport, keys [][]byte,
	handle func(c *codec, buf []byte, p Packet, now time.Time) ([]byte, string),
	send func(ctx context.Context, to string, b []byte)) error {
	c := newCodec(keys)
	var buf []byte
	for {
		p, err := tr.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if reply, to := handle(c, buf[:0], p, time.Now()); len(reply) > 0 {
			buf = reply
			send(ctx, to, reply)
		}
	}
}
