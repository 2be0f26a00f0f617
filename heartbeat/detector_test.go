package heartbeat_test

import (
	"math"
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/heartbeat/heartbeattest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func beat(d heartbeat.Detector, every time.Duration, n int) time.Time {
	now := t0
	for range n {
		d.Heartbeat(now)
		now = now.Add(every)
	}
	return now.Add(-every)
}

// suspectAfter returns the silence after the last heartbeat at which d
// first suspects, at 1 ms resolution.
func suspectAfter(d heartbeat.Detector, last time.Time) time.Duration {
	for s := time.Duration(0); s < time.Hour; s += time.Millisecond {
		if _, ok := d.Suspicion(last.Add(s)); ok {
			return s
		}
	}
	return -1
}

func TestDetectionTimesMatchTheDocumentedArithmetic(t *testing.T) {
	phi, err := heartbeat.NewPhiAccrual(heartbeat.PhiAccrualConfig{}, time.Second)
	require.NoError(t, err)
	last := beat(phi, time.Second, 100)
	// Steady beats: sigma is clamped to 100 ms, so 1 + 3 + ~5.2 x 0.1 s.
	assert.InDelta(t, 4.52, suspectAfter(phi, last).Seconds(), 0.02)

	exp, err := heartbeat.NewExponential(heartbeat.ExponentialConfig{}, time.Second)
	require.NoError(t, err)
	last = beat(exp, time.Second, 2000) // the initial 2 s estimate has left the window
	assert.InDelta(t, 8*math.Ln10, suspectAfter(exp, last).Seconds(), 0.01)

	dl, err := heartbeat.NewDeadline(heartbeat.DeadlineConfig{}, time.Second)
	require.NoError(t, err)
	last = beat(dl, time.Second, 3)
	assert.Equal(t, 4*time.Second+time.Millisecond, suspectAfter(dl, last), "4 x interval, strictly after")
}

func TestDefaultsScaleWithTheInterval(t *testing.T) {
	fast, err := heartbeat.NewPhiAccrual(heartbeat.PhiAccrualConfig{}, 100*time.Millisecond)
	require.NoError(t, err)
	last := beat(fast, 100*time.Millisecond, 100)
	assert.InDelta(t, 0.452, suspectAfter(fast, last).Seconds(), 0.002)
}

func TestPhiGrowsWithSilenceAndResetsOnHeartbeat(t *testing.T) {
	for name, f := range map[string]heartbeat.DetectorFactory{
		"phi":      heartbeat.PhiAccrualConfig{},
		"exp":      heartbeat.ExponentialConfig{},
		"deadline": heartbeat.DeadlineConfig{},
	} {
		t.Run(name, func(t *testing.T) {
			d, err := f.NewDetector(time.Second)
			require.NoError(t, err)
			l, s := d.Suspicion(t0)
			assert.Zero(t, l, "no heartbeat yet")
			assert.False(t, s)
			last := beat(d, time.Second, 50)
			prev := -1.0
			for s := time.Duration(0); s < time.Minute; s += 100 * time.Millisecond {
				l, _ := d.Suspicion(last.Add(s))
				assert.GreaterOrEqual(t, l, prev, "suspicion fell during silence at %v", s)
				prev = l
			}
			_, sus := d.Suspicion(last.Add(time.Minute))
			assert.True(t, sus)
			d.Heartbeat(last.Add(time.Minute))
			_, sus = d.Suspicion(last.Add(time.Minute))
			assert.False(t, sus, "a heartbeat clears suspicion")
		})
	}
}

// As in Akka, the interval that ends a suspicion is not learnt: one
// outage does not make the detector slow for the next thousand beats.
func TestPhiIgnoresTheIntervalThatEndsAnOutage(t *testing.T) {
	d, err := heartbeat.NewPhiAccrual(heartbeat.PhiAccrualConfig{}, time.Second)
	require.NoError(t, err)
	last := beat(d, time.Second, 100)
	m0, s0 := d.Stats()
	d.Heartbeat(last.Add(time.Minute))
	m1, s1 := d.Stats()
	assert.Equal(t, m0, m1)
	assert.Equal(t, s0, s1)
	d.Heartbeat(last.Add(time.Minute + 2*time.Second)) // a late but acceptable beat is learnt
	m2, _ := d.Stats()
	assert.Greater(t, m2, m1)
}

func TestDetectorConfigErrors(t *testing.T) {
	for name, f := range map[string]heartbeat.DetectorFactory{
		"phi NaN threshold":     heartbeat.PhiAccrualConfig{Threshold: math.NaN()},
		"phi one sample":        heartbeat.PhiAccrualConfig{MaxSamples: 1},
		"phi negative pause":    heartbeat.PhiAccrualConfig{AcceptablePause: -1},
		"exp infinite":          heartbeat.ExponentialConfig{Threshold: math.Inf(1)},
		"exp negative interval": heartbeat.ExponentialConfig{MaxInterval: -1},
		"deadline negative":     heartbeat.DeadlineConfig{Timeout: -1},
	} {
		_, err := f.NewDetector(time.Second)
		assert.ErrorIs(t, err, heartbeat.ErrInvalidConfig, name)
	}
	_, err := heartbeat.PhiAccrualConfig{}.NewDetector(0)
	assert.ErrorIs(t, err, heartbeat.ErrInvalidConfig, "zero interval")
}

func TestPhiDoesNotAllocate(t *testing.T) {
	d, err := heartbeat.NewPhiAccrual(heartbeat.PhiAccrualConfig{}, time.Second)
	require.NoError(t, err)
	now := beat(d, time.Second, 2000)
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		d.Heartbeat(now)
		d.Suspicion(now.Add(500 * time.Millisecond))
	})
	assert.Zero(t, allocs)
}

func TestDetectorConformance(t *testing.T) {
	for name, f := range map[string]heartbeat.DetectorFactory{
		"PhiAccrual":  heartbeat.PhiAccrualConfig{},
		"Exponential": heartbeat.ExponentialConfig{},
		"Deadline":    heartbeat.DeadlineConfig{},
	} {
		t.Run(name, func(t *testing.T) { heartbeattest.TestDetector(t, f) })
	}
}
