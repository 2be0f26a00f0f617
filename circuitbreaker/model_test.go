package circuitbreaker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
)

// model is a deliberately naive breaker: exact time, plain slices, and
// no concurrency (the differential test drives it from one goroutine, so
// it needs no lock). It implements the documented semantics of the same Config, and
// the differential test checks that the lock-free Breaker agrees with it
// after every step of random call sequences.
type model struct {
	mu  sync.Mutex
	cfg circuitbreaker.Config // with defaults filled in by the test

	base    time.Time
	state   circuitbreaker.State
	gen     int
	until   time.Time
	trips   int
	consec  int
	calls   int // closed, no window
	fails   int // closed, no window
	ring    []uint8
	events  []modelEvent // time window
	probes  map[int]time.Time
	nextID  int
	probeOK int

	rejected int
}

type modelEvent struct {
	epoch      int64
	fail, slow bool
}

type modelPermit struct {
	gen   int
	probe int // 0 when not a probe
	start time.Time
}

func newModel(cfg circuitbreaker.Config) *model {
	return &model{cfg: cfg, base: time.Now(), probes: map[int]time.Time{}}
}

func (m *model) width() time.Duration {
	return m.cfg.WindowDuration / time.Duration(m.cfg.WindowBuckets)
}

func (m *model) epoch(t time.Time) int64 { return int64(t.Sub(m.base) / m.width()) }

func (m *model) openTimeout() time.Duration {
	d := m.cfg.OpenTimeout
	if m.cfg.MaxOpenTimeout == 0 {
		return d
	}
	for i := 1; i < m.trips; i++ {
		d *= 2
	}
	return min(d, m.cfg.MaxOpenTimeout)
}

func (m *model) enter(s circuitbreaker.State) {
	m.state = s
	m.gen++
	m.consec, m.calls, m.fails, m.probeOK = 0, 0, 0, 0
	m.ring, m.events = nil, nil
	m.probes = map[int]time.Time{}
}

func (m *model) trip(now time.Time) {
	m.trips++
	m.enter(circuitbreaker.StateOpen)
	m.until = now.Add(m.openTimeout())
}

// advance applies transitions due at now, as State does.
func (m *model) advance(now time.Time) {
	if m.state == circuitbreaker.StateOpen && !now.Before(m.until) {
		m.enter(circuitbreaker.StateHalfOpen)
	}
	if m.state == circuitbreaker.StateHalfOpen {
		for _, start := range m.probes {
			if now.Sub(start) >= m.cfg.ProbeTimeout {
				m.trip(now)
				return
			}
		}
	}
}

// Allow returns a permit or the sentinel that rejects the call.
func (m *model) Allow(now time.Time) (modelPermit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance(now)
	switch m.state {
	case circuitbreaker.StateOpen, circuitbreaker.StateForcedOpen:
		m.rejected++
		return modelPermit{}, circuitbreaker.ErrOpen
	case circuitbreaker.StateHalfOpen:
		if len(m.probes) >= m.cfg.HalfOpenProbes {
			m.rejected++
			return modelPermit{}, circuitbreaker.ErrTooManyProbes
		}
		m.nextID++
		m.probes[m.nextID] = now
		return modelPermit{gen: m.gen, probe: m.nextID, start: now}, nil
	}
	return modelPermit{gen: m.gen, start: now}, nil
}

// Finish records the outcome of permit p at time now.
func (m *model) Finish(p modelPermit, err error, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.gen != m.gen {
		return // the episode it was admitted in is over
	}
	ignored := err != nil && errors.Is(err, context.Canceled)
	fail := err != nil && !ignored
	slow := m.cfg.SlowCallRate > 0 && now.Sub(p.start) >= m.cfg.SlowCallDuration
	if p.probe != 0 {
		if _, ok := m.probes[p.probe]; !ok {
			return
		}
		delete(m.probes, p.probe)
		switch {
		case ignored:
		case fail || slow:
			m.trip(now)
		default:
			m.probeOK++
			if m.probeOK >= m.cfg.SuccessThreshold {
				m.trips = 0
				m.enter(circuitbreaker.StateClosed)
			}
		}
		return
	}
	if ignored {
		return
	}
	calls, fails, slows := m.record(fail, slow, now)
	if fail {
		m.consec++
	} else {
		m.consec = 0
	}
	if m.state != circuitbreaker.StateClosed || (!fail && !slow) {
		return
	}
	rate := func(n int, r float64) bool {
		return r > 0 && int64(n)*1_000_000 >= int64(r*1_000_000+0.5)*int64(calls)
	}
	switch {
	case m.cfg.ConsecutiveFailures > 0 && fail && m.consec >= m.cfg.ConsecutiveFailures:
		m.trip(now)
	case calls < m.cfg.MinCalls:
	case fail && rate(fails, m.cfg.FailureRate):
		m.trip(now)
	case slow && rate(slows, m.cfg.SlowCallRate):
		m.trip(now)
	}
}

// record adds an outcome to the window and returns its counts.
func (m *model) record(fail, slow bool, now time.Time) (calls, fails, slows int) {
	switch {
	case m.cfg.WindowCalls > 0:
		var o uint8 = 1
		if fail {
			o |= 2
		}
		if slow {
			o |= 4
		}
		m.ring = append(m.ring, o)
		if len(m.ring) > m.cfg.WindowCalls {
			m.ring = m.ring[1:]
		}
	case m.cfg.WindowDuration > 0:
		m.events = append(m.events, modelEvent{m.epoch(now), fail, slow})
	default:
		m.calls++
		if fail {
			m.fails++
		}
	}
	return m.counts(now)
}

// Observe applies the transitions due at now and returns the state, the
// window's counts in a closed state, the run of failures and the
// rejections.
func (m *model) Observe(now time.Time) (state circuitbreaker.State, calls, fails, slows, consec, rejected int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance(now)
	if m.state == circuitbreaker.StateClosed || m.state == circuitbreaker.StateForcedClosed {
		calls, fails, slows = m.counts(now)
	}
	return m.state, calls, fails, slows, m.consec, m.rejected
}

// Set moves the model to state s, as Reset, ForceOpen and ForceClosed do.
func (m *model) Set(s circuitbreaker.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == s && s != circuitbreaker.StateClosed {
		return
	}
	m.trips = 0
	m.enter(s)
}

func (m *model) counts(now time.Time) (calls, fails, slows int) {
	switch {
	case m.cfg.WindowCalls > 0:
		for _, o := range m.ring {
			calls++
			if o&2 != 0 {
				fails++
			}
			if o&4 != 0 {
				slows++
			}
		}
	case m.cfg.WindowDuration > 0:
		e := m.epoch(now)
		for _, ev := range m.events {
			if ev.epoch > e-int64(m.cfg.WindowBuckets) && ev.epoch <= e {
				calls++
				if ev.fail {
					fails++
				}
				if ev.slow {
					slows++
				}
			}
		}
	default:
		calls, fails = m.calls, m.fails
	}
	return calls, fails, slows
}

var errModel = errors.New("model failure")

// modelConfigs use durations that are multiples of 100ms, the coarse
// clock's resolution for each of them, so that in fake time the coarse
// clock reads exactly the real one at every step.
var modelConfigs = []struct {
	name string
	cfg  circuitbreaker.Config
}{
	{"consecutive", circuitbreaker.Config{
		ConsecutiveFailures: 3, OpenTimeout: 6400 * time.Millisecond,
		HalfOpenProbes: 2, SuccessThreshold: 3, ProbeTimeout: 3200 * time.Millisecond,
	}},
	{"count-window", circuitbreaker.Config{
		FailureRate: 0.5, WindowCalls: 8, MinCalls: 4, OpenTimeout: 6400 * time.Millisecond,
		HalfOpenProbes: 1, SuccessThreshold: 2, ProbeTimeout: 3200 * time.Millisecond,
	}},
	{"time-window-slow", circuitbreaker.Config{
		FailureRate: 0.4, SlowCallRate: 0.5, SlowCallDuration: 1600 * time.Millisecond,
		WindowDuration: 4 * time.Second, WindowBuckets: 4, MinCalls: 3,
		OpenTimeout: 6400 * time.Millisecond, HalfOpenProbes: 2, ProbeTimeout: 3200 * time.Millisecond,
	}},
	{"all-backoff", circuitbreaker.Config{
		ConsecutiveFailures: 4, FailureRate: 0.6, SlowCallRate: 0.5, SlowCallDuration: 1600 * time.Millisecond,
		WindowCalls: 10, MinCalls: 5, OpenTimeout: 6400 * time.Millisecond, MaxOpenTimeout: 30 * time.Second,
		HalfOpenProbes: 3, SuccessThreshold: 2, ProbeTimeout: 3200 * time.Millisecond,
	}},
}

// withDefaults fills in the documented defaults the model needs.
func withDefaults(c circuitbreaker.Config) circuitbreaker.Config {
	if c.WindowDuration > 0 && c.WindowBuckets == 0 {
		c.WindowBuckets = 10
	}
	if c.SuccessThreshold == 0 {
		c.SuccessThreshold = c.HalfOpenProbes
	}
	return c
}

func TestDifferentialAgainstModel(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for _, mc := range modelConfigs {
		t.Run(mc.name, func(t *testing.T) {
			for seed := range seeds {
				synctest.Test(t, func(t *testing.T) {
					if trace, err := runDifferential(mc.cfg, uint64(seed), 300); err != nil {
						t.Fatalf("seed %d: %v\ntrace:\n%s", seed, err, trace)
					}
				})
			}
		})
	}
}

// runDifferential drives a Breaker and the model with the same random
// steps and returns the trace and the first disagreement.
func runDifferential(cfg circuitbreaker.Config, seed uint64, steps int) (string, error) {
	const tick = 100 * time.Millisecond
	rng := rand.New(rand.NewPCG(seed, 0xb4ea6e4))
	b, err := circuitbreaker.New(cfg)
	if err != nil {
		return "", err
	}
	m := newModel(withDefaults(cfg))
	var trace strings.Builder
	type held struct {
		done func(error)
		p    modelPermit
	}
	var holds []held
	outcome := func() error {
		switch r := rng.IntN(10); {
		case r < 5:
			return nil
		case r < 9:
			return errModel
		default:
			return context.Canceled
		}
	}
	sleep := func(d time.Duration) {
		time.Sleep(d)
		synctest.Wait() // let the coarse clock's tick at this instant run
	}
	ctx := context.Background()
	for step := range steps {
		var desc string
		var gotErr, wantErr error
		switch op := rng.IntN(200) / 2; {
		case op < 45: // a call through Do, taking some time
			want := outcome()
			d := time.Duration(rng.IntN(20)) * tick
			desc = fmt.Sprintf("do(%v, %v)", want, d)
			p, merr := m.Allow(time.Now())
			called := false
			gotErr = b.Do(ctx, func(context.Context) error {
				called = true
				sleep(d)
				return want
			})
			if merr == nil {
				m.Finish(p, want, time.Now())
				wantErr = want
			} else {
				wantErr = merr
			}
			if called != (merr == nil) {
				return trace.String(), fmt.Errorf("step %d %s: called=%v, model admitted=%v", step, desc, called, merr == nil)
			}
		case op < 60: // two-step: take a permit and hold it
			desc = "allow"
			done, err := b.Allow()
			p, merr := m.Allow(time.Now())
			gotErr, wantErr = err, merr
			if err == nil && merr == nil {
				holds = append(holds, held{done, p})
			}
		case op < 72 && len(holds) > 0: // finish a held permit
			i := rng.IntN(len(holds))
			h := holds[i]
			holds = append(holds[:i], holds[i+1:]...)
			want := outcome()
			desc = fmt.Sprintf("done(%v) of permit from gen %d", want, h.p.gen)
			h.done(want)
			m.Finish(h.p, want, time.Now())
		case op < 97:
			d := time.Duration(1+rng.IntN(30)) * tick
			desc = fmt.Sprintf("sleep(%v)", d)
			sleep(d)
		case op < 99 || rng.IntN(2) == 0:
			desc = "reset"
			b.Reset()
			m.Set(circuitbreaker.StateClosed)
		case rng.IntN(2) == 0:
			desc = "force-open"
			b.ForceOpen()
			m.Set(circuitbreaker.StateForcedOpen)
		default:
			desc = "force-closed"
			b.ForceClosed()
			m.Set(circuitbreaker.StateForcedClosed)
		}
		snap := b.Snapshot()
		now := time.Now()
		state, calls, fails, slows, consec, rejected := m.Observe(now)
		fmt.Fprintf(&trace, "%3d t=%-8v %-40s -> %-13v calls=%d fails=%d slow=%d consec=%d rejected=%d err=%v\n",
			step, now.Sub(m.base), desc, snap.State, snap.Calls, snap.Failures, snap.Slow, snap.ConsecutiveFailures, snap.Rejected, gotErr)
		if !sameErr(gotErr, wantErr) {
			return trace.String(), fmt.Errorf("step %d %s: breaker returned %v, model %v", step, desc, gotErr, wantErr)
		}
		want := fmt.Sprintf("%v calls=%d fails=%d slow=%d consec=%d rejected=%d", state, calls, fails, slows, consec, rejected)
		got := fmt.Sprintf("%v calls=%d fails=%d slow=%d consec=%d rejected=%d", snap.State, snap.Calls, snap.Failures, snap.Slow, snap.ConsecutiveFailures, snap.Rejected)
		if got != want {
			return trace.String(), fmt.Errorf("step %d %s: breaker %s, model %s", step, desc, got, want)
		}
	}
	return trace.String(), nil
}

func sameErr(got, want error) bool {
	if want == nil || got == nil {
		return got == want
	}
	return errors.Is(got, want)
}
