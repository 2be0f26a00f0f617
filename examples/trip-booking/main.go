// Command trip-booking shows an orchestrated saga: book a flight, then a
// hotel and a car in parallel, each with its own service. In the first
// trip the car service has no cars left: the hotel and then the flight are
// compensated, in reverse order. In the second trip the coordinator
// crashes while the car is being rented; a new coordinator, reading the
// same durable saga log, resumes the trip, and the car service's barrier
// makes sure that the retried rental does not rent a second car. The saga
// log is an eventsource stream per trip, printed at the end as the audit
// trail. It stops on its own.
//
//	go run ./examples/trip-booking [-v]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distkit/distkit/eventsource"
	"github.com/distkit/distkit/saga"
)

func main() {
	if err := run(context.Background(), os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "trip-booking:", err)
		os.Exit(1)
	}
}

// printer serializes output from steps running in parallel and from the
// coordinators' loggers.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Write(b)
}

func (p *printer) printf(format string, args ...any) { fmt.Fprintf(p, format+"\n", args...) }

// service is a booking service with its own in-memory state, guarded by a
// saga barrier so each request key takes effect once.
type service struct {
	name    string
	out     *printer
	barrier saga.MemoryBarrier
	noStock func(tripID string) bool
	onRent  func(tripID string) // called after a booking took effect

	mu       sync.Mutex
	next     int
	bookings map[string]string // trip -> booking reference, while booked
	effects  map[string]int    // trip -> bookings made minus cancellations
	requests atomic.Int64
}

func newService(name string, out *printer) *service {
	return &service{name: name, out: out, bookings: map[string]string{}, effects: map[string]int{}}
}

// book handles a booking request carrying the saga's idempotency key.
func (s *service) book(ctx context.Context, key saga.Key) ([]byte, error) {
	s.requests.Add(1)
	fresh := false
	ref, err := s.barrier.Action(ctx, key, func(context.Context) ([]byte, error) {
		if s.noStock != nil && s.noStock(key.SagaID) {
			return nil, saga.Fail(fmt.Errorf("%s: none left", s.name))
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.next++
		ref := fmt.Sprintf("%s-%d", s.name, s.next)
		s.bookings[key.SagaID] = ref
		s.effects[key.SagaID]++
		fresh = true
		return []byte(ref), nil
	})
	switch {
	case err != nil:
		s.out.printf("  %-6s %s refused: %v", s.name, key.SagaID, err)
	case fresh:
		s.out.printf("  %-6s %s booked %s (key %s)", s.name, key.SagaID, ref, key)
		if s.onRent != nil {
			s.onRent(key.SagaID)
		}
	default:
		s.out.printf("  %-6s %s repeated request %s: returning %s, nothing booked twice", s.name, key.SagaID, key, ref)
	}
	return ref, err
}

// cancel handles a compensation request.
func (s *service) cancel(ctx context.Context, key saga.Key) error {
	s.requests.Add(1)
	applied, err := s.barrier.Compensate(ctx, key, func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.out.printf("  %-6s %s cancelled %s", s.name, key.SagaID, s.bookings[key.SagaID])
		delete(s.bookings, key.SagaID)
		s.effects[key.SagaID]--
		return nil
	})
	if err == nil && !applied {
		s.out.printf("  %-6s %s nothing to cancel (recorded)", s.name, key.SagaID)
	}
	return err
}

func (s *service) step(deps ...string) saga.Step {
	return saga.Step{
		Name:       s.name,
		DependsOn:  deps,
		Action:     func(ctx context.Context, c *saga.Call) ([]byte, error) { return s.book(ctx, c.Key()) },
		Compensate: func(ctx context.Context, c *saga.Call) error { return s.cancel(ctx, c.Key()) },
	}
}

var errCrashed = errors.New("coordinator process crashed")

// crashable is the saga log as one coordinator process sees it: durable
// underneath, unreachable once the process has crashed.
type crashable struct {
	saga.Store
	down atomic.Bool
}

func (c *crashable) Append(ctx context.Context, id string, expected uint64, recs ...saga.Record) (uint64, error) {
	if c.down.Load() {
		return 0, errCrashed
	}
	return c.Store.Append(ctx, id, expected, recs...)
}

func run(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("trip-booking", flag.ContinueOnError)
	fs.SetOutput(w)
	verbose := fs.Bool("v", false, "print the coordinators' logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := &printer{w: w}
	w = out // everything below writes through the printer
	var logger *slog.Logger
	if *verbose {
		logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	flight, hotel, car := newService("flight", out), newService("hotel", out), newService("car", out)
	car.noStock = func(trip string) bool { return trip == "trip-1" }
	trip, err := saga.NewDefinition("trip", flight.step(), hotel.step("flight"), car.step("flight"))
	if err != nil {
		return err
	}

	// The durable log: one eventsource stream per trip. Each coordinator
	// process opens its own saga.EventStore over it.
	events := eventsource.NewMemoryStore()
	open := func(logger *slog.Logger) (*saga.Coordinator, *crashable, error) {
		s, err := saga.NewEventStore(events, saga.EventStoreConfig{})
		if err != nil {
			return nil, nil, err
		}
		cs := &crashable{Store: s}
		c, err := saga.New(cs, []*saga.Definition{trip}, saga.Config{Logger: logger})
		return c, cs, err
	}

	fmt.Fprintln(w, "== trip-1: flight, then hotel and car in parallel; no cars left")
	coordA, logA, err := open(logger)
	if err != nil {
		return err
	}
	st, err := coordA.Execute(ctx, "trip", "trip-1", []byte(`{"to":"Lisbon"}`))
	if !errors.Is(err, saga.ErrCompensated) {
		return fmt.Errorf("trip-1: want a compensated saga, got %v", err)
	}
	fmt.Fprintf(w, "trip-1 %s: %v\n", st.State, err)
	printSteps(w, st)

	fmt.Fprintln(w, "\n== trip-2: the coordinator crashes while the car is being rented")
	car.onRent = func(trip string) {
		if trip == "trip-2" && !logA.down.Load() {
			out.printf("  !! coordinator A crashes after the car service rented, before the result is logged")
			logA.down.Store(true)
		}
	}
	_, err = coordA.Execute(ctx, "trip", "trip-2", []byte(`{"to":"Porto"}`))
	if err == nil || !errors.Is(err, errCrashed) {
		return fmt.Errorf("trip-2: want the crash to interrupt the saga, got %v", err)
	}
	fmt.Fprintf(w, "coordinator A: %v\n", err)

	coordB, _, err := open(logger)
	if err != nil {
		return err
	}
	left, err := coordB.Status(ctx, "trip-2")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "coordinator B finds trip-2 %s in the log:\n", left.State)
	printSteps(w, left)
	resumed, err := coordB.Recover(ctx)
	if err != nil {
		return err
	}
	for _, st := range resumed {
		fmt.Fprintf(w, "coordinator B resumed %s: %s\n", st.ID, st.State)
		printSteps(w, st)
	}

	fmt.Fprintln(w, "\n== effects per service (bookings minus cancellations; each request key applied once)")
	for _, s := range []*service{flight, hotel, car} {
		s.mu.Lock()
		fmt.Fprintf(w, "%-6s trip-1=%d trip-2=%d (requests received: %d)\n", s.name, s.effects["trip-1"], s.effects["trip-2"], s.requests.Load())
		s.mu.Unlock()
	}

	fmt.Fprintln(w, "\n== audit trail: the eventsource stream of trip-2")
	for ev, err := range events.ReadStream(ctx, "saga-trip-2", eventsource.StreamQuery{}) {
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "  "+strings.TrimSpace(fmt.Sprintf("v%-2d %s %s", ev.Version, ev.Type, stepOf(ev.Data))))
	}
	return nil
}

func printSteps(w io.Writer, st saga.Status) {
	for _, s := range st.Steps {
		line := fmt.Sprintf("    %-6s %-12s attempts=%d", s.Name, s.State, s.Attempts)
		if s.CompensationAttempts > 0 {
			line += fmt.Sprintf(" compensations=%d", s.CompensationAttempts)
		}
		if len(s.Output) > 0 {
			line += " ref=" + string(s.Output)
		}
		fmt.Fprintln(w, line)
	}
}

// stepOf extracts the step name from a stored record, for display.
func stepOf(data []byte) string {
	s := string(data)
	i := strings.Index(s, `"step":"`)
	if i < 0 {
		return ""
	}
	s = s[i+len(`"step":"`):]
	return s[:strings.IndexByte(s, '"')]
}
