package cqrs

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/distkit/distkit/eventsource"
)

// DefaultMaxWait is how long a query with a token waits for its read
// model by default ([QueryBusConfig.MaxWait]).
const DefaultMaxWait = 5 * time.Second

// QueryBusConfig configures a [QueryBus]. The zero value is valid.
type QueryBusConfig struct {
	// MaxWait bounds how long a query with a consistency token waits for
	// its read model to catch up, within the caller's context, before it
	// fails with [ErrNotConsistent]. A read model that is seconds behind
	// is broken or overloaded; failing lets the caller retry, or read
	// without the token and show stale data knowingly. 0 means
	// [DefaultMaxWait]; negative means no bound but the context's.
	MaxWait time.Duration

	// MaxInFlight bounds how many queries run at once; further queries wait
	// (bounded by their context) for a slot. It gives the query side a
	// budget of its own, apart from the command side. 0 means no bound;
	// negative is invalid.
	MaxInFlight int
}

// QueryBus routes each query, by its Go type, to the one handler
// registered for it, which reads one [ReadModel]. Callers get typed
// results from [Ask] and [AskAfter], without type assertions.
//
// A QueryBus is safe for concurrent use and owns no goroutines. A process
// may hold several (one per read-model replica, for example).
type QueryBus struct {
	cfg    QueryBusConfig
	sem    *semaphore.Weighted
	mu     sync.Mutex
	routes atomic.Pointer[map[reflect.Type]*queryRoute]
}

type queryRoute struct {
	name   string // the query type
	result reflect.Type
	model  string
	call   any // func(context.Context, Token, Q) (R, error)
}

// NewQueryBus returns a query bus with no handlers. It returns an error
// wrapping [ErrInvalidConfig] for a negative MaxInFlight.
func NewQueryBus(cfg QueryBusConfig) (*QueryBus, error) {
	if cfg.MaxInFlight < 0 {
		return nil, fmt.Errorf("%w: QueryBusConfig.MaxInFlight is negative", ErrInvalidConfig)
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	b := &QueryBus{cfg: cfg}
	if cfg.MaxInFlight > 0 {
		b.sem = semaphore.NewWeighted(int64(cfg.MaxInFlight))
	}
	b.routes.Store(&map[reflect.Type]*queryRoute{})
	return b, nil
}

// HandleQuery registers h as the handler of queries of type Q, answering
// with an R read from rm. The bus calls h with the read model's serving
// copy, after waiting for the query's token, if it has one. h must only
// read.
//
// It returns an error wrapping [ErrDuplicateHandler] when Q already has a
// handler, and one wrapping [ErrInvalidConfig] for a nil bus, read model
// or handler.
func HandleQuery[Q, R any, P eventsource.Projection](b *QueryBus, rm *ReadModel[P], h func(ctx context.Context, view P, q Q) (R, error)) error {
	qt := reflect.TypeFor[Q]()
	switch {
	case b == nil:
		return fmt.Errorf("%w: nil query bus", ErrInvalidConfig)
	case rm == nil:
		return fmt.Errorf("%w: nil read model for query %s", ErrInvalidConfig, qt)
	case h == nil:
		return fmt.Errorf("%w: nil handler for query %s", ErrInvalidConfig, qt)
	}
	maxWait := b.cfg.MaxWait
	call := func(ctx context.Context, tok Token, q Q) (R, error) {
		if uint64(tok) > rm.cp.Load() { // the slow path: wait
			wctx := ctx
			if maxWait > 0 {
				var cancel context.CancelFunc
				wctx, cancel = context.WithTimeout(ctx, maxWait)
				defer cancel()
			}
			if err := rm.WaitFor(wctx, tok); err != nil {
				var zero R
				return zero, err
			}
		}
		return h(ctx, rm.Current(), q)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.routes.Load()
	if r, dup := old[qt]; dup {
		return fmt.Errorf("%w: query %s (answered from read model %q)", ErrDuplicateHandler, qt, r.model)
	}
	routes := make(map[reflect.Type]*queryRoute, len(old)+1)
	for k, r := range old {
		routes[k] = r
	}
	routes[qt] = &queryRoute{name: qt.String(), result: reflect.TypeFor[R](), model: rm.Name(), call: call}
	b.routes.Store(&routes)
	return nil
}

// Ask answers query q from the current state of its read model, however
// far behind the log it is: an eventually consistent read. Name the
// result type and let Go infer the query's: cqrs.Ask[[]Order](ctx, bus,
// q).
//
// It returns an error wrapping [ErrNoHandler] when no handler answers
// queries of type Q with an R, an error wrapping ctx.Err() when ctx ends
// while waiting for a slot ([QueryBusConfig.MaxInFlight]), and otherwise
// what the handler returns.
func Ask[R, Q any](ctx context.Context, b *QueryBus, q Q) (R, error) {
	return AskAfter[R](ctx, b, 0, q)
}

// AskAfter answers query q from a read model that has applied the log at
// least up to tok, the [Result.Token] of the caller's last command: a
// read of the caller's own writes. When the read model is behind, it
// waits, for at most [QueryBusConfig.MaxWait] and as long as ctx allows,
// and then fails with a [*NotConsistentError] (errors.Is
// [ErrNotConsistent]). A token past the end of the log fails at once with
// an error wrapping [ErrInvalidToken]. A zero tok is [Ask].
//
// Other errors are as for [Ask].
func AskAfter[R, Q any](ctx context.Context, b *QueryBus, tok Token, q Q) (R, error) {
	var zero R
	qt := reflect.TypeFor[Q]()
	r := (*b.routes.Load())[qt]
	if r == nil {
		return zero, fmt.Errorf("%w: query %s", ErrNoHandler, qt)
	}
	call, ok := r.call.(func(context.Context, Token, Q) (R, error))
	if !ok {
		return zero, fmt.Errorf("%w: query %s answers %s, not %s", ErrNoHandler, qt, r.result, reflect.TypeFor[R]())
	}
	if b.sem != nil {
		if err := b.sem.Acquire(ctx, 1); err != nil {
			return zero, fmt.Errorf("cqrs: query %s: waiting for a slot: %w", r.name, err)
		}
		defer b.sem.Release(1)
	}
	return call(ctx, tok, q)
}
