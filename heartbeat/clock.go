package heartbeat

import (
	"log/slog"
	"time"
)

// DefaultPauseThreshold is the local pause, beyond one check interval,
// that a Monitor or Node takes out of its detectors' clock when the
// config leaves PauseThreshold at 0.
const DefaultPauseThreshold = 500 * time.Millisecond

// pauseGuard gives detectors a clock that stops while the owner could not
// run (a stop-the-world pause, a stopped process, an overloaded machine),
// so that peers are not convicted for a silence the owner itself caused:
// the lesson of Lifeguard's local health and Cassandra's local-pause
// guard. Every check and every received packet calls observe; since
// checks run every check interval, a longer gap between two calls, on
// the monotonic clock, means the owner was not running. The excess is
// added to paused and subtracted from every time detectors see.
type pauseGuard struct {
	check     time.Duration
	threshold time.Duration // < 0: disabled
	last      time.Time
	paused    time.Duration
	pauses    uint64
	logger    *slog.Logger
	logs      *logQueue // the owner's, guarded by its lock: observe runs under it
}

// observe records activity at now and returns the detectors' time.
func (g *pauseGuard) observe(now time.Time) time.Time {
	if !g.last.IsZero() && g.threshold >= 0 {
		if p := now.Sub(g.last) - g.check; p > g.threshold {
			g.paused += p
			g.pauses++
			if g.logger != nil {
				g.logs.add(slog.LevelWarn, "heartbeat: local pause detected; not convicting peers for it", "pause", p)
			}
		}
	}
	if now.After(g.last) {
		g.last = now
	}
	return now.Add(-g.paused)
}

// skip takes the time since the last activity out of the detectors'
// clock without counting it as a pause: the owner was not running.
func (g *pauseGuard) skip(now time.Time) {
	if !g.last.IsZero() && now.After(g.last) {
		g.paused += now.Sub(g.last)
	}
	g.last = now
}

// adj returns the detectors' time for now without recording activity.
func (g *pauseGuard) adj(now time.Time) time.Time { return now.Add(-g.paused) }

// state machine shared by a Monitor's peers and a Node's paths.

// evaluate advances a local state from the detector's verdict at adj and
// reports whether it changed. suspectAt is when the state last became
// Suspect, on the detectors' clock.
func evaluate(st *State, det Detector, adj time.Time, suspectAt *time.Time, deadAfter time.Duration) (level float64, changed bool) {
	level, suspect := det.Suspicion(adj)
	switch *st {
	case Unknown, Alive:
		if suspect {
			*st, *suspectAt = Suspect, adj
			return level, true
		}
	case Suspect:
		if !suspect {
			*st = Alive
			return level, true
		}
		if adj.Sub(*suspectAt) >= deadAfter {
			*st = Dead
			return level, true
		}
	}
	return level, false
}

// srtt folds a round-trip sample into a smoothed estimate (RFC 6298,
// alpha = 1/8).
func srtt(cur, sample time.Duration) time.Duration {
	if sample < 0 {
		return cur
	}
	if cur == 0 {
		return sample
	}
	return cur + (sample-cur)/8
}
