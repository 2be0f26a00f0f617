// Package electiontest is the conformance suite for implementations of
// election.LeaseStore. The in-memory store runs it; an adapter for etcd,
// PostgreSQL or NATS runs it against a live service:
//
//	func TestStore(t *testing.T) {
//		electiontest.Run(t, electiontest.Config{
//			New: func(t *testing.T) election.LeaseStore { return newPostgresStore(t) },
//		})
//	}
package electiontest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/election"
)

// Config tells Run how to test a store.
type Config struct {
	// New returns a fresh, empty store (or one whose keys do not collide
	// with other subtests'). Required.
	New func(t *testing.T) election.LeaseStore
	// FakeTime runs every subtest inside a testing/synctest bubble, for
	// stores whose clock is the time package's (such as
	// election.MemoryStore); expiry then takes no real time. Leave it
	// false for a store with its own clock (a database, a server).
	FakeTime bool
	// TTL is the lease time to live used by the expiry tests. 0 means
	// 1 s. A store with a coarse clock needs a larger one.
	TTL time.Duration
}

// Run tests the store's conformance to the election.LeaseStore contract:
// acquisition and its epochs, renewal, release, expiry, listing and
// watching, argument checks and concurrent acquisition.
func Run(t *testing.T, cfg Config) {
	if cfg.New == nil {
		t.Fatal("electiontest: Config.New is required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Second
	}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s election.LeaseStore, ttl time.Duration)
	}{
		{"AcquireFresh", testAcquireFresh},
		{"AcquireHeld", testAcquireHeld},
		{"AcquireByHolderRenews", testAcquireByHolder},
		{"EpochsStrictlyIncrease", testEpochs},
		{"Renew", testRenew},
		{"Release", testRelease},
		{"Expiry", testExpiry},
		{"RenewKeepsAlive", testRenewKeepsAlive},
		{"List", testList},
		{"Watch", testWatch},
		{"WatchExpiry", testWatchExpiry},
		{"ContextCancelled", testCancelled},
		{"InvalidArguments", testInvalid},
		{"ConcurrentAcquireOneWinner", testConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if cfg.FakeTime {
				synctest.Test(t, func(t *testing.T) { tc.fn(t, cfg.New(t), cfg.TTL) })
				return
			}
			tc.fn(t, cfg.New(t), cfg.TTL)
		})
	}
}

var bg = context.Background()

func okL(t *testing.T) func(election.Lease, error) election.Lease {
	return func(l election.Lease, err error) election.Lease {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return l
	}
}

func okLs(t *testing.T) func([]election.Lease, error) []election.Lease {
	return func(l []election.Lease, err error) []election.Lease {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return l
	}
}

func okE(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func testAcquireFresh(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	if l.Key != "k" || l.Holder != "a" || l.Epoch == 0 || l.TTL != ttl {
		t.Fatalf("Acquire = %+v, want key k, holder a, epoch > 0, ttl %v", l, ttl)
	}
	if g := okL(t)(s.Get(bg, "k")); g != l {
		t.Fatalf("Get = %+v, want %+v", g, l)
	}
	_, err := s.Get(bg, "other")
	wantErr(t, err, election.ErrNoLease)
}

func testAcquireHeld(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	cur, err := s.Acquire(bg, "k", "b", ttl)
	wantErr(t, err, election.ErrLeaseHeld)
	if cur.Holder != "a" || cur.Epoch != l.Epoch {
		t.Fatalf("Acquire by b returned %+v, want a's lease %+v", cur, l)
	}
}

func testAcquireByHolder(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	again := okL(t)(s.Acquire(bg, "k", "a", 2*ttl))
	if again.Epoch != l.Epoch || again.TTL != 2*ttl {
		t.Fatalf("re-Acquire by the holder = %+v, want epoch %d kept and ttl %v", again, l.Epoch, 2*ttl)
	}
}

func testEpochs(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	var last uint64
	for i := range 20 {
		key := fmt.Sprintf("k%d", i%3)
		l := okL(t)(s.Acquire(bg, key, fmt.Sprintf("h%d", i), ttl))
		if l.Epoch <= last {
			t.Fatalf("acquisition %d got epoch %d, not above %d", i, l.Epoch, last)
		}
		last = l.Epoch
		if _, err := s.Renew(bg, key, l.Epoch, ttl); err != nil {
			t.Fatal(err)
		}
		okE(t, s.Release(bg, key, l.Epoch))
	}
}

func testRenew(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	r := okL(t)(s.Renew(bg, "k", l.Epoch, 3*ttl))
	if r.Epoch != l.Epoch || r.Holder != "a" || r.TTL != 3*ttl {
		t.Fatalf("Renew = %+v, want epoch %d, holder a, ttl %v", r, l.Epoch, 3*ttl)
	}
	_, err := s.Renew(bg, "k", l.Epoch+1000, ttl)
	wantErr(t, err, election.ErrLeaseLost)
	_, err = s.Renew(bg, "absent", 1, ttl)
	wantErr(t, err, election.ErrLeaseLost)
}

func testRelease(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	okE(t, s.Release(bg, "k", l.Epoch+1000)) // wrong epoch: no effect
	okL(t)(s.Get(bg, "k"))
	okE(t, s.Release(bg, "k", l.Epoch))
	okE(t, s.Release(bg, "k", l.Epoch)) // idempotent
	_, err := s.Get(bg, "k")
	wantErr(t, err, election.ErrNoLease)
	_, err = s.Renew(bg, "k", l.Epoch, ttl)
	wantErr(t, err, election.ErrLeaseLost)
	b := okL(t)(s.Acquire(bg, "k", "b", ttl))
	if b.Epoch <= l.Epoch {
		t.Fatalf("epoch %d after release not above %d", b.Epoch, l.Epoch)
	}
}

func testExpiry(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	time.Sleep(ttl + ttl/2)
	_, err := s.Get(bg, "k")
	wantErr(t, err, election.ErrNoLease)
	_, err = s.Renew(bg, "k", l.Epoch, ttl)
	wantErr(t, err, election.ErrLeaseLost)
	b := okL(t)(s.Acquire(bg, "k", "b", ttl))
	if b.Holder != "b" || b.Epoch <= l.Epoch {
		t.Fatalf("Acquire after expiry = %+v, want holder b and epoch above %d", b, l.Epoch)
	}
	if ls := okLs(t)(s.List(bg, "k")); len(ls) != 1 || ls[0].Holder != "b" {
		t.Fatalf("List after expiry = %+v, want only b", ls)
	}
}

func testRenewKeepsAlive(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	for range 4 {
		time.Sleep(ttl / 2)
		okL(t)(s.Renew(bg, "k", l.Epoch, ttl))
	}
	if g := okL(t)(s.Get(bg, "k")); g.Epoch != l.Epoch {
		t.Fatalf("lease replaced while renewed: %+v", g)
	}
}

func testList(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	okL(t)(s.Acquire(bg, "q/c", "c", ttl))
	okL(t)(s.Acquire(bg, "other", "x", ttl))
	a := okL(t)(s.Acquire(bg, "q/a", "a", ttl))
	okL(t)(s.Acquire(bg, "q/b", "b", ttl))
	okE(t, s.Release(bg, "q/a", a.Epoch))
	ls := okLs(t)(s.List(bg, "q/"))
	if len(ls) != 2 || ls[0].Holder != "c" || ls[1].Holder != "b" {
		t.Fatalf("List(q/) = %+v, want c then b (epoch order)", ls)
	}
	if ls[0].Epoch >= ls[1].Epoch {
		t.Fatalf("List not in epoch order: %+v", ls)
	}
	if ls := okLs(t)(s.List(bg, "none/")); len(ls) != 0 {
		t.Fatalf("List(none/) = %+v, want empty", ls)
	}
}

func testWatch(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", 100*ttl))
	done := make(chan error, 1)
	go func() { done <- s.Watch(bg, "k", l.Epoch) }()
	select {
	case err := <-done:
		t.Fatalf("Watch returned %v while the lease is live", err)
	case <-time.After(ttl / 2):
	}
	okE(t, s.Release(bg, "k", l.Epoch))
	if err := <-done; err != nil {
		t.Fatalf("Watch after release: %v", err)
	}
	// Already gone, or another epoch: returns at once.
	okE(t, s.Watch(bg, "k", l.Epoch))
	okE(t, s.Watch(bg, "absent", 7))
}

func testWatchExpiry(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", ttl))
	start := time.Now()
	okE(t, s.Watch(bg, "k", l.Epoch))
	if el := time.Since(start); el < ttl/2 {
		t.Fatalf("Watch returned after %v, before the lease of %v expired", el, ttl)
	}
}

func testCancelled(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	l := okL(t)(s.Acquire(bg, "k", "a", 100*ttl))
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := s.Acquire(ctx, "k2", "a", ttl)
	wantErr(t, err, context.Canceled)
	wantErr(t, s.Watch(ctx, "k", l.Epoch), context.Canceled)
	ctx, cancel = context.WithTimeout(bg, ttl/4)
	defer cancel()
	wantErr(t, s.Watch(ctx, "k", l.Epoch), context.DeadlineExceeded)
	if _, err := s.Get(bg, "k2"); !errors.Is(err, election.ErrNoLease) {
		t.Fatalf("a cancelled Acquire left a lease: %v", err)
	}
}

func testInvalid(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	long := string(make([]byte, election.MaxIDLen+1))
	for name, err := range map[string]error{
		"empty key":     second(s.Acquire(bg, "", "a", ttl)),
		"empty holder":  second(s.Acquire(bg, "k", "", ttl)),
		"long key":      second(s.Acquire(bg, long, "a", ttl)),
		"zero ttl":      second(s.Acquire(bg, "k", "a", 0)),
		"negative ttl":  second(s.Renew(bg, "k", 1, -ttl)),
		"renew epoch 0": second(s.Renew(bg, "k", 0, ttl)),
		"release 0":     s.Release(bg, "k", 0),
		"watch 0":       s.Watch(bg, "k", 0),
		"get empty":     second(s.Get(bg, "")),
	} {
		if !errors.Is(err, election.ErrInvalidLease) {
			t.Errorf("%s: error %v, want ErrInvalidLease", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func testConcurrent(t *testing.T, s election.LeaseStore, ttl time.Duration) {
	const n = 16
	var wg sync.WaitGroup
	wins := make(chan election.Lease, n)
	for i := range n {
		wg.Go(func() {
			l, err := s.Acquire(bg, "k", fmt.Sprintf("h%d", i), 100*ttl)
			if err == nil {
				wins <- l
			} else if !errors.Is(err, election.ErrLeaseHeld) {
				t.Errorf("Acquire: %v", err)
			}
		})
	}
	wg.Wait()
	close(wins)
	var got []election.Lease
	for l := range wins {
		got = append(got, l)
	}
	if len(got) != 1 {
		t.Fatalf("%d concurrent acquisitions won, want exactly 1: %+v", len(got), got)
	}
}
