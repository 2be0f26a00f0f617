package ambassador_test

import (
	"context"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		cfg   ambassador.Config
		field string
	}{
		{"negative attempts", ambassador.Config{Retry: ambassador.RetryConfig{MaxAttempts: -1}}, "Retry.MaxAttempts"},
		{"negative delay", ambassador.Config{Retry: ambassador.RetryConfig{BaseDelay: -1}}, "Retry.BaseDelay"},
		{"max below base", ambassador.Config{Retry: ambassador.RetryConfig{BaseDelay: time.Second, MaxDelay: time.Millisecond}}, "Retry.MaxDelay"},
		{"bad status", ambassador.Config{Retry: ambassador.RetryConfig{Statuses: []int{503, 42}}}, "Retry.Statuses[1]"},
		{"bad breaker status", ambassador.Config{Breaker: ambassador.BreakerConfig{FailureStatuses: []int{600}}}, "Breaker.FailureStatuses[0]"},
		{"bad method", ambassador.Config{Retry: ambassador.RetryConfig{Methods: []string{"GET", ""}}}, "Retry.Methods[1]"},
		{"bad header", ambassador.Config{Retry: ambassador.RetryConfig{IdempotencyHeaders: []string{"Bad Header"}}}, "Retry.IdempotencyHeaders[0]"},
		{"bad correlation header", ambassador.Config{CorrelationHeader: "a:b"}, "CorrelationHeader"},
		{"negative body cap", ambassador.Config{Retry: ambassador.RetryConfig{MaxBodyBytes: -1}}, "Retry.MaxBodyBytes"},
		{"negative ratio", ambassador.Config{Budget: ambassador.BudgetConfig{Ratio: -0.1}}, "Budget.Ratio"},
		{"tiny window", ambassador.Config{Budget: ambassador.BudgetConfig{Window: time.Millisecond}}, "Budget.Window"},
		{"negative bulkhead", ambassador.Config{Bulkhead: ambassador.BulkheadConfig{MaxConcurrent: -1}}, "Bulkhead.MaxConcurrent"},
		{"negative hedge", ambassador.Config{Hedge: ambassador.HedgeConfig{Delay: -1}}, "Hedge.Delay"},
		{"negative timeout", ambassador.Config{Timeout: -1}, "Timeout"},
		{"negative attempt timeout", ambassador.Config{AttemptTimeout: -1}, "AttemptTimeout"},
		{"pool with a transport", ambassador.Config{Transport: handlerTransport{}, Pool: ambassador.PoolConfig{MaxIdleConns: 1}}, "Pool"},
		{"negative pool", ambassador.Config{Pool: ambassador.PoolConfig{DialTimeout: -1}}, "Pool.DialTimeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ambassador.New(tc.cfg)
			require.ErrorIs(t, err, ambassador.ErrInvalidConfig)
			var ce *ambassador.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.field, ce.Field)
			assert.Contains(t, err.Error(), tc.field)
		})
	}
	_, err := ambassador.New(ambassador.Config{})
	require.NoError(t, err, "the zero Config is valid")
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true},
		{"Wed, 01 May 2024 12:00:30 GMT", 30 * time.Second, true},
		{"Wednesday, 01-May-24 12:01:00 GMT", time.Minute, true},
		{"Wed May  1 12:00:05 2024", 5 * time.Second, true},
		{"Wed, 01 May 2024 11:00:00 GMT", 0, true},
		{"99999999999999999999", time.Duration(1<<63 - 1), true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	}
	for _, tc := range tests {
		got, ok := ambassador.ParseRetryAfter(tc.in, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "Wed, 01 May 2024 12:00:30 GMT", "1e9", "-5", "9223372036854775807"} {
		f.Add(s)
	}
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ambassador.ParseRetryAfter(s, now)
		if !ok {
			require.Zero(t, d)
			return
		}
		require.GreaterOrEqual(t, d, time.Duration(0), "never a negative wait")
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			require.Equal(t, time.Duration(n)*time.Second, d)
		}
	})
}

var traceParentModel = regexp.MustCompile(`^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$`)

func FuzzValidTraceParent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m := traceParentModel.FindStringSubmatch(s)
		want := m != nil && m[1] != "ff" && m[2] != "00000000000000000000000000000000" && m[3] != "0000000000000000" &&
			(m[1] != "00" || m[5] == "")
		require.Equal(t, want, ambassador.ValidTraceParent(s), "%q", s)
	})
}

func TestBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := ambassador.NewBudget(ambassador.BudgetConfig{Ratio: 0.5, MinPerSecond: 0.1, Window: 10 * time.Second})
		require.NoError(t, err)
		assert.True(t, b.AllowRetry(), "the floor allows one retry with no traffic")
		assert.False(t, b.AllowRetry())
		for range 10 {
			b.Request()
		}
		allowed := 0
		for b.AllowRetry() {
			allowed++
		}
		assert.Equal(t, 5, allowed, "half of 10 requests, the floor already spent")
		req, ret := b.Stats()
		assert.Equal(t, int64(10), req)
		assert.Equal(t, int64(6), ret)

		// Buckets age out one by one.
		time.Sleep(10 * time.Second)
		req, ret = b.Stats()
		assert.Zero(t, req)
		assert.Zero(t, ret)
		assert.True(t, b.AllowRetry())
	})
}

func TestBudgetConcurrentRetriesNeverOverdraw(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := ambassador.NewBudget(ambassador.BudgetConfig{Ratio: 0.2, MinPerSecond: 0.1})
		require.NoError(t, err)
		for range 1000 {
			b.Request()
		}
		var granted atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					if b.AllowRetry() {
						granted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(201), granted.Load())
	})
}

func TestBulkhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := ambassador.NewBulkhead(ambassador.BulkheadConfig{MaxConcurrent: 2, MaxWait: time.Second, MaxHosts: 2})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, b.Acquire(ctx, "a"))
		require.NoError(t, b.Acquire(ctx, "a"))
		assert.Equal(t, 2, b.InFlight("a"))
		start := time.Now()
		require.ErrorIs(t, b.Acquire(ctx, "a"), ambassador.ErrBulkheadFull)
		assert.Equal(t, time.Second, time.Since(start))

		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		require.ErrorIs(t, b.Acquire(cctx, "a"), context.Canceled)

		// Many keys: idle ones are forgotten, busy ones kept.
		for i := range 10 {
			k := strconv.Itoa(i)
			require.NoError(t, b.Acquire(ctx, k))
			b.Release(k)
		}
		assert.Equal(t, 2, b.InFlight("a"), "a busy key is never evicted")
		b.Release("a")
		b.Release("a")
		assert.Zero(t, b.InFlight("a"))
		assert.Panics(t, func() { b.Release("never-acquired") })

		_, err = ambassador.NewBulkhead(ambassador.BulkheadConfig{})
		assert.ErrorIs(t, err, ambassador.ErrInvalidConfig)
	})
}

func TestBulkheadUnderContention(t *testing.T) {
	b, err := ambassador.NewBulkhead(ambassador.BulkheadConfig{MaxConcurrent: 3, MaxWait: time.Minute, MaxHosts: 1})
	require.NoError(t, err)
	var inside, peak atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := "k" + strconv.Itoa((g+i)%3)
				require.NoError(t, b.Acquire(context.Background(), key))
				if key == "k0" {
					n := inside.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					inside.Add(-1)
				}
				b.Release(key)
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, peak.Load(), int32(3), "eviction under churn never lets a key exceed its limit")
}
