package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, []string{"-orders", "200", "-publishers", "3"}); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"3 publishers sent 600 orders", "billing", "shipping", "fraud", "ok: every order billed and shipped once"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// Orders 7, 57, ... fail permanently and 42, 142, ... exhaust their
	// attempts: 12 + 6 of 600 end in the dead-letter topic.
	if !strings.Contains(s, "582 fraud-checked, 18 in dead.orders") {
		t.Errorf("unexpected fraud outcome:\n%s", s)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	if err := run(t.Context(), &bytes.Buffer{}, []string{"-orders", "x"}); err == nil {
		t.Fatal("run accepted a bad flag")
	}
}
