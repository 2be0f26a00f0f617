package circuitbreaker

import "time"

// State is the state of a [Breaker].
type State uint8

const (
	// StateClosed lets calls through and watches their outcomes.
	StateClosed State = iota
	// StateOpen rejects calls with [ErrOpen] until the open period ends.
	StateOpen
	// StateHalfOpen lets up to [Config.HalfOpenProbes] calls through at a
	// time to test whether the dependency has recovered.
	StateHalfOpen
	// StateForcedOpen rejects every call until [Breaker.Reset] or
	// [Breaker.ForceClosed]; see [Breaker.ForceOpen].
	StateForcedOpen
	// StateForcedClosed lets every call through and counts outcomes, but
	// never trips; see [Breaker.ForceClosed].
	StateForcedClosed
)

var stateNames = [...]string{"closed", "open", "half-open", "forced-open", "forced-closed"}

// String returns "closed", "open", "half-open", "forced-open" or
// "forced-closed".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Transition describes one state change, as passed to
// [Config.OnStateChange].
type Transition struct {
	// Name is the breaker's [Config.Name] (for a breaker of a [Group],
	// the group's name and the key).
	Name string
	// Key is the key of a breaker that belongs to a [Group], and empty for
	// one made with [New].
	Key string
	// From and To are the states before and after the change.
	From, To State
	// At is when the change happened.
	At time.Time
	// Reason says why, in a few words: "consecutive failures",
	// "failure rate", "slow-call rate", "open timeout elapsed",
	// "probe succeeded", "probe failed", "probe slow", "probe timed out",
	// "shared trip", "forced open", "forced closed" or "reset".
	Reason string
	// Err is the failure that tripped the breaker or failed the probe, if
	// any.
	Err error
	// OpenUntil is the end of the open period when To is [StateOpen].
	OpenUntil time.Time
}

// Reasons for transitions.
const (
	reasonConsecutive = "consecutive failures"
	reasonFailureRate = "failure rate"
	reasonSlowRate    = "slow-call rate"
	reasonTimeout     = "open timeout elapsed"
	reasonProbeOK     = "probe succeeded"
	reasonProbeFailed = "probe failed"
	reasonProbeSlow   = "probe slow"
	reasonProbeLost   = "probe timed out"
	reasonShared      = "shared trip"
	reasonForceOpen   = "forced open"
	reasonForceClosed = "forced closed"
	reasonReset       = "reset"
)
