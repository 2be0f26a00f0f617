package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// DefaultShutdownTimeout is the graceful shutdown budget of a [Router]
// whose [RouterConfig.ShutdownTimeout] is zero.
const DefaultShutdownTimeout = 30 * time.Second

// RouterConfig configures a [Router]. The zero value is valid.
type RouterConfig struct {
	// ShutdownTimeout bounds the graceful shutdown that starts when Run's
	// context ends: handlers in flight get this long to finish before
	// their contexts are cancelled (0 means [DefaultShutdownTimeout]).
	ShutdownTimeout time.Duration

	// Logger receives a record for every failed delivery (at Warn) with
	// the handler, message ID, topic, attempt and error. Nil discards.
	Logger *slog.Logger
}

// A Router runs many handlers on one [Subscriber], each wrapped in
// middleware, and shuts them all down gracefully together. Register
// handlers with [Router.Handle] and router-wide middleware with
// [Router.Use], then call [Router.Run].
//
// The methods are safe for concurrent use; Handle and Use return
// [ErrRouterRunning] once Run has started.
type Router struct {
	sub   Subscriber
	cfg   RouterConfig
	log   *slog.Logger
	ready chan struct{}

	mu      sync.Mutex
	mw      []Middleware
	routes  []route
	running bool
	subs    map[string]Subscription
}

type route struct {
	name, pattern string
	h             Handler
	cfg           SubscribeConfig
	mw            []Middleware
}

// NewRouter returns a router that subscribes through sub, or a
// [*ConfigError] for an invalid cfg.
func NewRouter(sub Subscriber, cfg RouterConfig) (*Router, error) {
	if sub == nil {
		return nil, &ConfigError{Field: "NewRouter sub", Reason: "nil Subscriber"}
	}
	if cfg.ShutdownTimeout < 0 {
		return nil, &ConfigError{Field: "RouterConfig.ShutdownTimeout", Reason: "negative"}
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Router{sub: sub, cfg: cfg, log: log, ready: make(chan struct{}), subs: make(map[string]Subscription)}, nil
}

// Use adds middleware that wraps every handler, outermost first: after
// Use(a, b), a runs before b, and both before any per-handler middleware.
func (r *Router) Use(mw ...Middleware) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return ErrRouterRunning
	}
	if hasNil(mw) {
		return &ConfigError{Field: "Router.Use", Reason: "nil middleware"}
	}
	r.mw = append(r.mw, mw...)
	return nil
}

// Handle registers h, under a unique name, for the topics matching
// pattern, with its subscription settings and its own middleware (inside
// the router-wide middleware). The handler's context reports name through
// [HandlerName]. It returns [ErrRouterRunning], a [*TopicError],
// [ErrNilHandler] or a [*ConfigError] (empty or duplicate name).
func (r *Router) Handle(name, pattern string, h Handler, cfg SubscribeConfig, mw ...Middleware) error {
	if err := ValidatePattern(pattern); err != nil {
		return err
	}
	if h == nil {
		return ErrNilHandler
	}
	if hasNil(mw) {
		return &ConfigError{Field: "Router.Handle", Reason: "nil middleware"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return ErrRouterRunning
	}
	if name == "" {
		return &ConfigError{Field: "Router.Handle name", Reason: "empty"}
	}
	for _, rt := range r.routes {
		if rt.name == name {
			return &ConfigError{Field: "Router.Handle name", Reason: fmt.Sprintf("duplicate handler %q", name)}
		}
	}
	r.routes = append(r.routes, route{name, pattern, h, cfg, mw})
	return nil
}

// Ready returns a channel that is closed once Run has subscribed every
// handler; messages published after that reach them.
func (r *Router) Ready() <-chan struct{} { return r.ready }

// Stats returns the stats of each running handler's subscription, by
// handler name.
func (r *Router) Stats() map[string]SubscriptionStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]SubscriptionStats, len(r.subs))
	for n, s := range r.subs {
		out[n] = s.Stats()
	}
	return out
}

// Run subscribes every handler and blocks until ctx ends, then shuts the
// subscriptions down in parallel: handlers in flight finish with live
// contexts for up to ShutdownTimeout, and Run returns. Handler contexts
// carry ctx's values but are not cancelled by it.
//
// Run returns nil after a clean shutdown, an [*UndeliveredError] listing
// the messages that were accepted but not completed, the error of a
// Subscribe that failed (after closing the others), or
// [ErrRouterRunning] if Run was called before.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return ErrRouterRunning
	}
	r.running = true
	routes := slices.Clone(r.routes)
	global := slices.Clone(r.mw)
	r.mu.Unlock()

	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var subs []Subscription
	for _, rt := range routes {
		h := r.wrap(rt, global)
		s, err := r.sub.Subscribe(base, rt.pattern, h, rt.cfg)
		if err != nil {
			err = fmt.Errorf("pubsub: router handler %q: %w", rt.name, err)
			return errors.Join(err, r.shutdown(ctx, subs))
		}
		subs = append(subs, s)
		r.mu.Lock()
		r.subs[rt.name] = s
		r.mu.Unlock()
	}
	close(r.ready)
	<-ctx.Done()
	return r.shutdown(ctx, subs)
}

func (r *Router) shutdown(ctx context.Context, subs []Subscription) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() { errs[i] = s.Shutdown(sctx) })
	}
	wg.Wait()
	var lost []Undelivered
	var other []error
	for _, err := range errs {
		if ue, ok := err.(*UndeliveredError); ok {
			lost = append(lost, ue.Messages...)
		} else if err != nil {
			other = append(other, err)
		}
	}
	if len(lost) > 0 {
		other = append(other, &UndeliveredError{Messages: lost})
	}
	return errors.Join(other...)
}

// wrap builds the handler chain of rt: name and logging outermost, then
// the router-wide middleware, then the route's own.
func (r *Router) wrap(rt route, global []Middleware) Handler {
	h := rt.h
	for i := len(rt.mw) - 1; i >= 0; i-- {
		h = rt.mw[i](h)
	}
	for i := len(global) - 1; i >= 0; i-- {
		h = global[i](h)
	}
	inner, name, log := h, rt.name, r.log
	return func(ctx context.Context, m *Message) error {
		err := inner(withHandlerName(ctx, name), m)
		if err != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "pubsub: handler failed",
				slog.String("handler", name), slog.String("id", m.ID), slog.String("topic", m.Topic),
				slog.Int("attempt", m.Attempt), slog.Any("err", err))
		}
		return err
	}
}

func hasNil(mw []Middleware) bool {
	return slices.ContainsFunc(mw, func(m Middleware) bool { return m == nil })
}
