package election

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Compare with [errors.Is]: most are
// wrapped with the detail that caused them.
var (
	// ErrClosed is returned by a closed elector, [Observation],
	// [StoreServer] or [RemoteStore], and is the cause of a [Term]
	// ended by Close.
	ErrClosed = errors.New("election: closed")
	// ErrRunning is returned by Run when the elector is already running.
	ErrRunning = errors.New("election: already running")
	// ErrInvalidConfig is wrapped by every error that reports a bad
	// configuration field; the message names the field and the reason.
	ErrInvalidConfig = errors.New("election: invalid config")
	// ErrResigned is the cause of a [Term] ended by Resign.
	ErrResigned = errors.New("election: resigned")
	// ErrLeadershipLost is the cause of a [Term] that ended because this
	// node could no longer prove its leadership in time: a lease that
	// could not be renewed before its deadline, a Raft leader that lost
	// contact with a majority, a higher term or a higher-ranked node.
	ErrLeadershipLost = errors.New("election: leadership lost")
	// ErrLeaseLost is returned by [LeaseStore] Renew for a lease that is
	// no longer live, and by Campaign and as a [Term]'s cause when this
	// candidate's own lease or entry expired or was taken.
	ErrLeaseLost = errors.New("election: lease lost")
	// ErrLeaseHeld is returned by [LeaseStore] Acquire when another
	// holder has a live lease on the key; the current lease is returned
	// with it.
	ErrLeaseHeld = errors.New("election: lease held by another holder")
	// ErrNoLease is returned by [LeaseStore] Get when the key has no
	// live lease.
	ErrNoLease = errors.New("election: no lease")
	// ErrInvalidLease is wrapped by store errors for an empty key or
	// holder, a key or holder that is too long, a zero epoch or a TTL
	// that is not positive.
	ErrInvalidLease = errors.New("election: invalid lease request")
	// ErrStaleToken is wrapped by [*StaleTokenError], returned by a
	// [Fence] for a token older than one it has already accepted.
	ErrStaleToken = errors.New("election: stale fencing token")
	// ErrInvalidToken is returned by a [Fence] for token 0, which no
	// elector grants.
	ErrInvalidToken = errors.New("election: invalid fencing token 0")
	// ErrMalformed is wrapped by every error the wire decoder returns for
	// a truncated, oversized or otherwise malformed packet; such packets
	// are dropped.
	ErrMalformed = errors.New("election: malformed packet")
	// ErrUnavailable is returned by [RemoteStore] when the server did not
	// answer within [RemoteStoreConfig].Timeout.
	ErrUnavailable = errors.New("election: store unavailable")
)

// StaleTokenError reports a write fenced off because a newer leader has
// already used the resource. It wraps [ErrStaleToken].
type StaleTokenError struct {
	// Token is the rejected token; Highest is the newest the fence has
	// accepted.
	Token, Highest uint64
}

// Error names the rejected token and the highest the fence accepted.
func (e *StaleTokenError) Error() string {
	return fmt.Sprintf("election: stale fencing token %d (a leader with token %d has written)", e.Token, e.Highest)
}

// Unwrap returns [ErrStaleToken].
func (e *StaleTokenError) Unwrap() error { return ErrStaleToken }

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}
