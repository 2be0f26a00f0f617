package eventsource

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The ID index keys on a 64-bit hash; a collision between two different
// IDs must neither lose an ID nor confuse one with the other. Collisions
// cannot be found by search, so this test plants one.
func TestMemoryStoreIDHashCollision(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	first, err := s.Append(ctx, "a-1", NoStream, EventData{ID: "x1", Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.ids.hashed[s.ids.hash("x2")] = first.Position // x2 now "collides" with x1
	s.mu.Unlock()

	second, err := s.Append(ctx, "a-1", Exact(1), EventData{ID: "x2", Type: "t"})
	if err != nil {
		t.Fatalf("append with a colliding ID: %v", err)
	}
	if second.Position != 2 {
		t.Fatalf("got %+v", second)
	}
	again, err := s.Append(ctx, "a-1", Exact(1), EventData{ID: "x2", Type: "t"})
	if err != nil || again != second {
		t.Fatalf("re-send of the colliding ID: %+v, %v; want %+v", again, err, second)
	}
	if _, err := s.Append(ctx, "b-1", Any, EventData{ID: "x2", Type: "t"}); !errors.Is(err, ErrDuplicateEventID) {
		t.Fatalf("reuse of the colliding ID: %v, want ErrDuplicateEventID", err)
	}
	again, err = s.Append(ctx, "a-1", Any, EventData{ID: "x1", Type: "t"})
	if err != nil || again != first {
		t.Fatalf("re-send of the first ID: %+v, %v; want %+v", again, err, first)
	}
	if h, _ := s.Head(ctx); h != 2 {
		t.Fatalf("head %d, want 2", h)
	}
}

// Event times never go backwards along the log, even if the wall clock
// does.
func TestMemoryStoreClockGoesBack(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	if _, err := s.Append(ctx, "a-1", Any, EventData{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	future := time.Now().UTC().Add(time.Hour)
	s.mu.Lock()
	s.lastTime = future // as if the clock had been an hour ahead
	s.mu.Unlock()
	res, err := s.Append(ctx, "a-1", Any, EventData{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Time.Equal(future) {
		t.Fatalf("time %v, want it clamped to %v", res.Time, future)
	}
}
