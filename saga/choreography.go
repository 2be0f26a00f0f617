package saga

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distkit/distkit/pubsub"
)

// HeaderSagaID is the message header that carries the saga ID of a
// choreographed saga's events. [Publish] sets it, with the correlation ID
// ([pubsub.HeaderCorrelationID]) set to the same value.
const HeaderSagaID = "saga-id"

// Event is an event of a choreographed saga, as a participant receives it.
type Event struct {
	// SagaID is the saga the event belongs to.
	SagaID string
	// Topic is the topic the event was published to: its type.
	Topic string
	// Payload is the event's body.
	Payload []byte
	// Message is the delivered message, headers included.
	Message *pubsub.Message
}

// Emit is an event a participant publishes once its local transaction is
// done: the next event of the saga, or a compensating one.
type Emit struct {
	// Topic is where to publish.
	Topic string
	// Payload is the event's body.
	Payload []byte
}

// Publish publishes payload to topic as an event of saga sagaID: the
// message carries the saga ID in [HeaderSagaID] and as its correlation ID,
// and its ID is derived from the saga ID, the topic and the message being
// handled (if ctx is a handler's context), so that publishing the same
// event again (a retry) is dropped by the broker's publish deduplication.
// It returns an error wrapping [ErrNoSagaID] for an empty sagaID, and
// otherwise what pub.Publish returns.
func Publish(ctx context.Context, pub pubsub.Publisher, topic, sagaID string, payload []byte) error {
	cause := ""
	if m := pubsub.MessageFromContext(ctx); m != nil {
		cause = m.ID
	}
	return publish(ctx, pub, topic, sagaID, payload, sagaID+"/"+topic+"/"+cause)
}

func publish(ctx context.Context, pub pubsub.Publisher, topic, sagaID string, payload []byte, id string) error {
	if sagaID == "" {
		return fmt.Errorf("%w: publishing to %q", ErrNoSagaID, topic)
	}
	m := &pubsub.Message{ID: id, Key: sagaID, Payload: payload, Headers: map[string]string{
		HeaderSagaID:               sagaID,
		pubsub.HeaderCorrelationID: sagaID,
	}}
	return pub.Publish(pubsub.ContextWithCorrelationID(ctx, sagaID), topic, m)
}

// ParticipantConfig configures a [Participant].
type ParticipantConfig struct {
	// Name identifies the participant (the service): it prefixes the keys
	// under which handled events are remembered. It must not be empty.
	Name string
	// Publisher publishes the events the participant emits. It must not
	// be nil.
	Publisher pubsub.Publisher
	// Dedup remembers which events the participant has handled. nil means
	// a new [pubsub.MemoryDedupStore], which remembers for this process
	// only; share a durable store between the replicas of a service.
	Dedup pubsub.DedupStore
	// DedupTTL and DedupLease are passed to [pubsub.Dedup] (zero means its
	// defaults: 24 hours and 1 minute).
	DedupTTL, DedupLease time.Duration
}

// Participant returns the [pubsub.Handler] of one participant of a
// choreographed saga: for each event it receives it calls fn, which does
// the participant's local transaction and returns the events to publish
// next (the saga's next step, or a compensating event after a business
// failure), and then publishes them with [Publish]'s correlation and
// deterministic IDs.
//
// Each event is handled once per participant, saga and topic: a
// redelivered or republished event whose earlier handling succeeded is
// acknowledged without calling fn. When fn or a publish fails, the
// message is redelivered by the broker and fn runs again, so fn's local
// transaction must be idempotent: guard it with a [MemoryBarrier] or
// [BarrierAction] keyed by the event's saga ID and the participant. An
// error from fn made with [pubsub.Permanent] is not retried. A message
// without [HeaderSagaID] fails permanently with [ErrNoSagaID].
//
// It returns an error wrapping [ErrInvalidConfig] for an empty Name, a nil
// Publisher or a nil fn.
func Participant(cfg ParticipantConfig, fn func(ctx context.Context, ev Event) ([]Emit, error)) (pubsub.Handler, error) {
	switch {
	case cfg.Name == "":
		return nil, fmt.Errorf("%w: ParticipantConfig.Name is empty", ErrInvalidConfig)
	case cfg.Publisher == nil:
		return nil, fmt.Errorf("%w: ParticipantConfig.Publisher is nil", ErrInvalidConfig)
	case fn == nil:
		return nil, fmt.Errorf("%w: nil participant function", ErrInvalidConfig)
	}
	if cfg.Dedup == nil {
		cfg.Dedup = new(pubsub.MemoryDedupStore)
	}
	h := func(ctx context.Context, m *pubsub.Message) error {
		id := m.Header(HeaderSagaID)
		emits, err := fn(ctx, Event{SagaID: id, Topic: m.Topic, Payload: m.Payload, Message: m})
		if err != nil {
			return err
		}
		for i, e := range emits {
			mid := id + "/" + cfg.Name + "/" + m.Topic + "/" + e.Topic + "/" + strconv.Itoa(i)
			if err := publish(ctx, cfg.Publisher, e.Topic, id, e.Payload, mid); err != nil {
				return fmt.Errorf("saga %q: participant %q: publishing %q: %w", id, cfg.Name, e.Topic, err)
			}
		}
		return nil
	}
	dedup := pubsub.Dedup(cfg.Dedup, pubsub.DedupConfig{
		TTL:   cfg.DedupTTL,
		Lease: cfg.DedupLease,
		Key: func(_ context.Context, m *pubsub.Message) string {
			return cfg.Name + "/" + m.Header(HeaderSagaID) + "/" + m.Topic
		},
	})(h)
	return func(ctx context.Context, m *pubsub.Message) error {
		if m.Header(HeaderSagaID) == "" {
			return pubsub.Permanent(fmt.Errorf("%w: message %s on %q", ErrNoSagaID, m.ID, m.Topic))
		}
		return dedup(ctx, m)
	}, nil
}

// InstanceState is where a choreographed saga instance is, as a
// [ProcessManager] sees it.
type InstanceState uint8

// The states of a choreographed saga instance.
const (
	InstanceActive    InstanceState = iota + 1 // events are arriving
	InstanceCompleted                          // a completion event arrived
	InstanceFailed                             // a failure (compensated) event arrived
	InstanceStalled                            // no event for the stall timeout
)

// String returns the state's lower-case name.
func (s InstanceState) String() string {
	switch s {
	case InstanceActive:
		return "active"
	case InstanceCompleted:
		return "completed"
	case InstanceFailed:
		return "failed"
	case InstanceStalled:
		return "stalled"
	}
	return "InstanceState(" + strconv.Itoa(int(s)) + ")"
}

// Instance is a choreographed saga instance as a [ProcessManager] tracks
// it.
type Instance struct {
	// SagaID identifies the instance.
	SagaID string
	// State is where the instance is.
	State InstanceState
	// Events lists the topics of the instance's events in arrival order,
	// each delivery of a message counted once.
	Events []string
	// Started and Updated are when the first and the last event arrived.
	Started, Updated time.Time
}

// Defaults for the zero fields of [ProcessManagerConfig].
const (
	DefaultStallTimeout = time.Minute
	DefaultMaxFinished  = 10_000
)

// ProcessManagerConfig configures a [ProcessManager].
type ProcessManagerConfig struct {
	// Completed lists topic patterns ([pubsub.Match]) whose events end an
	// instance successfully; Failed those that end it as failed, after
	// its compensations. At least one of them must be given.
	Completed, Failed []string
	// StallTimeout is how long an active instance may go without an event
	// before it is stalled (0 means [DefaultStallTimeout]).
	StallTimeout time.Duration
	// OnStall, if not nil, is called by [ProcessManager.Run] for each
	// instance that stalls, outside any lock; it may block (the next stall
	// check waits) and may publish a compensating event with [Publish].
	OnStall func(ctx context.Context, inst Instance)
	// MaxFinished bounds the completed and failed instances remembered
	// (0 means [DefaultMaxFinished]); the oldest are forgotten first.
	MaxFinished int
	// Logger receives a record, with the saga ID, for every instance that
	// stalls. Nil discards.
	Logger *slog.Logger
}

// ProcessManager is a read-side view of choreographed sagas: subscribe
// its [ProcessManager.Handle] to the sagas' topics and it tracks each
// instance's progress by saga ID; run [ProcessManager.Run] and it marks
// instances that stall and calls [ProcessManagerConfig.OnStall] for them,
// which is where a timeout turns into a compensating event. It takes no
// part in the saga itself, so it can be added to a running choreography.
//
// It is safe for concurrent use.
type ProcessManager struct {
	cfg  ProcessManagerConfig
	wake chan struct{}

	mu        sync.Mutex
	instances map[string]*instance
	finished  []string // finished instance IDs, oldest first
}

type instance struct {
	Instance
	seen map[string]struct{} // message IDs
}

// NewProcessManager returns a process manager, or an error wrapping
// [ErrInvalidConfig] when no completion or failure pattern is given, a
// pattern is invalid, or a field is negative.
func NewProcessManager(cfg ProcessManagerConfig) (*ProcessManager, error) {
	if len(cfg.Completed)+len(cfg.Failed) == 0 {
		return nil, fmt.Errorf("%w: ProcessManagerConfig has no Completed or Failed topics", ErrInvalidConfig)
	}
	for _, p := range slices.Concat(cfg.Completed, cfg.Failed) {
		if err := pubsub.ValidatePattern(p); err != nil {
			return nil, fmt.Errorf("%w: ProcessManagerConfig: %w", ErrInvalidConfig, err)
		}
	}
	switch {
	case cfg.StallTimeout < 0:
		return nil, fmt.Errorf("%w: ProcessManagerConfig.StallTimeout is negative", ErrInvalidConfig)
	case cfg.MaxFinished < 0:
		return nil, fmt.Errorf("%w: ProcessManagerConfig.MaxFinished is negative", ErrInvalidConfig)
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.MaxFinished == 0 {
		cfg.MaxFinished = DefaultMaxFinished
	}
	return &ProcessManager{cfg: cfg, wake: make(chan struct{}, 1), instances: make(map[string]*instance)}, nil
}

// Handle records a saga event; it is a [pubsub.Handler]. A redelivered
// message (same ID) is counted once. An event after a completion or
// failure event is recorded but does not change the state; an event for a
// stalled instance makes it active again. A message without
// [HeaderSagaID] fails permanently with [ErrNoSagaID].
func (p *ProcessManager) Handle(_ context.Context, m *pubsub.Message) error {
	id := m.Header(HeaderSagaID)
	if id == "" {
		return pubsub.Permanent(fmt.Errorf("%w: message %s on %q", ErrNoSagaID, m.ID, m.Topic))
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	inst := p.instances[id]
	if inst == nil {
		inst = &instance{Instance: Instance{SagaID: id, State: InstanceActive, Started: now}, seen: make(map[string]struct{})}
		p.instances[id] = inst
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	if _, dup := inst.seen[m.ID]; dup {
		return nil
	}
	inst.seen[m.ID] = struct{}{}
	inst.Events = append(inst.Events, m.Topic)
	inst.Updated = now
	if inst.State == InstanceCompleted || inst.State == InstanceFailed {
		return nil
	}
	inst.State = InstanceActive
	switch {
	case matchAny(p.cfg.Completed, m.Topic):
		inst.State = InstanceCompleted
	case matchAny(p.cfg.Failed, m.Topic):
		inst.State = InstanceFailed
	default:
		return nil
	}
	p.finished = append(p.finished, id)
	for len(p.finished) > p.cfg.MaxFinished {
		delete(p.instances, p.finished[0])
		p.finished = p.finished[1:]
	}
	return nil
}

func matchAny(patterns []string, topic string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return pubsub.Match(p, topic) })
}

// Run marks active instances that have had no event for the stall
// timeout as stalled, calling OnStall for each, until ctx ends; then it
// returns an error wrapping ctx.Err(). Run blocks; the caller picks the
// goroutine.
func (p *ProcessManager) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, stalled := p.check(time.Now())
		for _, inst := range stalled {
			if p.cfg.Logger != nil {
				p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "saga: choreographed saga stalled",
					slog.String("saga_id", inst.SagaID), slog.Any("events", inst.Events))
			}
			if p.cfg.OnStall != nil {
				p.cfg.OnStall(ctx, inst)
			}
		}
		var wait <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			wait = timer.C
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("saga: process manager: %w", ctx.Err())
		case <-wait:
		case <-p.wake:
			timer.Stop()
		}
	}
}

// check stalls the instances whose deadline has passed and returns the
// earliest deadline still ahead (zero if none).
func (p *ProcessManager) check(now time.Time) (next time.Time, stalled []Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inst := range p.instances {
		if inst.State != InstanceActive {
			continue
		}
		deadline := inst.Updated.Add(p.cfg.StallTimeout)
		if !deadline.After(now) {
			inst.State = InstanceStalled
			stalled = append(stalled, inst.clone())
			continue
		}
		if next.IsZero() || deadline.Before(next) {
			next = deadline
		}
	}
	return next, stalled
}

func (i *instance) clone() Instance {
	c := i.Instance
	c.Events = slices.Clone(c.Events)
	return c
}

// Instance returns the instance of saga sagaID, and false if there is
// none.
func (p *ProcessManager) Instance(sagaID string) (Instance, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inst := p.instances[sagaID]
	if inst == nil {
		return Instance{}, false
	}
	return inst.clone(), true
}

// Instances returns the instances in one of states (all when none is
// given), ordered by saga ID.
func (p *ProcessManager) Instances(states ...InstanceState) []Instance {
	p.mu.Lock()
	var out []Instance
	for _, inst := range p.instances {
		if len(states) == 0 || slices.Contains(states, inst.State) {
			out = append(out, inst.clone())
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.SagaID, b.SagaID) })
	return out
}
