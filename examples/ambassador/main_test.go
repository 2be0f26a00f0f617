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

	// The breaker went through the whole cycle, in order.
	var states []string
	for _, m := range regexp.MustCompile(`breaker (\S+)\s+-> (\S+)`).FindAllStringSubmatch(text, -1) {
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

	m := regexp.MustCompile(`(\d+) calls: (\d+) succeeded, (\d+) failed at the upstream after retries, (\d+) failed fast`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("no summary")
	}
	n := make([]int, 4)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	if n[1]+n[2]+n[3] != n[0] {
		t.Errorf("summary does not add up: %v", n)
	}
	if n[3] == 0 {
		t.Error("some calls should fail fast while the breaker is open")
	}
	if !strings.Contains(text, "the breaker is closed") {
		t.Error("the breaker should end closed")
	}
	retries := regexp.MustCompile(`ambassador_retries_total\{name="prices",host="upstream"\} (\d+)`).FindStringSubmatch(text)
	if retries == nil || retries[1] == "0" {
		t.Errorf("the metrics page should show retries: %v", retries)
	}
	if !strings.Contains(text, `ambassador_breaker_transitions_total{name="prices",host="upstream",to="open"}`) {
		t.Error("the metrics page should count breaker transitions")
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
