package election

import "sync"

// Fence guards a resource against writes from deposed leaders, the way
// Chubby's sequencers and Kleppmann's fencing tokens do. Every grant of
// leadership carries a token that is larger than every earlier grant's;
// the resource remembers the highest token it has seen and refuses any
// older one. A leader that was paused past its lease, or whose packets
// were delayed past a failover, therefore cannot overwrite the work of
// its successor, whatever its own clock believes.
//
// A fence protects from the moment the new leader first uses the
// resource: until then an old leader's write still passes, so a new
// leader should touch the resource (Check its token, or write) before
// relying on it.
//
// The zero value is ready to use: it has seen no token. A Fence is safe
// for concurrent use. A resource behind a network (a database row, an
// object store) implements the same rule itself, for example
// "UPDATE ... WHERE fence_token <= $token".
type Fence struct {
	mu       sync.Mutex
	highest  uint64
	accepted uint64
	rejected uint64
}

// Check admits token if it is not older than the highest token seen, and
// makes it the highest. It returns [ErrInvalidToken] for 0 and a
// [*StaleTokenError] (wrapping [ErrStaleToken]) for an older token.
// Check alone is enough for a resource whose writes are idempotent or
// that re-checks in the same atomic step; otherwise use [Fence.Do].
func (f *Fence) Check(token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkLocked(token)
}

func (f *Fence) checkLocked(token uint64) error {
	if token == 0 {
		f.rejected++
		return ErrInvalidToken
	}
	if token < f.highest {
		f.rejected++
		return &StaleTokenError{Token: token, Highest: f.highest}
	}
	f.highest = token
	f.accepted++
	return nil
}

// Do runs write if token passes [Fence.Check], with the check and the
// write done as one step: no write with a newer token can slip in
// between. It returns the Check error without calling write, or write's
// error. Unlike the rest of distkit, Do calls user code under the
// fence's own lock, because that is its purpose (it is the resource's
// lock): write must not call the same Fence, and writes through one
// Fence are serialised. A token is recorded as seen even if write then
// fails.
func (f *Fence) Do(token uint64, write func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked(token); err != nil {
		return err
	}
	return write()
}

// Highest returns the highest token accepted so far, 0 if none.
func (f *Fence) Highest() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest
}

// FenceStats counts a fence's decisions.
type FenceStats struct {
	Accepted, Rejected uint64
}

// Stats returns how many tokens the fence accepted and rejected.
func (f *Fence) Stats() FenceStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FenceStats{Accepted: f.accepted, Rejected: f.rejected}
}
