package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, []string{"-tellers", "4", "-deposits", "10"}); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"alice opens with 10000 -> balance 10000 (version 2)",
		"opening alice again -> rejected",
		"bob withdraws 8000 -> rejected: insufficient funds: balance 5000, asked 8000",
		"bob withdraws 3000 -> balance 2000 (version 3)",
		"alice -> bob 6000: alice 8000 (version 4), bob 8000 (version 4)",
		"bob -> alice 50000 -> rejected: insufficient funds: balance 8000, asked 50000; log still has 8 events",
		"teller B withdraws 2500 -> conflict: expected version 4, stream at version 5",
		"teller B withdraws 2500 with retry -> ok after 2 attempts: balance 5700 (version 7)",
		"4 tellers x 10 deposits of 1 into bob: balance 8000 -> 8040 (want 8040)",
		"alice as of version 3: balance 14000",
		"alice as of version 4: balance 8000",
		"alice now (version 7): balance 5700",
		"alice as of the instant of her transfer: balance 8000 (version 4)",
		"alice: rebuilt 5700, live 5700, aggregate 5700",
		"bob: rebuilt 8040, live 8040, aggregate 8040",
		"equal: true",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-tellers", "0"}, {"-deposits", "-1"}, {"-nope"}} {
		if err := run(context.Background(), &bytes.Buffer{}, args); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
