package circuitbreaker

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"
)

// Config configures a [Breaker]. The zero value is a breaker that opens
// after 5 consecutive failures, stays open 30 seconds, then lets one probe
// through and closes when it succeeds.
//
// A breaker trips when any enabled policy says so:
//
//   - ConsecutiveFailures: that many failures in a row.
//   - FailureRate: the share of failures among the calls in the sliding
//     window reaches the rate, once the window holds at least MinCalls.
//   - SlowCallRate: the share of calls that took SlowCallDuration or longer
//     reaches the rate, under the same window and MinCalls.
//
// The window counts the last WindowCalls calls, or, when WindowDuration is
// set, the calls of the last WindowDuration in WindowBuckets buckets.
//
// Every field's zero value means the default written beside it; negative
// values and rates outside [0, 1] are rejected by [New] with a
// [*ConfigError]. A Config is plain data: it can be embedded, logged and
// loaded; only the func fields, the Logger and the Store are not.
type Config struct {
	// Name identifies the breaker in errors, transitions and logs.
	Name string

	// ConsecutiveFailures trips the breaker after this many failures in a
	// row. Zero means 5 when neither FailureRate nor SlowCallRate is set,
	// and disabled otherwise.
	ConsecutiveFailures int

	// FailureRate, in (0, 1], trips the breaker when failures/calls in the
	// window reaches it. Zero disables it. Rates are compared at a
	// resolution of one part per million.
	FailureRate float64

	// SlowCallRate, in (0, 1], trips the breaker when slow calls/calls in
	// the window reaches it. Zero disables it. A call is slow when it took
	// SlowCallDuration or longer, failed or not.
	SlowCallRate float64

	// SlowCallDuration is the duration from which a call counts as slow.
	// Zero means one second. Durations are measured on a coarse clock, to
	// within a sixteenth of SlowCallDuration (and no finer than a
	// millisecond), so that timing a call costs no system call.
	SlowCallDuration time.Duration

	// MinCalls is the number of calls the window must hold before a rate
	// can trip the breaker. Zero means 10 (or WindowCalls, if smaller).
	MinCalls int

	// WindowCalls sizes a count-based window: the last WindowCalls calls.
	// Zero means 100 when a rate is set and WindowDuration is zero. At most
	// 1<<20. Set WindowCalls or WindowDuration, not both.
	WindowCalls int

	// WindowDuration selects a time-based window covering the last
	// WindowDuration, in WindowBuckets buckets; the window advances a
	// bucket at a time. Each bucket must be at least a millisecond wide.
	WindowDuration time.Duration

	// WindowBuckets is the number of buckets of a time-based window. Zero
	// means 10. At most 1024.
	WindowBuckets int

	// OpenTimeout is how long the breaker stays open before it lets probes
	// through. Zero means 30 seconds.
	OpenTimeout time.Duration

	// MaxOpenTimeout enables exponential backoff: each time a probe fails
	// and the breaker reopens without having closed in between, the open
	// period doubles, up to MaxOpenTimeout. Zero means a fixed OpenTimeout.
	// When set, it must not be below OpenTimeout.
	MaxOpenTimeout time.Duration

	// HalfOpenProbes is the number of calls the half-open breaker lets
	// through at the same time; other calls get [ErrTooManyProbes]. Zero
	// means 1.
	HalfOpenProbes int

	// SuccessThreshold is the number of successful probes that close the
	// breaker. Any failed probe reopens it. Zero means HalfOpenProbes.
	SuccessThreshold int

	// ProbeTimeout bounds how long a probe may hold its permit. A probe
	// whose done func was not called, or whose call has not returned,
	// within ProbeTimeout counts as failed: the breaker reopens and a late
	// outcome is ignored. Zero means one minute.
	ProbeTimeout time.Duration

	// IsFailure reports whether an error returned by a guarded call counts
	// as a failure. It is called only for non-nil errors, and must be safe
	// for concurrent use. Nil means [DefaultIsFailure]. An error for which
	// it returns false is neither a failure nor a success: it leaves the
	// counts unchanged and releases a probe permit without a verdict.
	IsFailure func(err error) bool

	// OnStateChange, if set, is called after every state change, in order,
	// never while the breaker holds a lock. It runs on the goroutine that
	// caused the change (or on one that is already delivering earlier
	// changes), so it should return quickly; it may call any method of the
	// breaker, including ones that change its state.
	OnStateChange func(Transition)

	// Logger, if set, receives an Info record for every state change,
	// delivered like OnStateChange. Nil discards.
	Logger *slog.Logger

	// Store, if set, shares trips with other instances that use the same
	// Name: see [Store] and [Breaker.Run].
	Store Store

	// SyncInterval is how often [Breaker.Run] reads the shared state from
	// the Store. Zero means one second.
	SyncInterval time.Duration
}

// DefaultIsFailure is the default [Config.IsFailure]: every error is a
// failure except [context.Canceled], which means the caller gave up, not
// that the dependency failed. [context.DeadlineExceeded] is a failure: the
// dependency was too slow for the caller's deadline.
func DefaultIsFailure(err error) bool {
	switch err.(type) {
	case interface{ Unwrap() error }, interface{ Unwrap() []error }, interface{ Is(error) bool }:
		return !errors.Is(err, context.Canceled)
	}
	// Not a wrapper: skip errors.Is and its reflection.
	return err != context.Canceled
}

// Defaults and limits.
const (
	defaultConsecutive  = 5
	defaultSlowCall     = time.Second
	defaultMinCalls     = 10
	defaultWindowCalls  = 100
	defaultBuckets      = 10
	defaultOpenTimeout  = 30 * time.Second
	defaultProbeTimeout = time.Minute
	defaultSyncInterval = time.Second
	maxWindowCalls      = 1 << 20
	maxBuckets          = 1024
	maxProbes           = 1 << 16
	minBucketWidth      = time.Millisecond
	minClockResolution  = time.Millisecond
	maxClockResolution  = 100 * time.Millisecond
	ppm                 = 1_000_000
)

// settings is a validated Config with defaults applied.
type settings struct {
	Config
	failPPM, slowPPM uint64 // rates in parts per million; 0 disables
	consecutive      uint64 // 0 disables
	minCalls         uint64
	slowNanos        int64
	bucketWidth      int64 // time window; 0 for a count window
	probeNanos       int64
	resolution       time.Duration
	hooks            bool
}

func (c Config) validate() (*settings, error) {
	bad := func(field, reason string) (*settings, error) {
		return nil, &ConfigError{Field: field, Reason: reason}
	}
	rate := func(field string, r float64) (uint64, error) {
		if math.IsNaN(r) || r < 0 || r > 1 {
			return 0, &ConfigError{Field: field, Reason: "must be in [0, 1] (0 disables)"}
		}
		return uint64(math.Round(r * ppm)), nil
	}
	s := &settings{Config: c}
	var err error
	if s.failPPM, err = rate("FailureRate", c.FailureRate); err != nil {
		return nil, err
	}
	if s.slowPPM, err = rate("SlowCallRate", c.SlowCallRate); err != nil {
		return nil, err
	}
	if c.FailureRate > 0 && s.failPPM == 0 {
		return bad("FailureRate", "is below one part per million")
	}
	if c.SlowCallRate > 0 && s.slowPPM == 0 {
		return bad("SlowCallRate", "is below one part per million")
	}
	rates := s.failPPM > 0 || s.slowPPM > 0
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"ConsecutiveFailures", int64(c.ConsecutiveFailures)},
		{"SlowCallDuration", int64(c.SlowCallDuration)},
		{"MinCalls", int64(c.MinCalls)},
		{"WindowCalls", int64(c.WindowCalls)},
		{"WindowDuration", int64(c.WindowDuration)},
		{"WindowBuckets", int64(c.WindowBuckets)},
		{"OpenTimeout", int64(c.OpenTimeout)},
		{"MaxOpenTimeout", int64(c.MaxOpenTimeout)},
		{"HalfOpenProbes", int64(c.HalfOpenProbes)},
		{"SuccessThreshold", int64(c.SuccessThreshold)},
		{"ProbeTimeout", int64(c.ProbeTimeout)},
		{"SyncInterval", int64(c.SyncInterval)},
	} {
		if f.v < 0 {
			return bad(f.name, "must not be negative")
		}
	}

	switch {
	case c.ConsecutiveFailures > 0:
		s.consecutive = uint64(c.ConsecutiveFailures)
	case !rates:
		s.consecutive = defaultConsecutive
		s.ConsecutiveFailures = defaultConsecutive
	}

	if s.SlowCallDuration == 0 {
		s.SlowCallDuration = defaultSlowCall
	}
	s.slowNanos = int64(s.SlowCallDuration)

	if c.WindowCalls > 0 && c.WindowDuration > 0 {
		return bad("WindowCalls", "and WindowDuration are both set; choose a count or a time window")
	}
	if c.WindowBuckets > 0 && c.WindowDuration == 0 {
		return bad("WindowBuckets", "is set without WindowDuration")
	}
	if c.WindowCalls > maxWindowCalls {
		return bad("WindowCalls", "must be at most 1048576")
	}
	if c.WindowBuckets > maxBuckets {
		return bad("WindowBuckets", "must be at most 1024")
	}
	if s.WindowDuration > 0 {
		if s.WindowBuckets == 0 {
			s.WindowBuckets = defaultBuckets
		}
		s.bucketWidth = int64(s.WindowDuration) / int64(s.WindowBuckets)
		if s.bucketWidth < int64(minBucketWidth) {
			return bad("WindowDuration", "divided by WindowBuckets must be at least 1ms")
		}
	} else if rates && s.WindowCalls == 0 {
		s.WindowCalls = defaultWindowCalls
	}
	if s.MinCalls == 0 {
		s.MinCalls = defaultMinCalls
		if s.WindowCalls > 0 && s.WindowCalls < s.MinCalls {
			s.MinCalls = s.WindowCalls
		}
	}
	if s.WindowCalls > 0 && s.MinCalls > s.WindowCalls {
		return bad("MinCalls", "exceeds WindowCalls, so no rate could ever trip the breaker")
	}
	s.minCalls = uint64(s.MinCalls)

	if s.OpenTimeout == 0 {
		s.OpenTimeout = defaultOpenTimeout
	}
	if s.MaxOpenTimeout != 0 && s.MaxOpenTimeout < s.OpenTimeout {
		return bad("MaxOpenTimeout", "is below OpenTimeout")
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = 1
	}
	if s.HalfOpenProbes > maxProbes {
		return bad("HalfOpenProbes", "must be at most 65536")
	}
	if s.SuccessThreshold == 0 {
		s.SuccessThreshold = s.HalfOpenProbes
	}
	if s.ProbeTimeout == 0 {
		s.ProbeTimeout = defaultProbeTimeout
	}
	s.probeNanos = int64(s.ProbeTimeout)
	if s.SyncInterval == 0 {
		s.SyncInterval = defaultSyncInterval
	}
	if s.IsFailure == nil {
		s.IsFailure = DefaultIsFailure
	}
	s.hooks = s.OnStateChange != nil || s.Logger != nil

	// The coarse clock must resolve the shortest duration the breaker
	// measures finely enough.
	res := s.OpenTimeout / 64
	if s.bucketWidth > 0 {
		res = min(res, time.Duration(s.bucketWidth)/4)
	}
	if s.slowPPM > 0 {
		res = min(res, s.SlowCallDuration/16)
	}
	s.resolution = min(max(res, minClockResolution), maxClockResolution)
	return s, nil
}

// openTimeout returns the open period after the n-th consecutive trip
// (n >= 1).
func (s *settings) openTimeout(n int) time.Duration {
	d := s.OpenTimeout
	if s.MaxOpenTimeout == 0 {
		return d
	}
	for i := 1; i < n && d < s.MaxOpenTimeout; i++ {
		if d > s.MaxOpenTimeout/2 {
			return s.MaxOpenTimeout
		}
		d *= 2
	}
	return min(d, s.MaxOpenTimeout)
}
