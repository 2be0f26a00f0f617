package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/distkit/distkit/circuitbreaker"
	"github.com/distkit/distkit/saga"
)

// report is what a run observed: the figures of the summary and the raw
// data the invariants are checked against.
type report struct {
	cfg config

	// Orders and checkout.
	plans                                 []plan
	outcomes                              []saga.State // final saga state per plan
	placed                                int
	recovered                             int
	reserved, released, shipped           int64
	shipRepeats                           int64
	authorised, declined                  int
	providerRequests, providerUnavailable int
	payCalls, fastFails                   int64
	breaker                               []circuitbreaker.State

	// Event store and read models.
	events         uint64
	ryw            bool
	totals         map[string]int64
	served         map[string][]OrderRow
	replayed       map[string][]OrderRow
	replayedTotals map[string]int64

	// Pubsub.
	handled                              map[string]map[uint64]int
	deadLetters                          int
	delivered, redelivered, deadLettered uint64
	paymentBusy                          int64

	// Election and fencing.
	leaders                      []string
	detectDead, failover         time.Duration
	terms                        int // leaderships granted
	writes                       []write
	fenceAccepted, fenceRejected uint64

	// Sharding.
	keys, keysMoved     int
	idealMoved          float64
	placedDuringReshard int64
	balance             string
	customerRecords     map[string]map[string]string
	unreadable          []string
	kvFailures          int64
}

func (r *report) count(s saga.State) int {
	n := 0
	for _, o := range r.outcomes {
		if o == s {
			n++
		}
	}
	return n
}

// breakerCycle reports whether the breaker opened and later closed again.
func (r *report) breakerCycle() bool {
	i := slices.Index(r.breaker, circuitbreaker.StateOpen)
	return i >= 0 && slices.Contains(r.breaker[i:], circuitbreaker.StateClosed)
}

func (r *report) tokens() []uint64 {
	var out []uint64
	for _, w := range r.writes {
		if len(out) == 0 || out[len(out)-1] != w.token {
			out = append(out, w.token)
		}
	}
	return out
}

func (r *report) print(w io.Writer) {
	declinedPlans := 0
	for _, p := range r.plans {
		if p.declined {
			declinedPlans++
		}
	}
	var dup int
	for _, g := range groups {
		for _, n := range r.handled[g] {
			dup += n - 1
		}
	}
	rows := [][3]string{
		{"orders", "placed / completed / compensated", fmt.Sprintf("%d / %d / %d", r.placed, r.count(saga.Completed), r.count(saga.Compensated))},
		{"", "cards declined by the provider", fmt.Sprint(r.declined)},
		{"eventsource", "events stored", fmt.Sprint(r.events)},
		{"cqrs", "read-your-writes query saw its write", fmt.Sprint(r.ryw)},
		{"", "totals read model (placed/completed/compensated)", fmt.Sprintf("%d / %d / %d", r.totals[statusPlaced], r.totals[statusCompleted], r.totals[statusCompensated])},
		{"", "read models equal a replay of the log", fmt.Sprint(equalRows(r.served, r.replayed) && maps.Equal(r.totals, r.replayedTotals))},
		{"saga", "stock reserved / released", fmt.Sprintf("%d / %d", r.reserved, r.released)},
		{"", "parcels shipped / repeated ship requests absorbed", fmt.Sprintf("%d / %d", r.shipped, r.shipRepeats)},
		{"", "sagas resumed by coordinator B after the crash", fmt.Sprint(r.recovered)},
		{"ambassador", "payment calls / provider requests (with retries)", fmt.Sprintf("%d / %d", r.payCalls, r.providerRequests)},
		{"", "provider 503s / calls failed fast (breaker open)", fmt.Sprintf("%d / %d", r.providerUnavailable, r.fastFails)},
		{"circuitbreaker", "transitions", joinStates(r.breaker)},
		{"pubsub", "events published + poison messages", fmt.Sprintf("%d + 1", r.events)},
		{"", "delivered / redelivered (3 groups)", fmt.Sprintf("%d / %d", r.delivered, r.redelivered)},
		{"", "dead-lettered / seen on dead.orders", fmt.Sprintf("%d / %d", r.deadLettered, r.deadLetters)},
		{"", "duplicate handlings", fmt.Sprint(dup)},
		{"election", "leader before / after the failover", strings.Join(r.leaders, ", ")},
		{"", "leader changes / terms that wrote", fmt.Sprintf("%d / %d", r.terms-1, len(r.tokens()))},
		{"heartbeat", "leader cut off -> declared dead / new leader", fmt.Sprintf("%v / %v", r.detectDead.Round(time.Millisecond), r.failover.Round(time.Millisecond))},
		{"fence", "writes accepted / rejected", fmt.Sprintf("%d / %d", r.fenceAccepted, r.fenceRejected)},
		{"shard", "keys moved to shard-4 / ideal", fmt.Sprintf("%d / %.0f (%.2fx)", r.keysMoved, r.idealMoved, float64(r.keysMoved)/r.idealMoved)},
		{"", "orders placed during the migration", fmt.Sprint(r.placedDuringReshard)},
		{"", "balance after", strings.TrimPrefix(r.balance, "keys per shard: ")},
		{"", "unreadable keys / failed reads", fmt.Sprintf("%d / %d", len(r.unreadable), r.kvFailures)},
	}
	fmt.Fprintf(w, "\n== summary (seed %d)\n", r.cfg.seed)
	for _, row := range rows {
		fmt.Fprintf(w, "%-15s %-50s %s\n", row[0], row[1], row[2])
	}
}

func joinStates(ss []circuitbreaker.State) string {
	parts := []string{"closed"}
	for _, s := range ss {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, " -> ")
}

func equalRows(a, b map[string][]OrderRow) bool {
	return maps.EqualFunc(a, b, func(x, y []OrderRow) bool { return slices.Equal(x, y) })
}

// check returns every invariant the run broke.
func (r *report) check() []string {
	var bad []string
	fail := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }

	// Every order ends completed or compensated, everywhere.
	if r.placed != len(r.plans) {
		fail("placed %d orders of %d", r.placed, len(r.plans))
	}
	for i, p := range r.plans {
		want := saga.Completed
		if p.declined {
			want = saga.Compensated
		}
		if r.outcomes[i] != want {
			fail("order %s: saga %v, want %v", p.id, r.outcomes[i], want)
		}
	}
	if int(r.reserved-r.released) != r.count(saga.Completed) || int(r.shipped) != r.count(saga.Completed) {
		fail("stock held %d and parcels %d, want one per completed order (%d)", r.reserved-r.released, r.shipped, r.count(saga.Completed))
	}

	// The read models equal a replay of the log, and agree with the sagas.
	if !equalRows(r.served, r.replayed) || !maps.Equal(r.totals, r.replayedTotals) {
		fail("read models differ from a replay of the event log")
	}
	if r.totals[statusCompleted] != int64(r.count(saga.Completed)) || r.totals[statusCompensated] != int64(r.count(saga.Compensated)) || r.totals[statusPlaced] != 0 {
		fail("totals read model %v disagrees with the sagas", r.totals)
	}
	if !r.ryw {
		fail("the query with a consistency token did not see its write")
	}

	// No message lost: every group handled every event; the poison
	// message reached the dead-letter topic from every group.
	for _, g := range groups {
		for pos := uint64(1); pos <= r.events; pos++ {
			if r.handled[g][pos] == 0 {
				fail("group %s never handled event %d", g, pos)
				break
			}
		}
	}
	if r.deadLetters != len(groups) || r.deadLettered != uint64(len(groups)) {
		fail("dead letters: %d seen, %d counted, want %d", r.deadLetters, r.deadLettered, len(groups))
	}

	// Exactly one leader's writes per token, tokens never going back, and
	// the deposed leader refused.
	owner := map[uint64]string{}
	var last uint64
	for _, w := range r.writes {
		if o, ok := owner[w.token]; ok && o != w.node {
			fail("token %d used by both %s and %s", w.token, o, w.node)
		}
		owner[w.token] = w.node
		if w.token < last {
			fail("token %d accepted after %d", w.token, last)
		}
		last = w.token
	}
	if len(r.tokens()) < 2 || r.fenceRejected < 1 || len(r.leaders) < 2 {
		fail("no failover seen: tokens %v, %d rejected writes", r.tokens(), r.fenceRejected)
	}

	// Every key readable after the migration, with every order's final
	// status.
	if len(r.unreadable) > 0 || r.kvFailures > 0 {
		fail("unreadable keys %v, %d failed reads", r.unreadable, r.kvFailures)
	}
	for i, p := range r.plans {
		want := statusCompleted
		if r.outcomes[i] == saga.Compensated {
			want = statusCompensated
		}
		if got := r.customerRecords[p.customer][p.id]; got != want {
			fail("customer %s: order %s is %q in the sharded store, want %q", p.customer, p.id, got, want)
		}
	}

	// The outage was ridden out.
	if !r.breakerCycle() {
		fail("breaker transitions %v: want open, then closed", r.breaker)
	}
	return bad
}
