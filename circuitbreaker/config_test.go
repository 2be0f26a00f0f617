package circuitbreaker_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/circuitbreaker"
)

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   circuitbreaker.Config
		field string // empty: valid
	}{
		{"zero", circuitbreaker.Config{}, ""},
		{"all policies", circuitbreaker.Config{ConsecutiveFailures: 3, FailureRate: 0.5, SlowCallRate: 1, WindowDuration: time.Minute}, ""},
		{"rate one", circuitbreaker.Config{FailureRate: 1}, ""},
		{"negative consecutive", circuitbreaker.Config{ConsecutiveFailures: -1}, "ConsecutiveFailures"},
		{"rate above one", circuitbreaker.Config{FailureRate: 1.5}, "FailureRate"},
		{"negative rate", circuitbreaker.Config{FailureRate: -0.1}, "FailureRate"},
		{"NaN rate", circuitbreaker.Config{FailureRate: math.NaN()}, "FailureRate"},
		{"tiny rate", circuitbreaker.Config{FailureRate: 1e-9}, "FailureRate"},
		{"slow rate above one", circuitbreaker.Config{SlowCallRate: 2}, "SlowCallRate"},
		{"infinite slow rate", circuitbreaker.Config{SlowCallRate: math.Inf(1)}, "SlowCallRate"},
		{"negative slow duration", circuitbreaker.Config{SlowCallDuration: -time.Second}, "SlowCallDuration"},
		{"negative window", circuitbreaker.Config{WindowCalls: -1}, "WindowCalls"},
		{"huge window", circuitbreaker.Config{WindowCalls: 1<<20 + 1}, "WindowCalls"},
		{"negative window duration", circuitbreaker.Config{WindowDuration: -time.Second}, "WindowDuration"},
		{"both windows", circuitbreaker.Config{WindowCalls: 10, WindowDuration: time.Second}, "WindowCalls"},
		{"buckets without duration", circuitbreaker.Config{WindowBuckets: 5}, "WindowBuckets"},
		{"too many buckets", circuitbreaker.Config{WindowDuration: time.Hour, WindowBuckets: 2000}, "WindowBuckets"},
		{"sub-millisecond buckets", circuitbreaker.Config{WindowDuration: 5 * time.Millisecond, WindowBuckets: 10}, "WindowDuration"},
		{"min calls above window", circuitbreaker.Config{FailureRate: 0.5, WindowCalls: 5, MinCalls: 6}, "MinCalls"},
		{"negative min calls", circuitbreaker.Config{MinCalls: -1}, "MinCalls"},
		{"negative open timeout", circuitbreaker.Config{OpenTimeout: -1}, "OpenTimeout"},
		{"max below open timeout", circuitbreaker.Config{OpenTimeout: time.Minute, MaxOpenTimeout: time.Second}, "MaxOpenTimeout"},
		{"negative probes", circuitbreaker.Config{HalfOpenProbes: -1}, "HalfOpenProbes"},
		{"too many probes", circuitbreaker.Config{HalfOpenProbes: 1 << 17}, "HalfOpenProbes"},
		{"negative success threshold", circuitbreaker.Config{SuccessThreshold: -1}, "SuccessThreshold"},
		{"negative probe timeout", circuitbreaker.Config{ProbeTimeout: -1}, "ProbeTimeout"},
		{"negative sync interval", circuitbreaker.Config{SyncInterval: -1}, "SyncInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := circuitbreaker.New(tc.cfg)
			if tc.field == "" {
				require.NoError(t, err)
				require.NotNil(t, b)
				return
			}
			require.Nil(t, b)
			require.ErrorIs(t, err, circuitbreaker.ErrInvalidConfig)
			var ce *circuitbreaker.ConfigError
			require.True(t, errors.As(err, &ce))
			require.Equal(t, tc.field, ce.Field)
			require.Contains(t, err.Error(), tc.field)
		})
	}
}
