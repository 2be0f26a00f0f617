package cqrs

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/distkit/distkit/eventsource"
)

// Token is a consistency token: the global position in the event log of
// the last event a command stored. A query that carries it
// ([AskAfter]) is answered only by a read model that has applied at
// least that much of the log, so the caller reads its own write. The zero
// Token asks for nothing: any state will do.
//
// Tokens from one store compare as positions: of two tokens the greater
// covers both writes, so a client that issues several commands keeps the
// max. A Token travels between processes as text ([Token.String],
// [ParseToken]), in a header or a cookie.
type Token uint64

// String returns the token in decimal.
func (t Token) String() string { return strconv.FormatUint(uint64(t), 10) }

// ParseToken parses the text form of a token. The empty string is the
// zero Token (no consistency asked for). Anything other than a decimal
// number returns an error wrapping [ErrInvalidToken].
func ParseToken(s string) (Token, error) {
	if s == "" {
		return 0, nil
	}
	if s[0] == '+' || s[0] == '-' { // ParseUint accepts neither, but say why
		return 0, fmt.Errorf("%w: %q is signed", ErrInvalidToken, s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a decimal position", ErrInvalidToken, s)
	}
	return Token(n), nil
}

// Result is what a command handler reports: where its write landed.
type Result struct {
	// Token is the global position of the last event the command stored,
	// the token a query can wait for; 0 when it stored none.
	Token Token
	// Version is the version of the aggregate's stream after the command,
	// when the handler wrote to one aggregate; 0 otherwise.
	Version uint64
	// Events are the events stored, with their positions. It may be nil
	// for a handler that reports only its Token.
	Events []eventsource.Event
}

// ResultOf converts what [eventsource.Repository.Execute] returns into a
// [Result].
func ResultOf[S eventsource.Aggregate](res eventsource.Result[S]) Result {
	return Result{Token: Token(res.Position), Version: res.Version, Events: res.Events}
}

// CommandHandler handles commands of type C: it checks business rules
// against the current state, stores the events that follow, and reports
// where they landed. A handler may run again after a concurrency conflict
// (see [RetryConflicts]), so it must load state afresh on every call.
type CommandHandler[C any] func(ctx context.Context, cmd C) (Result, error)

// CommandFunc is the untyped form of a command handler that [Middleware]
// wraps: cmd is the command as dispatched, of its registered type.
type CommandFunc func(ctx context.Context, cmd any) (Result, error)

// Middleware wraps command handling: logging, correlation, timeouts,
// retries, authorization. It runs after the command was routed and
// before it is validated, so it sees every routed command, valid or not.
type Middleware func(next CommandFunc) CommandFunc

// Validator is implemented by commands that can check themselves. The
// bus calls Validate before the handler and refuses the command with a
// [*ValidationError] when it returns an error. Validate should check the
// command's own fields only; rules that need state belong in the handler.
type Validator interface {
	Validate() error
}

// CommandBusConfig configures a [CommandBus]. The zero value is valid.
type CommandBusConfig struct {
	// Validate, when set, runs for every command after the command's own
	// Validate method (see [Validator]) and before the handler: the place
	// to plug in a validation library. An error refuses the command with
	// a [*ValidationError].
	Validate func(ctx context.Context, cmd any) error

	// MaxInFlight bounds how many commands are handled at once; further
	// dispatches wait (bounded by their context) for a slot. It gives the
	// command side a budget of its own, so a burst of writes cannot starve
	// the query side of the same process. 0 means no bound; negative is
	// invalid.
	MaxInFlight int
}

// CommandBus routes each command, by its Go type, to the one handler
// registered for that type, after running it through the bus's
// [Middleware] and validation.
//
// Registration ([HandleCommand], [CommandBus.Use]) usually happens at
// start-up, but may happen at any time; dispatching takes no lock. A
// CommandBus is safe for concurrent use and owns no goroutines.
type CommandBus struct {
	cfg    CommandBusConfig
	sem    *semaphore.Weighted
	mu     sync.Mutex                                 // serialises registration
	mws    []Middleware                               // guarded by mu
	routes atomic.Pointer[map[reflect.Type]*cmdRoute] // copy on write, under mu
}

type cmdRoute struct {
	name string
	call CommandFunc // validation and the typed handler
	run  CommandFunc // call wrapped in the middleware
}

// NewCommandBus returns a command bus with no handlers. It returns an
// error wrapping [ErrInvalidConfig] for a negative MaxInFlight.
func NewCommandBus(cfg CommandBusConfig) (*CommandBus, error) {
	if cfg.MaxInFlight < 0 {
		return nil, fmt.Errorf("%w: CommandBusConfig.MaxInFlight is negative", ErrInvalidConfig)
	}
	b := &CommandBus{cfg: cfg}
	if cfg.MaxInFlight > 0 {
		b.sem = semaphore.NewWeighted(int64(cfg.MaxInFlight))
	}
	b.routes.Store(&map[reflect.Type]*cmdRoute{})
	return b, nil
}

var validatorType = reflect.TypeFor[Validator]()

// HandleCommand registers h as the handler of commands of type C (a
// pointer type and its element type are different commands). It returns
// an error wrapping [ErrDuplicateHandler] when C already has a handler,
// and one wrapping [ErrInvalidConfig] for a nil bus or handler or an
// interface type C (commands are routed by their dynamic type, which is
// never an interface).
func HandleCommand[C any](b *CommandBus, h CommandHandler[C]) error {
	t := reflect.TypeFor[C]()
	switch {
	case b == nil:
		return fmt.Errorf("%w: nil command bus", ErrInvalidConfig)
	case h == nil:
		return fmt.Errorf("%w: nil handler for command %s", ErrInvalidConfig, t)
	case t.Kind() == reflect.Interface:
		return fmt.Errorf("%w: command type %s is an interface", ErrInvalidConfig, t)
	}
	name := t.String()
	selfCheck := t.Implements(validatorType)
	check := b.cfg.Validate
	call := func(ctx context.Context, cmd any) (Result, error) {
		c := cmd.(C) // routed by type: cannot fail
		if selfCheck {
			if err := cmd.(Validator).Validate(); err != nil {
				return Result{}, &ValidationError{Command: name, Err: err}
			}
		}
		if check != nil {
			if err := check(ctx, cmd); err != nil {
				return Result{}, &ValidationError{Command: name, Err: err}
			}
		}
		return h(ctx, c)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.routes.Load()
	if _, dup := old[t]; dup {
		return fmt.Errorf("%w: command %s", ErrDuplicateHandler, name)
	}
	routes := make(map[reflect.Type]*cmdRoute, len(old)+1)
	for k, r := range old {
		routes[k] = r
	}
	routes[t] = &cmdRoute{name: name, call: call, run: wrap(b.mws, call)}
	b.routes.Store(&routes)
	return nil
}

// Use appends middleware to the bus, for every handler registered before
// or after. The first middleware given to the first call is the
// outermost: it sees the command first and the result last. Nil entries
// are ignored.
func (b *CommandBus) Use(mw ...Middleware) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range mw {
		if m != nil {
			b.mws = append(b.mws, m)
		}
	}
	old := *b.routes.Load()
	routes := make(map[reflect.Type]*cmdRoute, len(old))
	for k, r := range old {
		routes[k] = &cmdRoute{name: r.name, call: r.call, run: wrap(b.mws, r.call)}
	}
	b.routes.Store(&routes)
}

func wrap(mws []Middleware, h CommandFunc) CommandFunc {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Dispatch routes cmd to the handler registered for its dynamic type and
// returns the handler's [Result]. It blocks while the handler runs, on
// the caller's goroutine.
//
// It returns an error wrapping [ErrInvalidCommand] for a nil command, one
// wrapping [ErrNoHandler] for an unregistered type, a [*ValidationError]
// for a command that fails validation, an error wrapping ctx.Err() when
// ctx ends while waiting for a slot ([CommandBusConfig.MaxInFlight]), and
// otherwise what the middleware and the handler return. In every error
// case but the last, no handler ran.
//
// A panic in the handler or middleware is not recovered: it propagates to
// the caller as it would from a direct call.
func (b *CommandBus) Dispatch(ctx context.Context, cmd any) (Result, error) {
	t := reflect.TypeOf(cmd)
	if t == nil {
		return Result{}, fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	r := (*b.routes.Load())[t]
	if r == nil {
		return Result{}, fmt.Errorf("%w: command %s", ErrNoHandler, t)
	}
	if b.sem != nil {
		if err := b.sem.Acquire(ctx, 1); err != nil {
			return Result{}, fmt.Errorf("cqrs: command %s: waiting for a slot: %w", r.name, err)
		}
		defer b.sem.Release(1)
	}
	return r.run(ctx, cmd)
}

// CommandName returns the name the bus uses for a command in errors and
// logs: its Go type, such as "orders.PlaceOrder" or "*orders.Cancel".
func CommandName(cmd any) string {
	t := reflect.TypeOf(cmd)
	if t == nil {
		return "<nil>"
	}
	return t.String()
}

// OnAggregate returns a command handler that runs commands of type C
// against one aggregate of repo: it loads the aggregate that id names,
// calls decide with the command and the current state, appends the events
// decide returns (nothing when it returns none or an error), and reports
// the [Result] with the stored events' position as the Token. decide must
// not modify the state; it may run more than once (the repository's own
// conflict retries, and [RetryConflicts]).
func OnAggregate[C any, S eventsource.Aggregate](repo *eventsource.Repository[S], id func(C) string,
	decide func(ctx context.Context, cmd C, state S) ([]any, error)) CommandHandler[C] {
	return func(ctx context.Context, cmd C) (Result, error) {
		if repo == nil || id == nil || decide == nil {
			return Result{}, fmt.Errorf("%w: OnAggregate with a nil repository, id or decide function", ErrInvalidConfig)
		}
		res, err := repo.Execute(ctx, id(cmd), func(s S) ([]any, error) { return decide(ctx, cmd, s) })
		if err != nil {
			return Result{}, err
		}
		return ResultOf(res), nil
	}
}
