package election

import (
	"context"
	"fmt"
	"time"
)

// Lease is a key held by a holder until its TTL runs out on the store's
// clock, unless renewed.
type Lease struct {
	// Key is what the lease is on.
	Key string
	// Holder names who holds it. Holders must be unique per process
	// incarnation (the electors add a random session suffix), because an
	// Acquire by the current holder renews rather than fails.
	Holder string
	// Epoch is assigned by the store when the lease is acquired and kept
	// by renewals. It is strictly greater than every epoch the store has
	// assigned before, for any key, and never reused: it is the fencing
	// token of the lease-based electors.
	Epoch uint64
	// TTL is the lease's time to live, counted by the store from its
	// latest acquisition or renewal.
	TTL time.Duration
}

// LeaseStore is the small coordination service the lease-based and
// sequence (ZooKeeper-style) electors run on: keys held under a TTL, a
// compare-and-set on the holder and the epoch, and a watch. [MemoryStore]
// is the reference implementation; etcd (a lease plus a transaction
// comparing the key's create revision), PostgreSQL (a lease row with an
// epoch from a sequence and an expires_at column, updated with
// "WHERE epoch = $1 AND expires_at > now()", not advisory locks) or NATS
// KV (revision-checked updates on a bucket with TTL) fit behind it.
// Every implementation must pass
// [github.com/distkit/distkit/election/electiontest.Run].
//
// The contract:
//   - A lease is live from its acquisition until TTL after its latest
//     acquisition or renewal, measured by the store; after that it is as
//     if it were released. All methods see only live leases.
//   - Epochs come from one counter per store, never reused, strictly
//     increasing across acquisitions of any key. Renewals keep the epoch.
//   - Every method is safe for concurrent use and, on ctx ending, returns
//     an error wrapping ctx.Err(). Bad arguments give an error wrapping
//     [ErrInvalidLease].
type LeaseStore interface {
	// Acquire takes key for holder for ttl if no live lease is on key,
	// with a new epoch. If holder already holds the live lease it is
	// renewed for ttl and returned with its epoch unchanged, so a retried
	// Acquire is harmless. Otherwise it returns the current lease and
	// [ErrLeaseHeld].
	Acquire(ctx context.Context, key, holder string, ttl time.Duration) (Lease, error)
	// Renew extends the live lease on key with the given epoch to ttl
	// from now, or returns [ErrLeaseLost] if there is none.
	Renew(ctx context.Context, key string, epoch uint64, ttl time.Duration) (Lease, error)
	// Release ends the live lease on key with the given epoch. Releasing
	// a lease that is gone already is not an error.
	Release(ctx context.Context, key string, epoch uint64) error
	// Get returns the live lease on key, or [ErrNoLease].
	Get(ctx context.Context, key string) (Lease, error)
	// List returns the live leases whose keys start with prefix, in
	// increasing epoch order.
	List(ctx context.Context, prefix string) ([]Lease, error)
	// Watch blocks until key holds no live lease with the given epoch
	// (released, expired or replaced), then returns nil. It returns at
	// once if that is already so.
	Watch(ctx context.Context, key string, epoch uint64) error
}

func checkLeaseArgs(key, holder string, epoch uint64, ttl time.Duration, needHolder, needEpoch, needTTL bool) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidLease)
	case len(key) > MaxIDLen:
		return fmt.Errorf("%w: key of %d bytes, at most %d", ErrInvalidLease, len(key), MaxIDLen)
	case needHolder && holder == "":
		return fmt.Errorf("%w: empty holder", ErrInvalidLease)
	case len(holder) > MaxIDLen:
		return fmt.Errorf("%w: holder of %d bytes, at most %d", ErrInvalidLease, len(holder), MaxIDLen)
	case needEpoch && epoch == 0:
		return fmt.Errorf("%w: epoch 0", ErrInvalidLease)
	case needTTL && ttl <= 0:
		return fmt.Errorf("%w: ttl %v, want > 0", ErrInvalidLease, ttl)
	}
	return nil
}

func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("election: %s: %w", op, err)
	}
	return nil
}
