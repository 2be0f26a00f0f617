package simnet

import (
	"fmt"
	"io"
	"time"
)

// EventKind names what a trace [Event] records.
type EventKind uint8

// Event kinds.
const (
	EventSend EventKind = iota + 1
	EventDeliver
	EventDrop
	EventDuplicate
	EventPartition
	EventCut
	EventHeal
	EventCrash
	EventRestart
	EventConfig
)

var kindNames = [...]string{
	EventSend:      "send",
	EventDeliver:   "deliver",
	EventDrop:      "drop",
	EventDuplicate: "duplicate",
	EventPartition: "partition",
	EventCut:       "cut",
	EventHeal:      "heal",
	EventCrash:     "crash",
	EventRestart:   "restart",
	EventConfig:    "config",
}

// String returns the kind's name as printed in traces, such as "config".
func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event is one entry of the network trace.
type Event struct {
	At       time.Duration // since the network was created
	Kind     EventKind     // what happened
	From, To string        // the link's endpoints, or the node for node events
	Seq      uint64        // the packet's send sequence, for packet events
	Size     int           // payload bytes, for packet events
	Detail   string        // drop reason, fault description
}

// String renders the event as one line of [Network.WriteTrace] output.
func (e Event) String() string {
	s := fmt.Sprintf("%12v %-9s", e.At, e.Kind)
	if e.From != "" || e.To != "" {
		s += fmt.Sprintf(" %s->%s", e.From, e.To)
	}
	if e.Seq != 0 {
		s += fmt.Sprintf(" #%d (%d B)", e.Seq, e.Size)
	}
	if e.Detail != "" {
		s += " " + e.Detail
	}
	return s
}

func (n *Network) record(e Event) {
	if !n.traceOn {
		return
	}
	e.At = time.Since(n.start)
	if len(n.trace) < n.traceLimit {
		n.trace = append(n.trace, e)
		return
	}
	// Full: overwrite the oldest entry in place (a ring starting at traceHead).
	n.trace[n.traceHead] = e
	n.traceHead = (n.traceHead + 1) % len(n.trace)
}

// Trace returns a copy of the recorded events, oldest first. It is empty
// unless [Config.Trace] was set.
func (n *Network) Trace() []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Event, 0, len(n.trace))
	out = append(out, n.trace[n.traceHead:]...)
	return append(out, n.trace[:n.traceHead]...)
}

// WriteTrace writes the recorded events, one per line, followed by the
// stats. Tests call it when a seeded run fails.
func (n *Network) WriteTrace(w io.Writer) error {
	for _, e := range n.Trace() {
		if _, err := fmt.Fprintln(w, e); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "stats: %+v\n", n.Stats())
	return err
}
