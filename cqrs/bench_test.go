package cqrs_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/distkit/distkit/cqrs"
)

// A command of a realistic size (bigger than a pointer, so boxing it in
// an interface allocates unless the compiler can avoid it).
type Rename struct {
	ID, Name string
	N        int
}

type ValidRename Rename

func (r ValidRename) Validate() error {
	if r.ID == "" {
		return errNoCounter
	}
	return nil
}

var sink cqrs.Result

// BenchmarkDispatch compares the bus's overhead with a direct call of the
// same handler.
func BenchmarkDispatch(b *testing.B) {
	ctx := context.Background()
	var handler cqrs.CommandHandler[Rename] = func(_ context.Context, c Rename) (cqrs.Result, error) {
		return cqrs.Result{Token: cqrs.Token(c.N)}, nil
	}
	validHandler := func(_ context.Context, c ValidRename) (cqrs.Result, error) {
		return cqrs.Result{Token: cqrs.Token(c.N)}, nil
	}
	plain, _ := cqrs.NewCommandBus(cqrs.CommandBusConfig{})
	_ = cqrs.HandleCommand(plain, handler)
	_ = cqrs.HandleCommand(plain, validHandler)
	for i := range 30 { // a bus with more than a couple of routes
		_ = cqrs.HandleCommand(plain, func(context.Context, [1]int) (cqrs.Result, error) { return cqrs.Result{}, nil })
		_ = i
	}
	mw, _ := cqrs.NewCommandBus(cqrs.CommandBusConfig{})
	mw.Use(cqrs.Correlation(), cqrs.Logging(slog.New(slog.DiscardHandler)), cqrs.RetryConflicts(cqrs.RetryConfig{}), cqrs.Timeout(time.Minute))
	_ = cqrs.HandleCommand(mw, handler)
	limited, _ := cqrs.NewCommandBus(cqrs.CommandBusConfig{MaxInFlight: 64})
	_ = cqrs.HandleCommand(limited, handler)
	cmd := Rename{ID: "42", Name: "x", N: 1}

	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			sink, _ = handler(ctx, cmd)
		}
	})
	b.Run("bus", func(b *testing.B) {
		for b.Loop() {
			sink, _ = plain.Dispatch(ctx, cmd)
		}
	})
	b.Run("bus/pointer-command", func(b *testing.B) {
		bus, _ := cqrs.NewCommandBus(cqrs.CommandBusConfig{})
		_ = cqrs.HandleCommand(bus, func(_ context.Context, c *Rename) (cqrs.Result, error) {
			return cqrs.Result{Token: cqrs.Token(c.N)}, nil
		})
		p := &cmd
		for b.Loop() {
			sink, _ = bus.Dispatch(ctx, p)
		}
	})
	b.Run("bus/validated", func(b *testing.B) {
		v := ValidRename(cmd)
		for b.Loop() {
			sink, _ = plain.Dispatch(ctx, v)
		}
	})
	b.Run("bus/max-in-flight", func(b *testing.B) {
		for b.Loop() {
			sink, _ = limited.Dispatch(ctx, cmd)
		}
	})
	b.Run("bus/4-middleware", func(b *testing.B) {
		for b.Loop() {
			sink, _ = mw.Dispatch(ctx, cmd)
		}
	})
	b.Run("direct/parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = handler(ctx, cmd)
			}
		})
	})
	b.Run("bus/parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = plain.Dispatch(ctx, cmd)
			}
		})
	})
}

var totalSink Total

// BenchmarkAsk compares a query through the bus with a direct read of
// the same read model.
func BenchmarkAsk(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, cqrsTableConfig())
	res := f.add(b, ctx, "a", 1)
	if err := f.totals.Apply(ctx, res.Events, uint64(res.Token)); err != nil {
		b.Fatal(err)
	}
	q := TotalOf{Counter: "a"}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			totalSink, _ = readTotal(ctx, f.totals.Current(), q)
		}
	})
	b.Run("bus", func(b *testing.B) {
		for b.Loop() {
			totalSink, _ = cqrs.Ask[Total](ctx, f.queries, q)
		}
	})
	b.Run("bus/token-reached", func(b *testing.B) {
		for b.Loop() {
			totalSink, _ = cqrs.AskAfter[Total](ctx, f.queries, res.Token, q)
		}
	})
}

func cqrsTableConfig() cqrs.ReadModelConfig[*cqrs.Table[int]] {
	return cqrs.ReadModelConfig[*cqrs.Table[int]]{}
}

// BenchmarkEndToEnd measures a command through the bus to the memory
// store (write-only), and the same command followed by a query that
// carries its token, so it returns once the read model, fed by its own
// goroutine, has applied the event: write -> event -> read model update
// -> read. The difference is the read model's update latency.
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("write-only", func(b *testing.B) {
		ctx := context.Background()
		f := newFixture(b, cqrsTableConfig())
		i := 0
		for b.Loop() {
			i++
			sink, _ = f.cmds.Dispatch(ctx, Add{Counter: strconv.Itoa(i), N: 1})
		}
	})
	b.Run("read-your-write", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := newFixture(b, cqrsTableConfig())
		go func() { _ = f.totals.Run(ctx) }()
		i := 0
		for b.Loop() {
			i++
			id := strconv.Itoa(i)
			res, err := f.cmds.Dispatch(ctx, Add{Counter: id, N: 1})
			if err != nil {
				b.Fatal(err)
			}
			if totalSink, err = cqrs.AskAfter[Total](ctx, f.queries, res.Token, TotalOf{Counter: id}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
