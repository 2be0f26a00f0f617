package saga_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/distkit/distkit/saga"
)

var errNoAvailability = errors.New("no availability")

// service is an idempotent fake step service: it applies each action and
// compensation through a MemoryBarrier and counts the effects that took
// place, so tests can check exactly-once.
type service struct {
	name    string
	barrier saga.MemoryBarrier

	mu        sync.Mutex
	booked    map[string]int // saga ID -> action effects
	cancelled map[string]int // saga ID -> compensation effects
	events    *eventLog
}

func newService(name string, events *eventLog) *service {
	return &service{name: name, booked: map[string]int{}, cancelled: map[string]int{}, events: events}
}

func (s *service) book(ctx context.Context, key saga.Key, fail bool) ([]byte, error) {
	return s.barrier.Action(ctx, key, func(context.Context) ([]byte, error) {
		if fail {
			return nil, saga.Fail(fmt.Errorf("%s: %w", s.name, errNoAvailability))
		}
		s.mu.Lock()
		s.booked[key.SagaID]++
		s.mu.Unlock()
		s.events.add(s.name + " booked")
		return []byte(s.name + "#" + key.SagaID), nil
	})
}

func (s *service) cancel(ctx context.Context, key saga.Key) error {
	_, err := s.barrier.Compensate(ctx, key, func(context.Context) error {
		s.mu.Lock()
		s.cancelled[key.SagaID]++
		s.mu.Unlock()
		s.events.add(s.name + " cancelled")
		return nil
	})
	return err
}

func (s *service) counts(sagaID string) (booked, cancelled int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.booked[sagaID], s.cancelled[sagaID]
}

// eventLog records what happened, in order, for tests of ordering.
type eventLog struct {
	mu sync.Mutex
	ev []string
}

func (l *eventLog) add(e string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ev)
}

func (l *eventLog) index(e string) int { return slices.Index(l.list(), e) }

// step returns a step that books with svc (failing with a business error
// when fail says so) and cancels with svc.
func step(svc *service, deps []string, fail func(sagaID string) bool) saga.Step {
	return saga.Step{
		Name:      svc.name,
		DependsOn: deps,
		Action: func(ctx context.Context, c *saga.Call) ([]byte, error) {
			return svc.book(ctx, c.Key(), fail != nil && fail(c.SagaID))
		},
		Compensate: func(ctx context.Context, c *saga.Call) error { return svc.cancel(ctx, c.Key()) },
	}
}

func never(string) bool  { return false }
func always(string) bool { return true }

func mustDefinition(t testing.TB, name string, steps ...saga.Step) *saga.Definition {
	t.Helper()
	d, err := saga.NewDefinition(name, steps...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustCoordinator(t testing.TB, store saga.Store, cfg saga.Config, defs ...*saga.Definition) *saga.Coordinator {
	t.Helper()
	c, err := saga.New(store, defs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fastPolicy retries quickly and without jitter.
var fastPolicy = saga.Policy{MaxAttempts: 3, Backoff: saga.Backoff{Initial: 1, Max: 1, Jitter: -1}}

// recordingHandler keeps every log record, for checks on log attributes.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func dumpLog(t testing.TB, store saga.Store, id string) {
	t.Helper()
	recs, err := store.Load(context.Background(), id)
	if err != nil {
		t.Logf("log of %s: %v", id, err)
		return
	}
	for _, r := range recs {
		t.Logf("  %s v%d %-22s step=%-6s attempt=%d state=%s err=%q", id, r.Version, r.Type, r.Step, r.Attempt, r.State, r.Error)
	}
}
