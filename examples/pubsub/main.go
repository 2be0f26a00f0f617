// Command pubsub runs an order pipeline on the in-memory broker: several
// publishers emit orders, and three consumer groups handle them
// independently: billing (fast, two members), shipping (slow, with a
// small queue that pushes back on the publishers) and fraud (which fails
// on some orders; those end in a dead-letter topic). It prints each
// group's stats and checks that every order was handled exactly once by
// every group or dead-lettered, then stops on its own.
//
//	go run ./examples/pubsub -orders 300 -publishers 3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/distkit/distkit/pubsub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pubsub:", err)
		os.Exit(1)
	}
}

// Order is the event the publishers emit.
type Order struct {
	ID       int    `json:"id"`
	Customer string `json:"customer"`
	Total    int    `json:"total"`
}

// tally counts how often each group handled each order.
type tally struct {
	mu   sync.Mutex
	seen map[string]map[int]int
}

func (t *tally) add(group string, id int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[group] == nil {
		t.seen[group] = map[int]int{}
	}
	t.seen[group][id]++
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("pubsub", flag.ContinueOnError)
	fs.SetOutput(w)
	orders := fs.Int("orders", 300, "orders per publisher")
	publishers := fs.Int("publishers", 3, "concurrent publishers")
	slow := fs.Duration("slow", time.Millisecond, "time shipping spends per order")
	if err := fs.Parse(args); err != nil {
		return err
	}
	total := *orders * *publishers

	b, err := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	if err != nil {
		return err
	}
	defer b.Close()
	r, err := pubsub.NewRouter(b, pubsub.RouterConfig{ShutdownTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	if err := r.Use(pubsub.Recover(), pubsub.Correlation()); err != nil {
		return err
	}
	t := &tally{seen: map[string]map[int]int{}}
	handle := func(group string, fn func(Order, *pubsub.Message) error) pubsub.Handler {
		return pubsub.Typed(nil, func(_ context.Context, o Order, m *pubsub.Message) error {
			if err := fn(o, m); err != nil {
				return err
			}
			t.add(group, o.ID)
			return nil
		})
	}
	routes := []struct {
		name string
		h    pubsub.Handler
		cfg  pubsub.SubscribeConfig
		n    int // members
	}{
		{"billing", handle("billing", func(Order, *pubsub.Message) error { return nil }),
			pubsub.SubscribeConfig{Group: "billing", Concurrency: 2}, 2},
		{"shipping", handle("shipping", func(Order, *pubsub.Message) error { time.Sleep(*slow); return nil }),
			pubsub.SubscribeConfig{Group: "shipping", QueueSize: 64}, 1},
		{"fraud", handle("fraud", func(o Order, m *pubsub.Message) error {
			switch {
			case o.ID%50 == 7:
				return pubsub.Permanent(fmt.Errorf("order %d: card on the block list", o.ID))
			case o.ID%10 == 3 && m.Attempt < 3:
				return errors.New("scoring service timed out") // succeeds on the third attempt
			case o.ID%100 == 42:
				return errors.New("scoring service rejects this order") // never succeeds
			}
			return nil
		}), pubsub.SubscribeConfig{Group: "fraud", Concurrency: 4, MaxDeliver: 4,
			Backoff: []time.Duration{time.Millisecond, 5 * time.Millisecond}, DeadLetterTopic: "dead.orders"}, 1},
		{"dead-letters", func(_ context.Context, m *pubsub.Message) error {
			id, _ := strconv.Atoi(m.Header("order-id"))
			t.add("dead", id)
			return nil
		}, pubsub.SubscribeConfig{}, 1},
	}
	for _, rt := range routes {
		pattern := "orders.placed"
		if rt.name == "dead-letters" {
			pattern = "dead.>"
		}
		for i := range rt.n {
			if err := r.Handle(fmt.Sprintf("%s-%d", rt.name, i+1), pattern, rt.h, rt.cfg); err != nil {
				return err
			}
		}
	}
	rctx, stopRouter := context.WithCancel(ctx)
	defer stopRouter()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(rctx) }()
	select {
	case <-r.Ready():
	case err := <-ran:
		return err
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, *publishers)
	for p := range *publishers {
		wg.Go(func() {
			for i := range *orders {
				o := Order{ID: p**orders + i, Customer: fmt.Sprintf("c%d", i%17), Total: 10 + i%90}
				m, err := pubsub.Marshal(nil, o)
				if err != nil {
					errs <- err
					return
				}
				m.Key = o.Customer
				m.Headers["order-id"] = strconv.Itoa(o.ID)
				if err := b.Publish(ctx, "orders.placed", m); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	published := time.Since(start)

	// Wait until every group has settled every order.
	settled := func() bool {
		st := r.Stats()
		for _, g := range []string{"billing-1", "shipping-1", "fraud-1"} {
			s := st[g]
			if s.Acked+s.DeadLettered+s.Terminated != uint64(total) {
				return false
			}
		}
		return st["dead-letters-1"].Acked == st["fraud-1"].DeadLettered
	}
	deadline := time.After(30 * time.Second)
	for !settled() {
		select {
		case <-deadline:
			return fmt.Errorf("orders not settled in time: %+v", r.Stats())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	stats := r.Stats()
	stopRouter()
	if err := <-ran; err != nil {
		return fmt.Errorf("router shutdown: %w", err)
	}

	fmt.Fprintf(w, "%d publishers sent %d orders in %v (shipping's queue of 64 pushed back)\n",
		*publishers, total, published.Round(time.Millisecond))
	fmt.Fprintf(w, "%-10s %9s %6s %11s %13s %7s\n", "group", "delivered", "acked", "redelivered", "dead-lettered", "dropped")
	for _, g := range []string{"billing", "shipping", "fraud"} {
		s := stats[g+"-1"]
		fmt.Fprintf(w, "%-10s %9d %6d %11d %13d %7d\n", g, s.Delivered, s.Acked, s.Redelivered, s.DeadLettered, s.Dropped)
	}
	return check(w, t, total, stats["fraud-1"].DeadLettered)
}

// check verifies that billing and shipping handled every order exactly
// once and that every order was either handled by fraud or dead-lettered.
func check(w io.Writer, t *tally, total int, deadLettered uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range []string{"billing", "shipping"} {
		for id := range total {
			if n := t.seen[g][id]; n != 1 {
				return fmt.Errorf("%s handled order %d %d times", g, id, n)
			}
		}
	}
	for id := range total {
		f, d := t.seen["fraud"][id], t.seen["dead"][id]
		if f+d != 1 {
			return fmt.Errorf("order %d: fraud handled it %d times, dead-lettered %d times", id, f, d)
		}
	}
	if uint64(len(t.seen["dead"])) != deadLettered {
		return fmt.Errorf("dead-letter topic received %d orders, stats say %d", len(t.seen["dead"]), deadLettered)
	}
	fmt.Fprintf(w, "ok: every order billed and shipped once; %d fraud-checked, %d in dead.orders\n",
		len(t.seen["fraud"]), len(t.seen["dead"]))
	return nil
}
