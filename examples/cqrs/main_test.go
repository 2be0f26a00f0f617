package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	for _, args := range [][]string{
		{"-writers", "3", "-orders", "20", "-replicas", "2", "-seed", "7"},
		{}, // the defaults, as `go run` shows them
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			if err := run(ctx, &out, args); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			got := out.String()
			for _, want := range []string{
				"place o1 for ada, 42.00 on 2025-03-01 -> stored, token 1",
				"place o2 with bad fields -> invalid: true (cqrs: invalid command main.PlaceOrder: customer is required; " +
					`day "March 1st" is not YYYY-MM-DD; amount must be positive)`,
				"place o1 again -> rejected: order already exists: o1",
				"cancel an unknown order -> rejected: no such order: nope",
				"a command nobody handles -> true",
				"replica-1 (not fed yet), no token -> 0 orders for ada: a stale read",
				"replica-1, token 1, 50ms budget -> not yet consistent: true",
				"replica-1 fed, token 1 -> ada has [{o1 4200 false}]",
				"cancel o1 (token 2), ask replica-2 -> ada [{o1 4200 true}], revenue on 2025-03-01 0.00",
				"reads with tokens, 0 older than their token",
				"revenue rebuilt into a shadow copy and swapped while serving: 1 rebuild(s)",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if n := strings.Count(got, "revenue per day matches a replay of the log: true"); n < 2 {
				t.Errorf("%d replicas match the log, want every one", n)
			}
			if strings.Contains(got, "a replay of the log: false") {
				t.Error("a replica disagrees with the log")
			}
			m := regexp.MustCompile(`placed (\d+), cancelled (\d+); (\d+) reads`).FindStringSubmatch(got)
			if m == nil || m[1] != m[3] {
				t.Errorf("every placed order should be read back once: %v", m)
			}
			if !regexp.MustCompile(`matches the log: false\nreconciler: \d+ passes of at most ~3 rows, repaired \[\S+\]; matches the log: true`).MatchString(got) {
				t.Error("the reconciler did not repair the pubsub replica's drift")
			}
			if t.Failed() {
				t.Logf("output:\n%s", got)
			}
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-writers", "0"}, {"-orders", "0"}, {"-replicas", "1"}, {"-nope"}} {
		if err := run(context.Background(), &bytes.Buffer{}, args); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
