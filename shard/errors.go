package shard

import (
	"errors"
	"fmt"
)

// Errors returned by the package; test for them with [errors.Is]. Most are
// wrapped with the offending shard, key or range.
var (
	// ErrEmptyKeySpace is returned when a map would have no shard or no
	// range.
	ErrEmptyKeySpace = errors.New("shard: empty key space")
	// ErrEmptyName is returned for an empty shard name.
	ErrEmptyName = errors.New("shard: empty shard name")
	// ErrUnknownShard is returned for a shard that is not in the map, or
	// that the router has no resource for.
	ErrUnknownShard = errors.New("shard: unknown shard")
	// ErrDuplicateShard is returned when adding a shard that is already in
	// the map.
	ErrDuplicateShard = errors.New("shard: shard already present")
	// ErrOverlap is returned when key ranges overlap or are out of order.
	ErrOverlap = errors.New("shard: overlapping ranges")
	// ErrGap is returned when key ranges leave part of the key space
	// without an owner.
	ErrGap = errors.New("shard: ranges leave a gap")
	// ErrBadBoundary is returned for a split or merge point that is not
	// inside a range or not a boundary.
	ErrBadBoundary = errors.New("shard: bad range boundary")
	// ErrStrategy is returned for an operation the map's strategy does not
	// support (adding shards to a range map, splitting a hash map), and by
	// [Diff] for maps of different strategies.
	ErrStrategy = errors.New("shard: operation not supported by this strategy")
	// ErrInvalidConfig is returned for a HashConfig out of range.
	ErrInvalidConfig = errors.New("shard: invalid config")
	// ErrStaleEpoch is returned by [Router.Reshard] for a map whose epoch
	// is not newer than the router's.
	ErrStaleEpoch = errors.New("shard: stale epoch")
	// ErrReshardInProgress is returned by [Router.Reshard] when an earlier
	// reshard to a different map has not finished; finish it first by
	// calling Reshard again with that map.
	ErrReshardInProgress = errors.New("shard: another reshard is in progress")
	// ErrNotFound is returned by [KV.Get] for a key that does not exist.
	ErrNotFound = errors.New("shard: key not found")
)

// ShardError reports the failure of one shard in [Router.Scatter] or
// [Gather], or of one move in [Router.Reshard].
type ShardError struct {
	// Shard names the shard that failed.
	Shard string
	// Err is its error.
	Err error
}

// Error names the shard and its error.
func (e *ShardError) Error() string { return fmt.Sprintf("shard %q: %v", e.Shard, e.Err) }

// Unwrap returns e.Err.
func (e *ShardError) Unwrap() error { return e.Err }
