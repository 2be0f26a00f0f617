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
	if err := run(context.Background(), &out, []string{"-nodes", "5", "-kill", "node-3"}); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Log("\n" + s)
	// The victim goes suspect, then dead, then alive in a new incarnation,
	// in that order.
	var last int
	for _, want := range []string{
		"all 5 nodes alive",
		"killing node-3",
		"node-3: alive -> suspect",
		"node-3: suspect -> dead",
		"restarting node-3",
		"node-3: dead -> alive",
		"node-3 is back",
	} {
		i := strings.Index(s[last:], want)
		if i < 0 {
			t.Fatalf("output lacks %q after offset %d", want, last)
		}
		last += i + len(want)
	}
	// phi was printed while the victim was silent, and grew.
	phis := regexp.MustCompile(`node-3 phi +([0-9.]+)`).FindAllStringSubmatch(s, -1)
	if len(phis) < 2 {
		t.Fatalf("expected phi to be printed as it grows, got %d readings", len(phis))
	}
	first, _ := strconv.ParseFloat(phis[0][1], 64)
	lastPhi, _ := strconv.ParseFloat(phis[len(phis)-1][1], 64)
	if lastPhi <= first || lastPhi < 8 {
		t.Errorf("phi did not grow past the threshold: first %v, last %v", first, lastPhi)
	}
	if strings.Contains(s, "forged") && !strings.Contains(s, " 0 forged") {
		t.Errorf("signed heartbeats were rejected:\n%s", s)
	}
	if strings.Count(s, "node-3: dead -> alive") != 1 {
		t.Errorf("the victim should come back exactly once")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, []string{"-kill", "node-9"}); err == nil {
		t.Fatal("an unknown victim must be an error")
	}
	if err := run(context.Background(), &out, []string{"-nodes", "0"}); err == nil {
		t.Fatal("zero nodes must be an error")
	}
}
