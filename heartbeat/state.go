package heartbeat

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// State is what a [Monitor] believes about a peer (or a [Node] about the
// path to one of its monitors).
//
//	Unknown --heartbeat--> Alive --silence--> Suspect --DeadAfter--> Dead
//	   |                    ^                    |                     |
//	   +------silence-------|--------------------+                     |
//	                        +---- fresh heartbeat (or new incarnation) +
//
// A peer starts Unknown when it is added. The detector moves it to
// Suspect; it becomes Dead after staying Suspect for DeadAfter (in
// quorum mode: once a majority of monitors say Dead). Any fresh
// heartbeat brings it back to Alive. A heartbeat is fresh when its
// incarnation is newer, or its incarnation is the same and its sequence
// number is higher than every one seen before; a Dead peer additionally
// needs evidence sent after it was declared dead (see [Monitor]).
type State uint8

// The states, in order of increasing suspicion.
const (
	Unknown State = iota // tracked, never heard from
	Alive                // heartbeats arrive
	Suspect              // the detector's threshold is crossed
	Dead                 // suspected for DeadAfter, or by a quorum
)

var stateNames = [...]string{"unknown", "alive", "suspect", "dead"}

// String returns "unknown", "alive", "suspect" or "dead".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// Transition is one change of a peer's state, as delivered to a
// [Subscription].
type Transition struct {
	// Seq numbers the transitions of one Monitor (or Node) from 1, with
	// no gaps: a subscriber that sees a gap lost transitions to overflow
	// (see Dropped).
	Seq uint64
	// Dropped is how many transitions this subscription lost, because
	// its queue was full, just before this one. After a loss, read the
	// current states with [Monitor.Peers] and carry on.
	Dropped uint64
	// Peer is the peer's ID; for a Node's path, the monitor's address.
	Peer string
	// Addr is the peer's last known address.
	Addr     string
	From, To State
	// Incarnation is the peer's incarnation when the transition happened.
	Incarnation uint64
	// At is when the transition happened, on the monitor's clock.
	At time.Time
	// Level is the detector's suspicion level at the transition (φ for
	// the accrual detectors).
	Level float64
	// Agreed lists, sorted, the IDs of the monitors whose votes made a
	// quorum-mode peer Dead, this monitor included. Nil otherwise.
	Agreed []string
}

// DefaultSubscriptionBuffer is the queue length of a [Subscription] when
// the config leaves it at 0.
const DefaultSubscriptionBuffer = 1024

// Subscription receives state transitions in the order they happened.
// Transitions are queued without blocking the monitor, so a slow reader
// never stalls detection; if its queue (SubscriptionBuffer long) fills,
// further transitions are dropped and the next delivered one reports how
// many in Dropped. A Subscription is safe for concurrent use.
type Subscription struct {
	hub  *hub
	wake chan struct{} // size 1: "the queue may be non-empty"

	mu      sync.Mutex
	q       []Transition
	dropped uint64
	closed  bool // by Close: Next fails at once
	ended   bool // by the owner's Close: Next drains, then fails
}

// Next returns the next transition, blocking until there is one. It
// returns an error wrapping ctx.Err() if ctx ends first, and [ErrClosed]
// after [Subscription.Close], or once the Monitor (or Node) is closed and
// every queued transition has been returned.
func (s *Subscription) Next(ctx context.Context) (Transition, error) {
	for {
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return Transition{}, ErrClosed
		case len(s.q) > 0:
			t := s.q[0]
			s.q[0] = Transition{}
			s.q = s.q[1:]
			if len(s.q) == 0 {
				s.q = nil // let the backing array go
			}
			s.mu.Unlock()
			return t, nil
		case s.ended:
			s.mu.Unlock()
			return Transition{}, ErrClosed
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return Transition{}, fmt.Errorf("heartbeat: subscription: %w", ctx.Err())
		}
	}
}

// Close ends the subscription: queued transitions are discarded and Next
// returns [ErrClosed]. It is idempotent.
func (s *Subscription) Close() error {
	s.hub.remove(s)
	s.mu.Lock()
	s.closed = true
	s.q = nil
	s.mu.Unlock()
	s.signal()
	return nil
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// hub fans transitions out to subscriptions. publish is called with the
// owner's lock held, which is what orders transitions; it never blocks
// and never runs user code.
type hub struct {
	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	limit   int
	seq     uint64
	dropped uint64
	closed  bool
}

func newHub(limit int) *hub {
	return &hub{subs: make(map[*Subscription]struct{}), limit: limit}
}

func (h *hub) subscribe() *Subscription {
	s := &Subscription{hub: h, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.ended = true
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) remove(s *Subscription) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// publish numbers t, queues it for every subscription and returns its
// number.
func (h *hub) publish(t Transition) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	t.Seq = h.seq
	for s := range h.subs {
		s.mu.Lock()
		if len(s.q) >= h.limit {
			s.dropped++
			h.dropped++
			s.mu.Unlock()
			continue
		}
		u := t
		u.Dropped, s.dropped = s.dropped, 0
		s.q = append(s.q, u)
		s.mu.Unlock()
		s.signal()
	}
	return t.Seq
}

// close ends every subscription after its queue drains.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		s.signal()
	}
	clear(h.subs)
}

func (h *hub) stats() (seq, dropped uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq, h.dropped
}
