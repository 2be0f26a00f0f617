package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, []string{"-outage", "300ms", "-interval", "2ms", "-open", "50ms"}); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Log("\n" + text)

	// The breaker went through the whole cycle, in this order.
	var states []string
	for _, m := range regexp.MustCompile(`(?m)^\s*\S+\s+(\S+)\s+->\s+(\S+)`).FindAllStringSubmatch(text, -1) {
		if len(states) > 0 && states[len(states)-1] != m[1] {
			t.Fatalf("transition from %s after a transition to %s", m[1], states[len(states)-1])
		}
		if len(states) == 0 {
			states = append(states, m[1])
		}
		states = append(states, m[2])
	}
	got := strings.Join(states, " ")
	if !strings.HasPrefix(got, "closed open half-open") || !strings.HasSuffix(got, "half-open closed") {
		t.Fatalf("state changes %q: want closed, open, half-open, ..., closed", got)
	}

	var calls, ok, failed, fast int
	m := regexp.MustCompile(`(\d+) calls: (\d+) succeeded, (\d+) failed at the server, (\d+) failed fast`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no summary in output")
	}
	for i, p := range []*int{&calls, &ok, &failed, &fast} {
		*p, _ = strconv.Atoi(m[i+1])
	}
	if ok+failed+fast != calls {
		t.Errorf("summary does not add up: %d + %d + %d != %d", ok, failed, fast, calls)
	}
	if fast == 0 || failed < 5 {
		t.Errorf("want calls that failed fast and failures that tripped the breaker; got %d failed, %d failed fast", failed, fast)
	}
	if !strings.Contains(text, "is closed") {
		t.Errorf("the breaker should end closed")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-outage", "0s"}); err == nil {
		t.Fatal("want an error for a zero outage")
	}
	if err := run(context.Background(), &out, []string{"-nope"}); err == nil {
		t.Fatal("want an error for an unknown flag")
	}
}
