package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, []string{"-nodes", "5"}); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Log("\n" + s)
	var last int
	for _, want := range []string{"5 nodes;", "stalls for 1s", "fence REJECTED", "healing the network", "after the heal", "killing", "done:"} {
		i := strings.Index(s[last:], want)
		if i < 0 {
			t.Fatalf("output lacks %q after offset %d", want, last)
		}
		last += i + len(want)
	}
	// Every announced token is greater than the one before.
	var prev uint64
	for _, m := range regexp.MustCompile(`leads with token (\d+)`).FindAllStringSubmatch(s, -1) {
		tok, _ := strconv.ParseUint(m[1], 10, 64)
		if tok < prev {
			t.Errorf("token %d announced after %d", tok, prev)
		}
		prev = tok
	}
	// The refused write came from the first leader, with its own token.
	first := regexp.MustCompile(`(node-\d) leads with token (\d+)`).FindStringSubmatch(s)
	if !strings.Contains(s, "REJECTED a write from "+first[1]+" with token "+first[2]) {
		t.Errorf("the stalled first leader's write was not the one refused")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, []string{"-nodes", "9"}); err == nil {
		t.Fatal("9 nodes must be an error")
	}
}
