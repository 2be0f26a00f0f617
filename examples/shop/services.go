package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/circuitbreaker"
	"github.com/distkit/distkit/saga"
)

// checkoutInput is the saga's input.
type checkoutInput struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
	Card     string `json:"card"`
}

// stockService is the inventory service's checkout side: it reserves and
// releases stock, each idempotency key once.
type stockService struct {
	barrier            saga.MemoryBarrier
	mu                 sync.Mutex
	held               map[string]bool // order -> reserved
	reserved, released atomic.Int64
}

func (s *stockService) reserve(ctx context.Context, c *saga.Call, in checkoutInput) ([]byte, error) {
	return s.barrier.Action(ctx, c.Key(), func(context.Context) ([]byte, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.held[in.Order] = true
		s.reserved.Add(1)
		return []byte("rsv-" + in.Order), nil
	})
}

func (s *stockService) release(ctx context.Context, c *saga.Call, in checkoutInput) error {
	_, err := s.barrier.Compensate(ctx, c.Key(), func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.held, in.Order)
		s.released.Add(1)
		return nil
	})
	return err
}

// shippingService ships an order once per idempotency key. onShip runs
// after a shipment took effect, before the coordinator has logged it.
type shippingService struct {
	barrier  saga.MemoryBarrier
	shipped  atomic.Int64
	repeated atomic.Int64
	onShip   func(order string)
}

func (s *shippingService) ship(ctx context.Context, c *saga.Call, in checkoutInput) ([]byte, error) {
	fresh := false
	out, err := s.barrier.Action(ctx, c.Key(), func(context.Context) ([]byte, error) {
		s.shipped.Add(1)
		fresh = true
		return []byte("parcel-" + in.Order), nil
	})
	if err == nil && !fresh {
		s.repeated.Add(1)
	}
	if err == nil && fresh && s.onShip != nil {
		s.onShip(in.Order)
	}
	return out, err
}

// paymentServer is the flaky payment provider, served over HTTP on
// loopback. It declines some cards, fails with 503 during an outage, and
// answers a repeated Idempotency-Key with its first answer.
type paymentServer struct {
	outage atomic.Bool

	mu                                                  sync.Mutex
	answers                                             map[string]payAnswer // idempotency key -> first answer
	next                                                int
	requests, unavailable, authorized, declined, voided int
}

type payAnswer struct {
	status int
	body   string
}

func (p *paymentServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if p.outage.Load() {
		p.unavailable++
		http.Error(w, "payment provider unavailable", http.StatusServiceUnavailable)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if a, ok := p.answers[key]; ok && key != "" {
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
		return
	}
	var in checkoutInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var a payAnswer
	switch {
	case r.URL.Path == "/void":
		p.voided++
		a = payAnswer{http.StatusOK, `{"voided":true}`}
	case in.Card == "declined":
		p.declined++
		a = payAnswer{http.StatusPaymentRequired, `{"error":"card declined"}`}
	default:
		p.next++
		p.authorized++
		a = payAnswer{http.StatusOK, fmt.Sprintf(`{"auth":"auth-%d"}`, p.next)}
	}
	p.answers[key] = a
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

// startPayments serves the payment provider on a loopback port until the
// returned stop is called.
func startPayments() (*paymentServer, string, func(), error) {
	p := &paymentServer{answers: map[string]payAnswer{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	return p, "http://" + l.Addr().String(), func() { srv.Close(); <-done }, nil
}

// breakerLog records the payment client's breaker transitions.
type breakerLog struct {
	say func(format string, a ...any)
	mu  sync.Mutex
	to  []circuitbreaker.State
	ch  chan struct{} // receives a value on every transition
}

func (b *breakerLog) ObserveAttempt(ambassador.AttemptEvent) {}
func (b *breakerLog) ObserveRequest(ambassador.RequestEvent) {}
func (b *breakerLog) ObserveBreaker(e ambassador.BreakerEvent) {
	b.mu.Lock()
	b.to = append(b.to, e.To)
	b.mu.Unlock()
	b.say("payments: circuit breaker %s -> %s (%s)", e.From, e.To, e.Reason)
	select {
	case b.ch <- struct{}{}:
	default:
	}
}

func (b *breakerLog) transitions() []circuitbreaker.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]circuitbreaker.State(nil), b.to...)
}

// paymentClient calls the provider through the ambassador client:
// retries, a retry budget and a circuit breaker, none of them in this
// code.
type paymentClient struct {
	base             string
	http             *http.Client
	calls, fastFails atomic.Int64
}

func newPaymentClient(base string, metrics ambassador.Metrics) (*paymentClient, error) {
	c, err := ambassador.NewClient(ambassador.Config{
		Name:  "payments",
		Retry: ambassador.RetryConfig{MaxAttempts: 3, BaseDelay: 5 * time.Millisecond},
		Breaker: ambassador.BreakerConfig{Group: circuitbreaker.GroupConfig{Breaker: circuitbreaker.Config{
			ConsecutiveFailures: 5, OpenTimeout: 100 * time.Millisecond,
		}}},
		Metrics: metrics,
	})
	if err != nil {
		return nil, err
	}
	return &paymentClient{base: base, http: c}, nil
}

// post sends in to path with the saga step's idempotency key, and returns
// the body of a 200 answer. A 402 is a business failure ([saga.Fail]);
// anything else (a 503 after the retries, an open breaker) leaves the
// outcome unknown, and the saga retries the step with the same key.
func (p *paymentClient) post(ctx context.Context, path string, key saga.Key, in checkoutInput) ([]byte, error) {
	p.calls.Add(1)
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ambassador.WithCorrelationID(ctx, in.Order), http.MethodPost, p.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Idempotency-Key", key.String())
	resp, err := p.http.Do(req)
	if err != nil {
		if errors.Is(err, circuitbreaker.ErrOpen) {
			p.fastFails.Add(1)
		}
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return out, nil
	case http.StatusPaymentRequired:
		return nil, saga.Fail(fmt.Errorf("payment declined: %s", bytes.TrimSpace(out)))
	}
	return nil, fmt.Errorf("payment provider answered %s", resp.Status)
}

var errCrashed = errors.New("coordinator process crashed")

// crashable is the saga log as one coordinator process sees it: durable
// underneath, unreachable once that process has crashed.
type crashable struct {
	saga.Store
	down atomic.Bool
}

func (c *crashable) Append(ctx context.Context, id string, expected uint64, recs ...saga.Record) (uint64, error) {
	if c.down.Load() {
		return 0, errCrashed
	}
	return c.Store.Append(ctx, id, expected, recs...)
}

// checkoutDefinition is the checkout saga: reserve stock and authorise
// the payment in parallel, then ship.
func checkoutDefinition(stock *stockService, pay *paymentClient, ship *shippingService) (*saga.Definition, error) {
	input := func(c *saga.Call) (checkoutInput, error) {
		var in checkoutInput
		return in, json.Unmarshal(c.Input, &in)
	}
	// The payment step rides out an outage: many attempts, short backoff.
	payPolicy := saga.Policy{Timeout: 5 * time.Second, MaxAttempts: 100,
		Backoff: saga.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}}
	return saga.NewDefinition("checkout",
		saga.Step{Name: "reserve-stock",
			Action: func(ctx context.Context, c *saga.Call) ([]byte, error) {
				in, err := input(c)
				if err != nil {
					return nil, saga.Fail(err)
				}
				return stock.reserve(ctx, c, in)
			},
			Compensate: func(ctx context.Context, c *saga.Call) error {
				in, err := input(c)
				if err != nil {
					return saga.Fail(err)
				}
				return stock.release(ctx, c, in)
			}},
		saga.Step{Name: "authorise-payment", Policy: payPolicy,
			Action: func(ctx context.Context, c *saga.Call) ([]byte, error) {
				in, err := input(c)
				if err != nil {
					return nil, saga.Fail(err)
				}
				return pay.post(ctx, "/authorize", c.Key(), in)
			},
			Compensate: func(ctx context.Context, c *saga.Call) error {
				in, err := input(c)
				if err != nil {
					return saga.Fail(err)
				}
				_, err = pay.post(ctx, "/void", c.Key(), in)
				return err
			}},
		saga.Step{Name: "ship", DependsOn: []string{"reserve-stock", "authorise-payment"},
			Action: func(ctx context.Context, c *saga.Call) ([]byte, error) {
				in, err := input(c)
				if err != nil {
					return nil, saga.Fail(err)
				}
				return ship.ship(ctx, c, in)
			}},
	)
}

// coordinators hands out the live saga coordinator; a crash swaps it for
// a new one that resumes what the old one left.
type coordinators struct {
	mu       sync.RWMutex
	cur      *saga.Coordinator
	store    *crashable
	replaced chan struct{} // closed once a new coordinator has taken over
}

// checkout runs order's saga to its end, across a coordinator crash.
func (c *coordinators) checkout(ctx context.Context, id string, input []byte) (saga.Status, error) {
	c.mu.RLock()
	st, err := c.cur.Execute(ctx, "checkout", id, input)
	c.mu.RUnlock()
	if !errors.Is(err, errCrashed) {
		return st, err
	}
	// The coordinator died under this saga. Once a new one has taken over
	// it has resumed every saga the log shows unfinished.
	select {
	case <-c.replaced:
	case <-ctx.Done():
		return st, ctx.Err()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, err = c.cur.Status(ctx, id)
	switch {
	case errors.Is(err, saga.ErrNotFound): // it never reached the log
		return c.cur.Execute(ctx, "checkout", id, input)
	case err != nil:
		return st, err
	case st.State == saga.Completed:
		return st, nil
	case st.State == saga.Compensated:
		return st, fmt.Errorf("%w: %s", saga.ErrCompensated, st.Cause)
	}
	return st, fmt.Errorf("saga %s is %s after recovery", id, st.State)
}
