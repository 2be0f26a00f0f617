package circuitbreaker

import (
	"testing"
)

// TestNotifierDeliversInGenerationOrder checks the ordering rule
// directly: a transition queued before the one preceding it waits for it.
func TestNotifierDeliversInGenerationOrder(t *testing.T) {
	var got []State
	s := &settings{Config: Config{OnStateChange: func(tr Transition) { got = append(got, tr.To) }}}
	var n notifier
	n.next = 1
	n.publish(s, 2, Transition{To: StateHalfOpen}, false)
	if len(got) != 0 {
		t.Fatalf("generation 2 delivered before generation 1: %v", got)
	}
	n.publish(s, 3, Transition{To: StateClosed}, true) // silent: a same-state swap
	n.publish(s, 1, Transition{To: StateOpen}, false)
	n.publish(s, 4, Transition{To: StateOpen}, false)
	want := []State{StateOpen, StateHalfOpen, StateOpen}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
