package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/pubsub"
)

func Example() {
	ctx := context.Background()
	b, _ := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	defer b.Close()

	done := make(chan struct{})
	_, err := b.Subscribe(ctx, "orders.*", func(ctx context.Context, m *pubsub.Message) error {
		fmt.Printf("%s: %s (attempt %d)\n", m.Topic, m.Payload, m.Attempt)
		if string(m.Payload) == "o-2" {
			close(done)
		}
		return nil
	}, pubsub.SubscribeConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, id := range []string{"o-1", "o-2"} {
		if err := b.Publish(ctx, "orders.created", pubsub.NewMessage([]byte(id))); err != nil {
			fmt.Println(err)
		}
	}
	<-done

	err = b.Publish(ctx, "orders.*", pubsub.NewMessage(nil))
	fmt.Println(errors.Is(err, pubsub.ErrInvalidTopic))
	// Output:
	// orders.created: o-1 (attempt 1)
	// orders.created: o-2 (attempt 1)
	// true
}

func Example_deadLetter() {
	ctx := context.Background()
	b, _ := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	defer b.Close()

	dead := make(chan *pubsub.Message)
	b.Subscribe(ctx, "dead.payments", func(_ context.Context, m *pubsub.Message) error {
		dead <- m
		return nil
	}, pubsub.SubscribeConfig{})
	b.Subscribe(ctx, "payments", func(_ context.Context, m *pubsub.Message) error {
		fmt.Println("attempt", m.Attempt)
		return errors.New("card service unavailable") // retryable
	}, pubsub.SubscribeConfig{
		MaxDeliver:      3,
		Backoff:         []time.Duration{time.Millisecond},
		DeadLetterTopic: "dead.payments",
	})

	b.Publish(ctx, "payments", pubsub.NewMessage([]byte("pay o-1")))
	m := <-dead
	fmt.Println(string(m.Payload), "->", m.Header(pubsub.HeaderDeadLetterReason), "after",
		m.Header(pubsub.HeaderDeadLetterAttempts), "attempts:", m.Header(pubsub.HeaderDeadLetterError))
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// pay o-1 -> max-deliver after 3 attempts: card service unavailable
}

type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func ExampleRouter() {
	b, _ := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	defer b.Close()
	r, _ := pubsub.NewRouter(b, pubsub.RouterConfig{})
	r.Use(pubsub.Recover(), pubsub.Correlation())

	done := make(chan struct{})
	r.Handle("billing", "orders.placed", pubsub.Typed(nil,
		func(ctx context.Context, o OrderPlaced, m *pubsub.Message) error {
			fmt.Printf("%s bills %s for %d (correlation %s)\n",
				pubsub.HandlerName(ctx), o.ID, o.Total, pubsub.CorrelationID(ctx))
			close(done)
			return nil
		}), pubsub.SubscribeConfig{Group: "billing"})

	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- r.Run(ctx) }()
	<-r.Ready()

	m, _ := pubsub.Marshal(nil, OrderPlaced{ID: "o-7", Total: 42})
	m.Key = "o-7"
	b.Publish(pubsub.ContextWithCorrelationID(context.Background(), "checkout-1"), "orders.placed", m)
	<-done
	stop()
	fmt.Println("shutdown:", <-ran)
	// Output:
	// billing bills o-7 for 42 (correlation checkout-1)
	// shutdown: <nil>
}

func ExampleMemoryBroker_Shutdown() {
	ctx := context.Background()
	b, _ := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
	b.Subscribe(ctx, "jobs", func(ctx context.Context, m *pubsub.Message) error {
		<-ctx.Done() // a handler that never finishes in time
		return ctx.Err()
	}, pubsub.SubscribeConfig{})
	for i := range 3 {
		b.Publish(ctx, "jobs", &pubsub.Message{ID: fmt.Sprint("job-", i)})
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	err := b.Shutdown(sctx)
	var ue *pubsub.UndeliveredError
	if errors.As(err, &ue) {
		for _, u := range ue.Messages {
			fmt.Println("not delivered:", u.Message.ID)
		}
	}
	// Output:
	// not delivered: job-0
	// not delivered: job-1
	// not delivered: job-2
}
