package heartbeattest

import (
	"testing"
	"time"

	"github.com/distkit/distkit/heartbeat"
)

// TestDetector runs the [heartbeat.Detector] conformance suite against
// the detectors f makes for a 1 s interval: no suspicion before the first
// heartbeat, a level that never falls during silence, suspicion within an
// hour of silence, a heartbeat that clears it, tolerance of a time that
// goes backwards, and detectors that share no state.
func TestDetector(t *testing.T, f heartbeat.DetectorFactory) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	newDet := func(t *testing.T) heartbeat.Detector {
		t.Helper()
		d, err := f.NewDetector(time.Second)
		if err != nil {
			t.Fatalf("NewDetector: %v", err)
		}
		return d
	}
	beat := func(d heartbeat.Detector, n int) time.Time {
		for i := range n {
			d.Heartbeat(start.Add(time.Duration(i) * time.Second))
		}
		return start.Add(time.Duration(n-1) * time.Second)
	}
	t.Run("QuietBeforeFirstHeartbeat", func(t *testing.T) {
		d := newDet(t)
		if l, s := d.Suspicion(start.Add(time.Hour)); l != 0 || s {
			t.Fatalf("Suspicion before any heartbeat = (%v, %v), want (0, false)", l, s)
		}
	})
	t.Run("LevelGrowsWithSilence", func(t *testing.T) {
		d := newDet(t)
		last := beat(d, 60)
		prev := -1.0
		for s := time.Duration(0); s <= time.Hour; s += 50 * time.Millisecond {
			l, _ := d.Suspicion(last.Add(s))
			if l < prev {
				t.Fatalf("level fell from %v to %v after %v of silence", prev, l, s)
			}
			prev = l
		}
	})
	t.Run("SuspectsLongSilence", func(t *testing.T) {
		d := newDet(t)
		last := beat(d, 60)
		if _, s := d.Suspicion(last.Add(500 * time.Millisecond)); s {
			t.Fatal("suspects half an interval after a steady heartbeat")
		}
		if _, s := d.Suspicion(last.Add(time.Hour)); !s {
			t.Fatal("does not suspect after an hour of silence")
		}
	})
	t.Run("HeartbeatClearsSuspicion", func(t *testing.T) {
		d := newDet(t)
		last := beat(d, 60).Add(time.Hour)
		d.Heartbeat(last)
		if _, s := d.Suspicion(last.Add(100 * time.Millisecond)); s {
			t.Fatal("still suspects right after a fresh heartbeat")
		}
	})
	t.Run("ToleratesTimeGoingBackwards", func(t *testing.T) {
		d := newDet(t)
		last := beat(d, 10)
		d.Heartbeat(last.Add(-5 * time.Second))
		if _, s := d.Suspicion(last.Add(500 * time.Millisecond)); s {
			t.Fatal("an out-of-order heartbeat made the detector suspect")
		}
	})
	t.Run("DetectorsAreIndependent", func(t *testing.T) {
		a, b := newDet(t), newDet(t)
		last := beat(a, 60)
		beat(b, 60)
		a.Heartbeat(last.Add(time.Hour))
		if _, s := b.Suspicion(last.Add(time.Hour)); !s {
			t.Fatal("a heartbeat to one detector cleared another")
		}
	})
}
