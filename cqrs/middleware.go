package cqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/pubsub"
)

// Logging returns middleware that logs every command with its name,
// outcome, duration, token and event count, and the correlation ID when
// one is in the context ([Correlation] puts one there). Handled commands
// are logged at Info, refused and failed ones at Warn. A nil logger
// discards.
func Logging(l *slog.Logger) Middleware {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return func(next CommandFunc) CommandFunc {
		return func(ctx context.Context, cmd any) (Result, error) {
			level := slog.LevelInfo
			if !l.Enabled(ctx, level) && !l.Enabled(ctx, slog.LevelWarn) {
				return next(ctx, cmd)
			}
			start := time.Now()
			res, err := next(ctx, cmd)
			if err != nil {
				level = slog.LevelWarn
			}
			if !l.Enabled(ctx, level) {
				return res, err
			}
			attrs := []slog.Attr{
				slog.String("command", CommandName(cmd)),
				slog.Duration("duration", time.Since(start)),
			}
			if md, ok := eventsource.MetadataFrom(ctx); ok && md.CorrelationID != "" {
				attrs = append(attrs, slog.String("correlation_id", md.CorrelationID))
			}
			if err != nil {
				attrs = append(attrs, slog.Any("err", err))
				l.LogAttrs(ctx, slog.LevelWarn, "cqrs: command failed", attrs...)
				return res, err
			}
			attrs = append(attrs, slog.Uint64("token", uint64(res.Token)), slog.Int("events", len(res.Events)))
			l.LogAttrs(ctx, slog.LevelInfo, "cqrs: command handled", attrs...)
			return res, nil
		}
	}
}

// Correlation returns middleware that gives every command a correlation
// ID and a command ID, so the events it causes can be traced back to it.
// The correlation ID is taken from the context ([eventsource.WithMetadata]
// or [pubsub.ContextWithCorrelationID], in that order) or, when there is
// none, is a new ID; the command ID is always new. Both go into the
// handler's context as [eventsource.Metadata] (correlation ID, and the
// command ID as causation ID), which [eventsource.Repository.Execute]
// stamps on the events it stores, and the correlation ID also as pubsub's,
// so messages the handler publishes carry it.
func Correlation() Middleware {
	return func(next CommandFunc) CommandFunc {
		return func(ctx context.Context, cmd any) (Result, error) {
			md, _ := eventsource.MetadataFrom(ctx)
			if md.CorrelationID == "" {
				md.CorrelationID = pubsub.CorrelationID(ctx)
			}
			if md.CorrelationID == "" {
				md.CorrelationID = eventsource.NewID()
			}
			md.CausationID = eventsource.NewID()
			ctx = eventsource.WithMetadata(ctx, md)
			if pubsub.CorrelationID(ctx) != md.CorrelationID {
				ctx = pubsub.ContextWithCorrelationID(ctx, md.CorrelationID)
			}
			return next(ctx, cmd)
		}
	}
}

// Timeout returns middleware that bounds each command's handling to d:
// the handler's context ends after d. d <= 0 means no bound.
func Timeout(d time.Duration) Middleware {
	return func(next CommandFunc) CommandFunc {
		if d <= 0 {
			return next
		}
		return func(ctx context.Context, cmd any) (Result, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, cmd)
		}
	}
}

// Authorize returns middleware that asks allow whether the command may
// run, before validation and the handler. When allow returns an error the
// command is refused with an error wrapping both [ErrUnauthorized] and
// allow's error. allow typically reads the caller's identity from ctx.
// A nil allow refuses every command.
func Authorize(allow func(ctx context.Context, cmd any) error) Middleware {
	return func(next CommandFunc) CommandFunc {
		return func(ctx context.Context, cmd any) (Result, error) {
			if allow == nil {
				return Result{}, fmt.Errorf("%w: command %s: no authorization check configured", ErrUnauthorized, CommandName(cmd))
			}
			if err := allow(ctx, cmd); err != nil {
				return Result{}, fmt.Errorf("%w: command %s: %w", ErrUnauthorized, CommandName(cmd), err)
			}
			return next(ctx, cmd)
		}
	}
}

// RetryConfig configures [RetryConflicts]. The zero value is valid;
// negative values mean the defaults too.
type RetryConfig struct {
	// MaxAttempts is the most times the handler runs, the first included.
	// 0 means 4.
	MaxAttempts int
	// InitialBackoff bounds the wait before the second attempt; each later
	// wait's bound doubles, up to MaxBackoff. Each wait is drawn uniformly
	// from [0, bound) ("full jitter"), so writers that collided spread
	// out. 0 means 5ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the bound. 0 means 500ms.
	MaxBackoff time.Duration
	// Retryable says which errors are worth another attempt. nil means
	// concurrency conflicts only (errors.Is(err,
	// eventsource.ErrConcurrencyConflict)).
	Retryable func(error) bool
}

// RetryConflicts returns middleware that runs the handler again when it
// fails with a concurrency conflict (another writer changed the aggregate
// between the handler's load and its append), after a jittered
// exponential backoff, up to MaxAttempts times. Since the handler reloads
// the aggregate on each attempt, the command is decided again on fresh
// state; a business rule that now fails returns its error, unretried.
//
// It suits handlers that write several aggregates or do work besides one
// [eventsource.Repository.Execute] (whose ConflictRetries retries only
// the append, without backoff). When ctx ends during a wait it returns the
// last error joined with ctx.Err(). Put it inside [Timeout], so the
// timeout bounds all attempts together.
func RetryConflicts(cfg RetryConfig) Middleware {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 5 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	if cfg.Retryable == nil {
		cfg.Retryable = func(err error) bool { return errors.Is(err, eventsource.ErrConcurrencyConflict) }
	}
	return func(next CommandFunc) CommandFunc {
		return func(ctx context.Context, cmd any) (Result, error) {
			bound := cfg.InitialBackoff
			for attempt := 1; ; attempt++ {
				res, err := next(ctx, cmd)
				if err == nil || attempt >= cfg.MaxAttempts || !cfg.Retryable(err) {
					return res, err
				}
				t := time.NewTimer(rand.N(bound) + 1)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return res, errors.Join(err, fmt.Errorf("cqrs: command %s: retry abandoned: %w", CommandName(cmd), ctx.Err()))
				}
				bound = min(2*bound, cfg.MaxBackoff)
			}
		}
	}
}
