package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/saga"
)

// TestShopInvariants runs the whole demo over several seeds and checks
// its invariants on what each run observed: every order ends completed
// or compensated (as its card decides); the read models equal a replay of
// the event log; no message is lost; exactly one leader's writes are
// accepted per token, and the deposed leader's write is refused; every
// key is readable after the migration, with every order's final status.
func TestShopInvariants(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			var out bytes.Buffer
			cfg := config{seed: seed, orders: 60, workers: 4, customers: 200, pace: 8 * time.Millisecond}
			rep, err := shop(context.Background(), &out, cfg)
			if err != nil {
				t.Fatalf("shop: %v\n%s", err, out.String())
			}
			if problems := rep.check(); len(problems) > 0 {
				t.Fatalf("invariants broken:\n  %s\n%s", strings.Join(problems, "\n  "), out.String())
			}
			// The figures the invariants rest on are the run's own.
			if got := rep.count(saga.Completed) + rep.count(saga.Compensated); got != cfg.orders {
				t.Errorf("%d orders ended completed or compensated, want %d", got, cfg.orders)
			}
			if rep.count(saga.Compensated) == 0 || rep.released != int64(rep.count(saga.Compensated)) {
				t.Errorf("compensated %d, reservations released %d", rep.count(saga.Compensated), rep.released)
			}
			if rep.events != uint64(2*cfg.orders) {
				t.Errorf("%d events stored, want a placement and an ending per order (%d)", rep.events, 2*cfg.orders)
			}
			if rep.recovered < 1 || rep.shipRepeats < 1 {
				t.Errorf("coordinator crash: %d sagas recovered, %d repeated shipments absorbed", rep.recovered, rep.shipRepeats)
			}
			if rep.fastFails == 0 || rep.providerUnavailable == 0 {
				t.Errorf("outage: %d fast failures, %d 503s", rep.fastFails, rep.providerUnavailable)
			}
			if rep.keysMoved == 0 || float64(rep.keysMoved) > 2*rep.idealMoved {
				t.Errorf("reshard moved %d keys, ideal %.0f", rep.keysMoved, rep.idealMoved)
			}
			for _, want := range []string{"circuit breaker closed -> open", "CRASHES", "REJECTED", "shard-4"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("narration lacks %q", want)
				}
			}
		})
	}
}

// TestShopBadFlags checks that bad flags are refused with an error.
func TestShopBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-orders", "3"}, {"-workers", "0"}, {"-nope"}} {
		if err := run(context.Background(), &bytes.Buffer{}, args); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

// TestCheckCatchesBrokenRuns makes sure the invariant checks can fail:
// each mutation of a good report must be reported.
func TestCheckCatchesBrokenRuns(t *testing.T) {
	var out bytes.Buffer
	rep, err := shop(context.Background(), &out, config{seed: 7, orders: 40, workers: 4, customers: 100, pace: 8 * time.Millisecond})
	if err != nil {
		t.Fatalf("shop: %v\n%s", err, out.String())
	}
	if p := rep.check(); len(p) > 0 {
		t.Fatalf("good run reported broken: %v", p)
	}
	mutations := map[string]func(r *report){
		"order left running": func(r *report) { r.outcomes[0] = saga.Running },
		"read model drifted": func(r *report) { r.totals[statusCompleted]++ },
		"message lost": func(r *report) {
			delete(r.handled["shipping"], 1)
		},
		"two leaders share a token": func(r *report) {
			r.writes = append(r.writes, write{node: "intruder", token: r.writes[len(r.writes)-1].token})
		},
		"key unreadable": func(r *report) { r.unreadable = append(r.unreadable, "customer/c0001") },
		"order missing from its shard": func(r *report) {
			delete(r.customerRecords[r.plans[0].customer], r.plans[0].id)
		},
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			r := clone(rep)
			mutate(r)
			if len(r.check()) == 0 {
				t.Errorf("check missed %s", name)
			}
		})
	}
}

// clone copies the parts of a report the mutations touch.
func clone(r *report) *report {
	c := *r
	c.outcomes = append([]saga.State(nil), r.outcomes...)
	c.totals = map[string]int64{}
	for k, v := range r.totals {
		c.totals[k] = v
	}
	c.handled = map[string]map[uint64]int{}
	for g, m := range r.handled {
		c.handled[g] = map[uint64]int{}
		for k, v := range m {
			c.handled[g][k] = v
		}
	}
	c.writes = append([]write(nil), r.writes...)
	c.unreadable = append([]string(nil), r.unreadable...)
	c.customerRecords = map[string]map[string]string{}
	for k, m := range r.customerRecords {
		c.customerRecords[k] = map[string]string{}
		for o, s := range m {
			c.customerRecords[k][o] = s
		}
	}
	return &c
}
