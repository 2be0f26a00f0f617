package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/pubsub"
)

// groups are the consumer groups of the order events.
var groups = []string{"inventory", "payment", "shipping"}

// tally records, per consumer group, how often it handled each event
// position, and how many dead letters arrived.
type tally struct {
	mu   sync.Mutex
	seen map[string]map[uint64]int
	dead int
}

func (t *tally) add(group string, pos uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[group] == nil {
		t.seen[group] = map[uint64]int{}
	}
	t.seen[group][pos]++
}

func (t *tally) distinct(group string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen[group])
}

func (t *tally) deadLetters() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dead
}

// events is the pubsub side of the shop: the event log forwarded to a
// broker, and the inventory, payment and shipping consumer groups.
type events struct {
	broker      *pubsub.MemoryBroker
	router      *pubsub.Router
	tally       *tally
	paymentBusy atomic.Int64 // transient failures of the payment participant

	stopRouter, stopForward context.CancelFunc
	routerDone              chan error
	forwardDone             chan struct{}
}

// startEvents subscribes the participants and forwards store's log to
// them until stop.
func startEvents(ctx context.Context, store eventsource.Store) (*events, error) {
	broker, err := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	if err != nil {
		return nil, err
	}
	router, err := pubsub.NewRouter(broker, pubsub.RouterConfig{ShutdownTimeout: 5 * time.Second})
	if err != nil {
		broker.Close()
		return nil, err
	}
	e := &events{broker: broker, router: router, tally: &tally{seen: map[string]map[uint64]int{}}}
	if err := e.subscribe(); err != nil {
		broker.Close()
		return nil, err
	}
	rctx, stopRouter := context.WithCancel(context.WithoutCancel(ctx))
	e.stopRouter, e.routerDone = stopRouter, make(chan error, 1)
	go func() { e.routerDone <- router.Run(rctx) }()
	select {
	case <-router.Ready():
	case err := <-e.routerDone:
		stopRouter()
		broker.Close()
		return nil, err
	}
	fctx, stopForward := context.WithCancel(ctx)
	e.stopForward, e.forwardDone = stopForward, make(chan struct{})
	go func() {
		defer close(e.forwardDone)
		_, _ = cqrs.Forward(fctx, store, 0, eventsource.Filter{}, broker, func(ev eventsource.Event) string {
			return "orders." + statusOf(ev.Type)
		})
	}()
	return e, nil
}

func (e *events) subscribe() error {
	participant := func(group string, work func(eventsource.Event, *pubsub.Message) error) pubsub.Handler {
		return func(_ context.Context, msg *pubsub.Message) error {
			ev, err := cqrs.MessageEvent(msg)
			if err != nil {
				return pubsub.Permanent(err) // retrying cannot fix a malformed message
			}
			if err := work(ev, msg); err != nil {
				return err
			}
			e.tally.add(group, ev.Position)
			return nil
		}
	}
	member := func(group string, concurrency, queue int) pubsub.SubscribeConfig {
		return pubsub.SubscribeConfig{Group: group, Concurrency: concurrency, QueueSize: queue, MaxDeliver: 5,
			Backoff: []time.Duration{2 * time.Millisecond, 10 * time.Millisecond}, DeadLetterTopic: "dead.orders"}
	}
	reserve := func(eventsource.Event, *pubsub.Message) error { return nil }
	routes := []struct {
		name, pattern string
		h             pubsub.Handler
		cfg           pubsub.SubscribeConfig
	}{
		// Inventory: two members share the group's messages.
		{"inventory-1", "orders.>", participant("inventory", reserve), member("inventory", 2, 0)},
		{"inventory-2", "orders.>", participant("inventory", reserve), member("inventory", 2, 0)},
		// Payment: its ledger is busy now and then; the message is redelivered.
		{"payment-1", "orders.>", participant("payment", func(ev eventsource.Event, msg *pubsub.Message) error {
			if ev.Position%7 == 0 && msg.Attempt == 1 {
				e.paymentBusy.Add(1)
				return errors.New("ledger busy")
			}
			return nil
		}), member("payment", 2, 0)},
		// Shipping: slow, with a small queue that pushes back on the relay.
		{"shipping-1", "orders.>", participant("shipping", func(eventsource.Event, *pubsub.Message) error {
			time.Sleep(2 * time.Millisecond)
			return nil
		}), member("shipping", 1, 16)},
		{"dead-letters", "dead.>", func(context.Context, *pubsub.Message) error {
			e.tally.mu.Lock()
			e.tally.dead++
			e.tally.mu.Unlock()
			return nil
		}, pubsub.SubscribeConfig{}},
	}
	if err := e.router.Use(pubsub.Recover(), pubsub.Correlation()); err != nil {
		return err
	}
	for _, r := range routes {
		if err := e.router.Handle(r.name, r.pattern, r.h, r.cfg); err != nil {
			return err
		}
	}
	return nil
}

// settled reports whether every group has handled every event up to head
// and the dead letters of the poison message have arrived.
func (e *events) settled(head uint64) bool {
	for _, g := range groups {
		if e.tally.distinct(g) < int(head) {
			return false
		}
	}
	return e.tally.deadLetters() >= len(groups)
}

// stop stops the relay and the router (gracefully) and closes the
// broker. It returns the router's shutdown error. Safe to call twice.
func (e *events) stop() error {
	e.stopForward()
	<-e.forwardDone
	e.stopRouter()
	err, ok := <-e.routerDone
	if ok {
		close(e.routerDone)
	}
	e.broker.Close()
	return err
}
