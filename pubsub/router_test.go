package pubsub_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/pubsub"
)

// runRouter starts r.Run in the background and waits until it is ready.
func runRouter(t *testing.T, r *pubsub.Router) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return func() error { cancel(); return <-done }
}

func TestRouterMiddlewareOrderAndHandlerName(t *testing.T) {
	b := newBroker(t, pubsub.MemoryConfig{})
	r, err := pubsub.NewRouter(b, pubsub.RouterConfig{})
	require.NoError(t, err)
	var mu sync.Mutex
	var trace []string
	mw := func(name string) pubsub.Middleware {
		return func(next pubsub.Handler) pubsub.Handler {
			return func(ctx context.Context, m *pubsub.Message) error {
				mu.Lock()
				trace = append(trace, name+":"+pubsub.HandlerName(ctx))
				mu.Unlock()
				return next(ctx, m)
			}
		}
	}
	require.NoError(t, r.Use(mw("global1"), mw("global2")))
	done := make(chan struct{})
	require.NoError(t, r.Handle("orders", "orders.*", func(ctx context.Context, m *pubsub.Message) error {
		close(done)
		return nil
	}, pubsub.SubscribeConfig{}, mw("local")))
	stop := runRouter(t, r)
	require.NoError(t, b.Publish(t.Context(), "orders.created", pubsub.NewMessage(nil)))
	<-done
	require.NoError(t, stop())
	require.Equal(t, []string{"global1:orders", "global2:orders", "local:orders"}, trace)
	require.ErrorIs(t, r.Run(t.Context()), pubsub.ErrRouterRunning)
	require.ErrorIs(t, r.Handle("x", "x", nop, pubsub.SubscribeConfig{}), pubsub.ErrRouterRunning)
	require.ErrorIs(t, r.Use(mw("late")), pubsub.ErrRouterRunning)
}

func TestRouterRejectsBadHandlers(t *testing.T) {
	b := newBroker(t, pubsub.MemoryConfig{})
	r, err := pubsub.NewRouter(b, pubsub.RouterConfig{})
	require.NoError(t, err)
	require.ErrorIs(t, r.Handle("a", "a.>", nil, pubsub.SubscribeConfig{}), pubsub.ErrNilHandler)
	require.ErrorIs(t, r.Handle("a", "a..b", nop, pubsub.SubscribeConfig{}), pubsub.ErrInvalidTopic)
	require.ErrorIs(t, r.Handle("", "a", nop, pubsub.SubscribeConfig{}), pubsub.ErrInvalidConfig)
	require.ErrorIs(t, r.Handle("a", "a", nop, pubsub.SubscribeConfig{}, nil), pubsub.ErrInvalidConfig)
	require.NoError(t, r.Handle("a", "a", nop, pubsub.SubscribeConfig{}))
	require.ErrorIs(t, r.Handle("a", "b", nop, pubsub.SubscribeConfig{}), pubsub.ErrInvalidConfig)
	_, err = pubsub.NewRouter(nil, pubsub.RouterConfig{})
	require.ErrorIs(t, err, pubsub.ErrInvalidConfig)
	_, err = pubsub.NewRouter(b, pubsub.RouterConfig{ShutdownTimeout: -1})
	require.ErrorIs(t, err, pubsub.ErrInvalidConfig)
}

func TestRouterSubscribeFailureClosesTheOthers(t *testing.T) {
	b := newBroker(t, pubsub.MemoryConfig{})
	r, err := pubsub.NewRouter(b, pubsub.RouterConfig{})
	require.NoError(t, err)
	require.NoError(t, r.Handle("ok", "a", nop, pubsub.SubscribeConfig{}))
	require.NoError(t, r.Handle("bad", "b", nop, pubsub.SubscribeConfig{QueueSize: -1}))
	err = r.Run(t.Context())
	require.ErrorIs(t, err, pubsub.ErrInvalidConfig)
	require.Contains(t, err.Error(), `"bad"`)
	require.Equal(t, 0, b.Stats().Subscriptions, "the handlers already subscribed were closed")
}

func TestRouterGracefulShutdownReportsUndelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{})
		r, err := pubsub.NewRouter(b, pubsub.RouterConfig{ShutdownTimeout: time.Second})
		require.NoError(t, err)
		var handled atomic.Int64
		var cancelled atomic.Int64
		require.NoError(t, r.Handle("slow", "work", func(ctx context.Context, _ *pubsub.Message) error {
			select {
			case <-time.After(300 * time.Millisecond):
				handled.Add(1)
				return nil
			case <-ctx.Done():
				cancelled.Add(1)
				return ctx.Err()
			}
		}, pubsub.SubscribeConfig{}))
		stop := runRouter(t, r)
		const n = 10
		for range n {
			require.NoError(t, b.Publish(t.Context(), "work", pubsub.NewMessage(nil)))
		}
		time.Sleep(time.Second) // 3 handled, the 4th in flight
		err = stop()
		var ue *pubsub.UndeliveredError
		require.ErrorAs(t, err, &ue)
		require.EqualValues(t, 0, cancelled.Load(), "handlers in flight finish with live contexts")
		require.EqualValues(t, n, handled.Load()+int64(len(ue.Messages)))
		require.EqualValues(t, 4, handled.Load())
	})
}

func TestRouterStats(t *testing.T) {
	b := newBroker(t, pubsub.MemoryConfig{})
	r, err := pubsub.NewRouter(b, pubsub.RouterConfig{})
	require.NoError(t, err)
	done := make(chan struct{}, 2)
	require.NoError(t, r.Handle("h", "s", func(context.Context, *pubsub.Message) error { done <- struct{}{}; return nil }, pubsub.SubscribeConfig{}))
	stop := runRouter(t, r)
	defer stop()
	require.NoError(t, b.Publish(t.Context(), "s", pubsub.NewMessage(nil), pubsub.NewMessage(nil)))
	<-done
	<-done
	require.Eventually(t, func() bool { return r.Stats()["h"].Acked == 2 }, 5*time.Second, time.Millisecond)
}

func TestRecoverTurnsPanicsIntoDeadLetters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, pubsub.MemoryConfig{})
		dead := make(chan *pubsub.Message, 1)
		_, err := b.Subscribe(t.Context(), "dead", func(_ context.Context, m *pubsub.Message) error { dead <- m; return nil }, pubsub.SubscribeConfig{})
		require.NoError(t, err)
		h := pubsub.Recover()(func(context.Context, *pubsub.Message) error { panic("boom") })
		_, err = b.Subscribe(t.Context(), "work", h, pubsub.SubscribeConfig{MaxDeliver: 2, Backoff: []time.Duration{time.Second}, DeadLetterTopic: "dead"})
		require.NoError(t, err)
		require.NoError(t, b.Publish(t.Context(), "work", pubsub.NewMessage(nil)))
		m := <-dead
		require.Contains(t, m.Header(pubsub.HeaderDeadLetterError), "panicked: boom")
		require.Equal(t, "2", m.Header(pubsub.HeaderDeadLetterAttempts))

		err = h(t.Context(), pubsub.NewMessage(nil))
		var pe *pubsub.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "boom", pe.Value)
		require.Contains(t, string(pe.Stack), "router_test.go")
	})
}

func TestTimeoutCancelsTheHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := pubsub.Timeout(time.Second)(func(ctx context.Context, _ *pubsub.Message) error {
			<-ctx.Done()
			return ctx.Err()
		})
		start := time.Now()
		require.ErrorIs(t, h(t.Context(), pubsub.NewMessage(nil)), context.DeadlineExceeded)
		require.Equal(t, time.Second, time.Since(start))
	})
}

func TestRetryBacksOffAndStopsOnPermanent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls []time.Duration
		start := time.Now()
		fail := errors.New("flaky")
		h := pubsub.Retry(pubsub.RetryConfig{MaxAttempts: 4, InitialInterval: 100 * time.Millisecond, MaxInterval: 300 * time.Millisecond})(
			func(context.Context, *pubsub.Message) error {
				calls = append(calls, time.Since(start))
				return fail
			})
		require.ErrorIs(t, h(t.Context(), pubsub.NewMessage(nil)), fail)
		require.Equal(t, []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond}, calls)

		n := 0
		perm := pubsub.Retry(pubsub.RetryConfig{})(func(context.Context, *pubsub.Message) error {
			n++
			return pubsub.Permanent(fail)
		})
		require.ErrorIs(t, perm(t.Context(), pubsub.NewMessage(nil)), pubsub.ErrPermanent)
		require.Equal(t, 1, n, "permanent errors are not retried")

		ok := 0
		succeed := pubsub.Retry(pubsub.RetryConfig{})(func(context.Context, *pubsub.Message) error {
			if ok++; ok < 2 {
				return fail
			}
			return nil
		})
		require.NoError(t, succeed(t.Context(), pubsub.NewMessage(nil)))
	})
}

func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
		defer cancel()
		n := 0
		h := pubsub.Retry(pubsub.RetryConfig{MaxAttempts: 10})(func(context.Context, *pubsub.Message) error { n++; return errors.New("x") })
		require.Error(t, h(ctx, pubsub.NewMessage(nil)))
		require.Equal(t, 2, n) // at 0 and 100ms; the 300ms retry is cut off
	})
}

func TestCorrelationStartsAChain(t *testing.T) {
	b := newBroker(t, pubsub.MemoryConfig{})
	got := make(chan *pubsub.Message, 1)
	_, err := b.Subscribe(t.Context(), "next", func(_ context.Context, m *pubsub.Message) error { got <- m; return nil }, pubsub.SubscribeConfig{})
	require.NoError(t, err)
	h := pubsub.Correlation()(func(ctx context.Context, m *pubsub.Message) error {
		return b.Publish(ctx, "next", pubsub.NewMessage(nil))
	})
	_, err = b.Subscribe(t.Context(), "first", h, pubsub.SubscribeConfig{})
	require.NoError(t, err)
	first := pubsub.NewMessage(nil)
	require.NoError(t, b.Publish(t.Context(), "first", first))
	m := <-got
	require.Equal(t, first.ID, m.Header(pubsub.HeaderCorrelationID))
	require.Equal(t, first.ID, m.Header(pubsub.HeaderCausationID))
}

func TestDedupMiddlewareMakesHandlersIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &pubsub.MemoryDedupStore{}
		var runs atomic.Int64
		fail := atomic.Bool{}
		h := pubsub.Dedup(store, pubsub.DedupConfig{TTL: time.Hour, Lease: time.Minute})(func(context.Context, *pubsub.Message) error {
			runs.Add(1)
			if fail.Load() {
				return errors.New("failed")
			}
			return nil
		})
		m := pubsub.NewMessage(nil)
		ctx := t.Context()
		require.NoError(t, h(ctx, m))
		require.NoError(t, h(ctx, m), "a redelivery of a processed message is acknowledged")
		require.EqualValues(t, 1, runs.Load(), "and not processed again")

		// A failure releases the claim, so the redelivery runs.
		m2 := pubsub.NewMessage(nil)
		fail.Store(true)
		require.Error(t, h(ctx, m2))
		fail.Store(false)
		require.NoError(t, h(ctx, m2))
		require.EqualValues(t, 3, runs.Load())

		// A live claim makes a concurrent duplicate wait for redelivery.
		m3 := pubsub.NewMessage(nil)
		res, err := store.Claim(ctx, "/"+m3.ID, time.Minute)
		require.NoError(t, err)
		require.Equal(t, pubsub.Claimed, res)
		require.ErrorIs(t, h(ctx, m3), pubsub.ErrInProgress)
		time.Sleep(time.Minute) // the holder died; its lease ran out
		require.NoError(t, h(ctx, m3))
		require.EqualValues(t, 4, runs.Load())

		// Done keys are forgotten after the TTL.
		time.Sleep(time.Hour)
		require.NoError(t, h(ctx, m))
		require.EqualValues(t, 5, runs.Load())
	})
}

func TestMemoryDedupStoreMaxKeys(t *testing.T) {
	s := &pubsub.MemoryDedupStore{MaxKeys: 10}
	ctx := t.Context()
	for i := range 100 {
		k := strings.Repeat("k", i+1)
		_, _ = s.Claim(ctx, k, time.Minute)
		require.NoError(t, s.Complete(ctx, k, time.Hour))
	}
	require.LessOrEqual(t, s.Len(), 11)
}

type fakeBreaker struct {
	mu      sync.Mutex
	open    bool
	results []error
}

func (b *fakeBreaker) Allow() (func(error), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open {
		return nil, errors.New("breaker open")
	}
	return func(err error) {
		b.mu.Lock()
		b.results = append(b.results, err)
		b.mu.Unlock()
	}, nil
}

func TestCircuitBreakerMiddleware(t *testing.T) {
	br := &fakeBreaker{}
	down := errors.New("downstream down")
	var next error
	calls := 0
	h := pubsub.CircuitBreaker(br)(func(context.Context, *pubsub.Message) error {
		calls++
		if next == errPanic {
			panic("boom")
		}
		return next
	})
	ctx := t.Context()
	require.NoError(t, h(ctx, pubsub.NewMessage(nil)))
	next = down
	require.ErrorIs(t, h(ctx, pubsub.NewMessage(nil)), down)
	next = pubsub.Permanent(errors.New("bad message"))
	require.ErrorIs(t, h(ctx, pubsub.NewMessage(nil)), pubsub.ErrPermanent)
	next = errPanic
	require.Panics(t, func() { _ = h(ctx, pubsub.NewMessage(nil)) })
	require.Len(t, br.results, 4)
	require.NoError(t, br.results[0])
	require.ErrorIs(t, br.results[1], down)
	require.NoError(t, br.results[2], "a permanent error is the message's fault, not the downstream's")
	require.Error(t, br.results[3], "a panic counts as a failure")

	br.open = true
	calls = 0
	err := h(ctx, pubsub.NewMessage(nil))
	require.ErrorContains(t, err, "breaker open")
	require.NotErrorIs(t, err, pubsub.ErrPermanent, "refused messages are redelivered")
	require.Equal(t, 0, calls)
}

var errPanic = errors.New("panic")
