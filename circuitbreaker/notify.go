package circuitbreaker

import (
	"context"
	"log/slog"
	"sync"
)

// notifier delivers transitions to the hook and the logger in the order
// the breaker made them, never under a lock.
//
// Every transition is a successful compare-and-swap from episode gen-1 to
// episode gen, so generations are consecutive. The goroutine that wins a
// swap queues its transition; whichever goroutine finds nobody delivering
// becomes the deliverer and hands out transitions in generation order
// until the next one is missing. A hook that changes the breaker only
// queues its transition, which the deliverer hands out after the hook
// returns: no recursion, no deadlock.
type notifier struct {
	mu         sync.Mutex
	next       uint64 // generation of the next transition to deliver
	queue      []queued
	delivering bool
}

type queued struct {
	gen    uint64
	tr     Transition
	silent bool // a swap that kept the state (Reset of a closed breaker)
}

// publish queues the transition to generation gen and delivers what is
// due. A silent transition only keeps the generations consecutive.
func (n *notifier) publish(s *settings, gen uint64, tr Transition, silent bool) {
	n.mu.Lock()
	i := len(n.queue)
	for i > 0 && n.queue[i-1].gen > gen {
		i--
	}
	n.queue = append(n.queue, queued{})
	copy(n.queue[i+1:], n.queue[i:])
	n.queue[i] = queued{gen: gen, tr: tr, silent: silent}
	if n.delivering {
		n.mu.Unlock()
		return
	}
	n.delivering = true
	defer func() {
		// Runs on normal return and when a hook panics, so that later
		// transitions are still delivered.
		if n.delivering {
			n.delivering = false
			n.mu.Unlock()
		}
	}()
	for len(n.queue) > 0 && n.queue[0].gen == n.next {
		q := n.queue[0]
		n.queue = n.queue[1:]
		n.next++
		if q.silent {
			continue
		}
		n.mu.Unlock()
		func() {
			defer n.mu.Lock()
			deliver(s, q.tr)
		}()
	}
	if len(n.queue) == 0 {
		n.queue = nil
	}
}

func deliver(s *settings, tr Transition) {
	if s.Logger != nil {
		attrs := []slog.Attr{
			slog.String("breaker", tr.Name),
			slog.String("from", tr.From.String()),
			slog.String("to", tr.To.String()),
			slog.String("reason", tr.Reason),
		}
		if tr.Err != nil {
			attrs = append(attrs, slog.String("error", tr.Err.Error()))
		}
		if !tr.OpenUntil.IsZero() {
			attrs = append(attrs, slog.Time("open_until", tr.OpenUntil))
		}
		s.Logger.LogAttrs(context.Background(), slog.LevelInfo, "circuit breaker state changed", attrs...)
	}
	if s.OnStateChange != nil {
		s.OnStateChange(tr)
	}
}
