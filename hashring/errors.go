package hashring

import "errors"

// Errors returned by the package. Membership errors wrap one of these with
// the offending node name, so test for them with [errors.Is].
var (
	// ErrEmpty is returned by lookups on a ring that has no members.
	ErrEmpty = errors.New("hashring: ring is empty")
	// ErrEmptyName is returned when a node name is the empty string.
	ErrEmptyName = errors.New("hashring: empty node name")
	// ErrDuplicate is returned when adding a node that is already a member,
	// or naming the same node twice in one call.
	ErrDuplicate = errors.New("hashring: node already present")
	// ErrUnknownNode is returned when removing or re-weighting a node that
	// is not a member.
	ErrUnknownNode = errors.New("hashring: unknown node")
	// ErrInvalidWeight is returned for a weight that is zero, negative, not
	// finite, or so small or large that the node would get no point or more
	// than [MaxPointsPerNode] points.
	ErrInvalidWeight = errors.New("hashring: invalid weight")
	// ErrTooFewNodes is returned when asking for more distinct owners than
	// the ring has members.
	ErrTooFewNodes = errors.New("hashring: not enough nodes")
	// ErrInvalidArgument is returned for other bad arguments: a negative
	// count, a negative or non-finite epsilon, a duplicate key.
	ErrInvalidArgument = errors.New("hashring: invalid argument")
	// ErrInvalidConfig is returned by [New] for a Config out of range.
	ErrInvalidConfig = errors.New("hashring: invalid config")
)
