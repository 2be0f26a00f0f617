package cqrs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/pubsub"
)

type Ping struct{ N int }
type Pong struct{}

func newBus(t *testing.T, cfg cqrs.CommandBusConfig) *cqrs.CommandBus {
	t.Helper()
	b, err := cqrs.NewCommandBus(cfg)
	require.NoError(t, err)
	return b
}

func TestCommandBusRouting(t *testing.T) {
	ctx := context.Background()
	b := newBus(t, cqrs.CommandBusConfig{})
	var got []string
	require.NoError(t, cqrs.HandleCommand(b, func(_ context.Context, c Ping) (cqrs.Result, error) {
		got = append(got, fmt.Sprintf("ping %d", c.N))
		return cqrs.Result{Token: cqrs.Token(c.N)}, nil
	}))
	require.NoError(t, cqrs.HandleCommand(b, func(_ context.Context, c *Ping) (cqrs.Result, error) {
		got = append(got, fmt.Sprintf("*ping %d", c.N))
		return cqrs.Result{}, nil
	}))

	t.Run("by dynamic type", func(t *testing.T) {
		got = nil
		res, err := b.Dispatch(ctx, Ping{N: 7})
		require.NoError(t, err)
		assert.Equal(t, cqrs.Token(7), res.Token)
		_, err = b.Dispatch(ctx, &Ping{N: 8})
		require.NoError(t, err)
		assert.Equal(t, []string{"ping 7", "*ping 8"}, got)
	})
	t.Run("unregistered", func(t *testing.T) {
		_, err := b.Dispatch(ctx, Pong{})
		require.ErrorIs(t, err, cqrs.ErrNoHandler)
		assert.Contains(t, err.Error(), "cqrs_test.Pong")
	})
	t.Run("nil", func(t *testing.T) {
		_, err := b.Dispatch(ctx, nil)
		require.ErrorIs(t, err, cqrs.ErrInvalidCommand)
	})
	t.Run("second handler refused, first kept", func(t *testing.T) {
		got = nil
		err := cqrs.HandleCommand(b, func(context.Context, Ping) (cqrs.Result, error) { return cqrs.Result{}, nil })
		require.ErrorIs(t, err, cqrs.ErrDuplicateHandler)
		_, err = b.Dispatch(ctx, Ping{N: 1})
		require.NoError(t, err)
		assert.Equal(t, []string{"ping 1"}, got)
	})
	t.Run("bad registrations", func(t *testing.T) {
		require.ErrorIs(t, cqrs.HandleCommand[Pong](b, nil), cqrs.ErrInvalidConfig)
		require.ErrorIs(t, cqrs.HandleCommand(nil, func(context.Context, Pong) (cqrs.Result, error) { return cqrs.Result{}, nil }), cqrs.ErrInvalidConfig)
		require.ErrorIs(t, cqrs.HandleCommand(b, func(context.Context, fmt.Stringer) (cqrs.Result, error) { return cqrs.Result{}, nil }), cqrs.ErrInvalidConfig)
		_, err := cqrs.NewCommandBus(cqrs.CommandBusConfig{MaxInFlight: -1})
		require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
	})
}

func TestCommandValidation(t *testing.T) {
	ctx := context.Background()
	errBanned := errors.New("banned counter")
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
	b := newBus(t, cqrs.CommandBusConfig{Validate: func(_ context.Context, cmd any) error {
		if c, ok := cmd.(Add); ok && c.Counter == "banned" {
			return errBanned
		}
		return nil
	}})
	require.NoError(t, cqrs.HandleCommand(b, cqrs.OnAggregate(f.repo, func(c Add) string { return c.Counter }, decideAdd)))

	for _, tc := range []struct {
		name string
		cmd  Add
		want error
	}{
		{"own Validate: empty counter", Add{N: 1}, errNoCounter},
		{"own Validate: bad n", Add{Counter: "a", N: -1}, errNotPositive},
		{"config Validate", Add{Counter: "banned", N: 1}, errBanned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Dispatch(ctx, tc.cmd)
			require.ErrorIs(t, err, cqrs.ErrInvalidCommand)
			require.ErrorIs(t, err, tc.want)
			var ve *cqrs.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, "cqrs_test.Add", ve.Command)
		})
	}
	head, err := f.store.Head(ctx)
	require.NoError(t, err)
	assert.Zero(t, head, "a refused command stored events")

	t.Run("business rule in the handler", func(t *testing.T) {
		_, err := b.Dispatch(ctx, Add{Counter: "a", N: 1001})
		require.ErrorIs(t, err, errTooBig)
	})
	t.Run("valid command stores and reports its position", func(t *testing.T) {
		res, err := b.Dispatch(ctx, Add{Counter: "a", N: 5})
		require.NoError(t, err)
		head, _ := f.store.Head(ctx)
		assert.Equal(t, cqrs.Token(head), res.Token)
		assert.Equal(t, uint64(1), res.Version)
		require.Len(t, res.Events, 1)
		assert.Equal(t, head, res.Events[0].Position)
	})
}

func TestMiddlewareOrder(t *testing.T) {
	ctx := context.Background()
	b := newBus(t, cqrs.CommandBusConfig{})
	var trace []string
	tag := func(name string) cqrs.Middleware {
		return func(next cqrs.CommandFunc) cqrs.CommandFunc {
			return func(ctx context.Context, cmd any) (cqrs.Result, error) {
				trace = append(trace, name+">")
				res, err := next(ctx, cmd)
				trace = append(trace, "<"+name)
				return res, err
			}
		}
	}
	b.Use(tag("a"), nil)
	require.NoError(t, cqrs.HandleCommand(b, func(context.Context, Ping) (cqrs.Result, error) {
		trace = append(trace, "h")
		return cqrs.Result{}, nil
	}))
	b.Use(tag("b")) // after registration: applies too
	_, err := b.Dispatch(ctx, Ping{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a>", "b>", "h", "<b", "<a"}, trace)

	// Middleware sees invalid commands too; validation runs inside it.
	trace = nil
	require.NoError(t, cqrs.HandleCommand(b, func(context.Context, Add) (cqrs.Result, error) {
		trace = append(trace, "h")
		return cqrs.Result{}, nil
	}))
	_, err = b.Dispatch(ctx, Add{})
	require.ErrorIs(t, err, cqrs.ErrInvalidCommand)
	assert.Equal(t, []string{"a>", "b>", "<b", "<a"}, trace)
}

func TestAuthorize(t *testing.T) {
	ctx := context.Background()
	type userKey struct{}
	errNotAdmin := errors.New("not an admin")
	b := newBus(t, cqrs.CommandBusConfig{})
	b.Use(cqrs.Authorize(func(ctx context.Context, _ any) error {
		if ctx.Value(userKey{}) != "admin" {
			return errNotAdmin
		}
		return nil
	}))
	ran := 0
	require.NoError(t, cqrs.HandleCommand(b, func(context.Context, Ping) (cqrs.Result, error) {
		ran++
		return cqrs.Result{}, nil
	}))
	_, err := b.Dispatch(ctx, Ping{})
	require.ErrorIs(t, err, cqrs.ErrUnauthorized)
	require.ErrorIs(t, err, errNotAdmin)
	assert.Zero(t, ran)
	_, err = b.Dispatch(context.WithValue(ctx, userKey{}, "admin"), Ping{})
	require.NoError(t, err)
	assert.Equal(t, 1, ran)

	nilCheck := newBus(t, cqrs.CommandBusConfig{})
	nilCheck.Use(cqrs.Authorize(nil))
	require.NoError(t, cqrs.HandleCommand(nilCheck, func(context.Context, Ping) (cqrs.Result, error) { return cqrs.Result{}, nil }))
	_, err = nilCheck.Dispatch(ctx, Ping{})
	require.ErrorIs(t, err, cqrs.ErrUnauthorized)
}

func TestCorrelation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
	f.cmds.Use(cqrs.Correlation())

	t.Run("new IDs", func(t *testing.T) {
		r1 := f.add(t, ctx, "a", 1)
		r2 := f.add(t, ctx, "a", 1)
		md1, md2 := r1.Events[0].Metadata, r2.Events[0].Metadata
		assert.NotEmpty(t, md1.CorrelationID)
		assert.NotEmpty(t, md1.CausationID)
		assert.NotEqual(t, md1.CorrelationID, md2.CorrelationID)
		assert.NotEqual(t, md1.CausationID, md2.CausationID)
	})
	t.Run("from eventsource metadata", func(t *testing.T) {
		res := f.add(t, eventsource.WithMetadata(ctx, eventsource.Metadata{CorrelationID: "order-9"}), "a", 1)
		assert.Equal(t, "order-9", res.Events[0].Metadata.CorrelationID)
	})
	t.Run("from pubsub context, and passed on to it", func(t *testing.T) {
		b := newBus(t, cqrs.CommandBusConfig{})
		b.Use(cqrs.Correlation())
		var seen string
		require.NoError(t, cqrs.HandleCommand(b, func(ctx context.Context, _ Ping) (cqrs.Result, error) {
			seen = pubsub.CorrelationID(ctx)
			return cqrs.Result{}, nil
		}))
		_, err := b.Dispatch(pubsub.ContextWithCorrelationID(ctx, "saga-3"), Ping{})
		require.NoError(t, err)
		assert.Equal(t, "saga-3", seen)
		_, err = b.Dispatch(ctx, Ping{})
		require.NoError(t, err)
		assert.NotEmpty(t, seen)
		assert.NotEqual(t, "saga-3", seen)
	})
}

func TestLogging(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
	f.cmds.Use(cqrs.Correlation(), cqrs.Logging(l))
	f.add(t, context.Background(), "a", 1)
	_, err := f.cmds.Dispatch(context.Background(), Add{})
	require.Error(t, err)
	out := buf.String()
	assert.Contains(t, out, `level=INFO msg="cqrs: command handled" command=cqrs_test.Add`)
	assert.Contains(t, out, "token=1 events=1")
	assert.Contains(t, out, `level=WARN msg="cqrs: command failed" command=cqrs_test.Add`)
	assert.Contains(t, out, "correlation_id=")

	// A nil logger discards.
	b := newBus(t, cqrs.CommandBusConfig{})
	b.Use(cqrs.Logging(nil))
	require.NoError(t, cqrs.HandleCommand(b, func(context.Context, Ping) (cqrs.Result, error) { return cqrs.Result{}, nil }))
	_, err = b.Dispatch(context.Background(), Ping{})
	require.NoError(t, err)
}

func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus(t, cqrs.CommandBusConfig{})
		b.Use(cqrs.Timeout(time.Second), cqrs.Timeout(0))
		require.NoError(t, cqrs.HandleCommand(b, func(ctx context.Context, p Ping) (cqrs.Result, error) {
			select {
			case <-ctx.Done():
				return cqrs.Result{}, ctx.Err()
			case <-time.After(time.Duration(p.N) * time.Millisecond):
				return cqrs.Result{Token: 1}, nil
			}
		}))
		start := time.Now()
		_, err := b.Dispatch(context.Background(), Ping{N: 5000})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start))
		res, err := b.Dispatch(context.Background(), Ping{N: 10})
		require.NoError(t, err)
		assert.Equal(t, cqrs.Token(1), res.Token)
	})
}

func conflict() error {
	return &eventsource.ConcurrencyError{StreamID: "s", Expected: eventsource.Exact(1), Actual: 2}
}

func TestRetryConflicts(t *testing.T) {
	errOther := errors.New("other")
	for _, tc := range []struct {
		name      string
		cfg       cqrs.RetryConfig
		fails     []error // the handler's results, in order; then success
		wantCalls int
		wantErr   error
	}{
		{"success first time", cqrs.RetryConfig{}, nil, 1, nil},
		{"two conflicts then success", cqrs.RetryConfig{}, []error{conflict(), conflict()}, 3, nil},
		{"other errors not retried", cqrs.RetryConfig{}, []error{errOther}, 1, errOther},
		{"attempts run out", cqrs.RetryConfig{MaxAttempts: 3}, []error{conflict(), conflict(), conflict(), conflict()}, 3, eventsource.ErrConcurrencyConflict},
		{"custom retryable", cqrs.RetryConfig{Retryable: func(err error) bool { return errors.Is(err, errOther) }}, []error{errOther, conflict()}, 2, eventsource.ErrConcurrencyConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBus(t, cqrs.CommandBusConfig{})
				b.Use(cqrs.RetryConflicts(tc.cfg))
				calls := 0
				var at []time.Duration
				start := time.Now()
				require.NoError(t, cqrs.HandleCommand(b, func(context.Context, Ping) (cqrs.Result, error) {
					at = append(at, time.Since(start))
					calls++
					if calls <= len(tc.fails) {
						return cqrs.Result{}, tc.fails[calls-1]
					}
					return cqrs.Result{Token: 9}, nil
				}))
				res, err := b.Dispatch(context.Background(), Ping{})
				assert.Equal(t, tc.wantCalls, calls)
				if tc.wantErr != nil {
					require.ErrorIs(t, err, tc.wantErr)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, cqrs.Token(9), res.Token)
				// Full jitter within a doubling bound: 5ms, then 10ms.
				for i := 1; i < len(at); i++ {
					gap := at[i] - at[i-1]
					assert.Greater(t, gap, time.Duration(0))
					assert.LessOrEqual(t, gap, 5*time.Millisecond<<(i-1))
				}
			})
		})
	}
	t.Run("context ends during backoff", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBus(t, cqrs.CommandBusConfig{})
			b.Use(cqrs.RetryConflicts(cqrs.RetryConfig{MaxAttempts: 100, InitialBackoff: time.Hour, MaxBackoff: time.Hour}))
			calls := 0
			require.NoError(t, cqrs.HandleCommand(b, func(context.Context, Ping) (cqrs.Result, error) {
				calls++
				return cqrs.Result{}, conflict()
			}))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := b.Dispatch(ctx, Ping{})
			require.ErrorIs(t, err, eventsource.ErrConcurrencyConflict)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.LessOrEqual(t, calls, 2)
		})
	})
}

// TestRetryConflictsRealWriters races writers on one aggregate through a
// bus with RetryConflicts and no repository retries: every command ends
// up stored exactly once.
func TestRetryConflictsRealWriters(t *testing.T) {
	f := newFixture(t, cqrs.ReadModelConfig[*cqrs.Table[int]]{})
	f.cmds.Use(cqrs.RetryConflicts(cqrs.RetryConfig{MaxAttempts: 1000, InitialBackoff: time.Microsecond, MaxBackoff: 50 * time.Microsecond}))
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				f.add(t, context.Background(), "hot", 1)
			}
		})
	}
	wg.Wait()
	c, v, err := f.repo.Load(context.Background(), "hot")
	require.NoError(t, err)
	assert.Equal(t, writers*each, c.Total)
	assert.Equal(t, uint64(writers*each), v)
}

func TestMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus(t, cqrs.CommandBusConfig{MaxInFlight: 2})
		release := make(chan struct{})
		var running, peak atomic.Int32
		require.NoError(t, cqrs.HandleCommand(b, func(context.Context, Ping) (cqrs.Result, error) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release
			running.Add(-1)
			return cqrs.Result{}, nil
		}))
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				_, err := b.Dispatch(context.Background(), Ping{})
				assert.NoError(t, err)
			})
		}
		synctest.Wait()
		assert.Equal(t, int32(2), running.Load())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := b.Dispatch(ctx, Ping{})
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		close(release)
		wg.Wait()
		assert.Equal(t, int32(2), peak.Load())
	})
}

func TestToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want cqrs.Token
		ok   bool
	}{
		{"", 0, true},
		{"0", 0, true},
		{"42", 42, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"18446744073709551616", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1e3", 0, false},
		{" 1", 0, false},
		{"abc", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := cqrs.ParseToken(tc.in)
			if !tc.ok {
				require.ErrorIs(t, err, cqrs.ErrInvalidToken)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			if tc.in != "" {
				assert.Equal(t, tc.in, got.String())
			}
		})
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"", "0", "7", "-1", "+3", "18446744073709551616", "00012", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := cqrs.ParseToken(s)
		if err != nil {
			if !errors.Is(err, cqrs.ErrInvalidToken) {
				t.Fatalf("ParseToken(%q): error %v does not wrap ErrInvalidToken", s, err)
			}
			return
		}
		back, err := cqrs.ParseToken(tok.String())
		if err != nil || back != tok {
			t.Fatalf("round trip of %q: %v, %v", s, back, err)
		}
		if s != "" && strings.TrimLeft(s, "0") != strings.TrimLeft(tok.String(), "0") {
			t.Fatalf("ParseToken(%q) = %v", s, tok)
		}
	})
}
