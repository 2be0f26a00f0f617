package eventsource

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseV7(t *testing.T) {
	id := NewID()
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"NewID", id, true},
		{"Canonical", "01890a5d-ac96-774b-bcce-b302099a8057", true},
		{"Uppercase", strings.ToUpper(id), false},
		{"Version4", "01890a5d-ac96-474b-bcce-b302099a8057", false},
		{"WrongVariant", "01890a5d-ac96-774b-7cce-b302099a8057", false},
		{"NoDashes", "01890a5dac96774bbcceb302099a8057", false},
		{"DashMoved", "01890a5d-ac967-74b-bcce-b302099a8057", false},
		{"NotHex", "01890a5d-ac96-774b-bcce-b302099a805g", false},
		{"Short", "01890a5d-ac96-774b-bcce-b302099a805", false},
		{"Empty", "", false},
	}
	for _, tc := range tests {
		if _, ok := parseV7(tc.id); ok != tc.ok {
			t.Errorf("%s: parseV7(%q) ok = %v, want %v", tc.name, tc.id, ok, tc.ok)
		}
	}
}

// Keys order exactly as the strings do.
func TestV7KeyOrderMatchesStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = newID(time.UnixMilli(int64(r.IntN(5))))
		if i%7 == 0 {
			ids[i] = ids[r.IntN(i+1)] // some equal pairs
		}
	}
	for _, a := range ids {
		for _, b := range ids[:50] {
			ka, _ := parseV7(a)
			kb, _ := parseV7(b)
			if got, want := ka.cmp(kb), strings.Compare(a, b); got != want {
				t.Fatalf("cmp(%s, %s) = %d, strings.Compare = %d", a, b, got, want)
			}
		}
	}
}

func TestNewIDIsMonotonicAcrossGoroutines(t *testing.T) {
	const goroutines, each = 8, 2000
	got := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				got[g] = append(got[g], NewID())
			}
		})
	}
	wg.Wait()
	seen := make(map[string]bool)
	for g, ids := range got {
		if !slices.IsSorted(ids) {
			t.Fatalf("goroutine %d's IDs are not increasing", g)
		}
		for _, id := range ids {
			if _, ok := parseV7(id); !ok {
				t.Fatalf("NewID returned %q, not a canonical version 7 UUID", id)
			}
			if seen[id] {
				t.Fatalf("NewID returned %q twice", id)
			}
			seen[id] = true
		}
	}
	// More IDs than a millisecond's sequence holds, and a clock that steps
	// back, still give increasing IDs.
	now := time.Now()
	prev := newID(now)
	for i := range 10_000 {
		at := now
		if i%100 == 0 {
			at = now.Add(-time.Second)
		}
		id := newID(at)
		if id <= prev {
			t.Fatalf("newID went from %s to %s", prev, id)
		}
		prev = id
	}
}

// The index against a plain map, with UUIDs arriving in order, a little out
// of order, very late, and mixed with other IDs.
func TestIDIndexAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var x idIndex
	x.init()
	model := make(map[string]uint64)
	byPos := []string{""}
	idAt := func(p uint64) string { return byPos[p] }
	fresh := make([]string, 0, 4000)
	for range 4000 {
		fresh = append(fresh, NewID())
	}
	var pending []string
	for len(fresh) > 0 || len(pending) > 0 {
		var id string
		switch n := r.IntN(10); {
		case n < 5 && len(fresh) > 0: // in order
			id, fresh = fresh[0], fresh[1:]
		case n < 7 && len(fresh) > 1: // hold one back for a while
			pending = append(pending, fresh[0])
			id, fresh = fresh[1], fresh[2:]
		case n < 9 && len(pending) > 0: // release a held-back one (maybe very late)
			i := r.IntN(len(pending))
			id = pending[i]
			pending = slices.Delete(pending, i, i+1)
		default:
			id = fmt.Sprintf("custom-%d", r.IntN(1_000_000))
			if r.IntN(4) == 0 {
				id = strings.ToUpper(NewID()) // looks like a UUID, is not canonical
			}
		}
		if _, dup := model[id]; dup {
			continue
		}
		if _, found := x.lookup(makeIDKey(id), idAt); found {
			t.Fatalf("lookup(%q) found an ID never inserted", id)
		}
		pos := uint64(len(byPos))
		byPos = append(byPos, id)
		x.insert(makeIDKey(id), pos)
		model[id] = pos
		if r.IntN(20) == 0 { // spot-check everything
			for id, want := range model {
				if got, ok := x.lookup(makeIDKey(id), idAt); !ok || got != want {
					t.Fatalf("lookup(%q) = %d, %v; want %d", id, got, ok, want)
				}
			}
		}
	}
	for id, want := range model {
		if got, ok := x.lookup(makeIDKey(id), idAt); !ok || got != want {
			t.Fatalf("lookup(%q) = %d, %v; want %d", id, got, ok, want)
		}
	}
	if !slices.IsSortedFunc(x.sorted, func(a, b v7entry) int { return a.key.cmp(b.key) }) {
		t.Fatal("sorted array out of order")
	}
	if !x.hashedV7 {
		t.Fatal("no UUID arrived late enough to reach the hash map: the test lost its point")
	}
	if len(x.sorted) < 3000 {
		t.Fatalf("only %d UUIDs in the sorted array", len(x.sorted))
	}
}
