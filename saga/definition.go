package saga

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Step is one local transaction of a saga: an action that moves the saga
// forward and, usually, a compensation that semantically undoes it.
type Step struct {
	// Name identifies the step within its saga. It must not be empty or
	// contain '/' (idempotency keys use it as a separator).
	Name string

	// DependsOn names the steps that must succeed before this one starts.
	// Steps that do not depend on each other, directly or transitively,
	// run in parallel. Compensation runs in the reverse order: a step is
	// compensated only after every step that depends on it.
	DependsOn []string

	// Action performs the step; it must not be nil. It returns the step's
	// output, which is recorded in the saga log, handed to the steps that
	// depend on it ([Call.Result]) and to the step's compensation
	// ([Call.Output]). An error is classified by [Policy.Classify]: a
	// business failure ([Fail]) turns the saga back; any other error is an
	// unknown outcome and is retried.
	//
	// An action may run more than once for one saga (a retry, a new
	// coordinator after a crash), always with the same idempotency key
	// ([Call.Key]): the service it calls must apply the key's effect once
	// (see [BarrierAction]). It must return promptly once ctx is done.
	Action func(ctx context.Context, c *Call) ([]byte, error)

	// Compensate undoes the action's effect. nil means the step needs no
	// compensation (a read, a notification, a step after which the saga
	// can no longer turn back). It may be called for an action whose
	// outcome is unknown, even one that never reached its service, and
	// more than once, with the same idempotency key: the service must
	// treat a compensation of an action it never applied as a recorded
	// no-op, and refuse the action if it arrives later (see
	// [BarrierCompensation]). Errors are retried; a business failure
	// ([Fail]) means the step cannot be compensated and parks the saga at
	// once. Compensate runs on a context that the saga's caller cannot
	// cancel (see [Config.CompensationTimeout]).
	Compensate func(ctx context.Context, c *Call) error

	// Policy is this step's timeout, retry and classification policy. Its
	// zero fields take the values of [Config.Policy], and then the
	// package defaults.
	Policy Policy
}

// Defaults for the zero fields of a [Policy].
const (
	DefaultTimeout              = 30 * time.Second
	DefaultMaxAttempts          = 3
	DefaultCompensationAttempts = 10
	DefaultBackoffInitial       = 100 * time.Millisecond
	DefaultBackoffMax           = 30 * time.Second
	DefaultBackoffMultiplier    = 2.0
	DefaultBackoffJitter        = 0.2
)

// Policy says how long a step's attempts may take, how often they are
// retried, and how their errors are classified. Zero fields mean the
// defaults: in a [Step], those of [Config.Policy]; there, the package
// defaults named below.
type Policy struct {
	// Timeout bounds each attempt of the action and of the compensation
	// (0 means [DefaultTimeout]; negative means no timeout). An attempt
	// that times out has an unknown outcome.
	Timeout time.Duration

	// MaxAttempts bounds the attempts of the action, the first included
	// (0 means [DefaultMaxAttempts]). When the last attempt's outcome is
	// still unknown the saga is parked as [Stuck]: the coordinator does not
	// guess whether the action took effect. Attempts cut short by a crash
	// of the coordinator count too, so a step that keeps crashing its
	// coordinator parks its saga instead of crash-looping.
	MaxAttempts int

	// CompensationAttempts bounds the attempts of the compensation (0
	// means [DefaultCompensationAttempts]); when they run out the saga is
	// parked as [Stuck].
	CompensationAttempts int

	// Backoff is the wait between attempts.
	Backoff Backoff

	// Classify decides the outcome of an attempt from the error the
	// action returned (nil means [DefaultClassify]). It is not called for
	// a nil error, which is always [Success].
	Classify func(error) Outcome
}

// Backoff is an exponential backoff with jitter: the wait after attempt n
// is Initial * Multiplier^(n-1), capped at Max, then scaled by a random
// factor in [1-Jitter, 1+Jitter]. Zero fields mean the defaults.
type Backoff struct {
	// Initial is the wait after the first attempt (0 means
	// [DefaultBackoffInitial]).
	Initial time.Duration
	// Max caps the wait (0 means [DefaultBackoffMax]).
	Max time.Duration
	// Multiplier grows the wait after each attempt (0 means
	// [DefaultBackoffMultiplier]); it must be at least 1.
	Multiplier float64
	// Jitter is the fraction by which each wait is randomized (0 means
	// [DefaultBackoffJitter]; negative means no jitter); at most 1.
	Jitter float64
}

// delay returns the wait after attempt n (from 1), using r in [0, 1) for
// the jitter.
func (b Backoff) delay(n int, r float64) time.Duration {
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(n-1))
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*r-1)
	}
	return time.Duration(d)
}

// Outcome is the classification of an attempt's result.
type Outcome uint8

const (
	// Success means the step took effect.
	Success Outcome = iota
	// Failure is a business failure: the step did not take effect and will
	// not, so the saga compensates what completed.
	Failure
	// Unknown means the step may or may not have taken effect (a timeout,
	// a lost reply, a crash): the attempt is retried with the same
	// idempotency key; when attempts run out the saga is parked.
	Unknown
)

// String returns "success", "failure" or "unknown".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// DefaultClassify is the default [Policy.Classify]: errors marked with
// [Fail] (errors.Is ErrFailed) are business failures, every other error is
// an unknown outcome. A nil error is a success.
func DefaultClassify(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, ErrFailed):
		return Failure
	default:
		return Unknown
	}
}

// resolve fills p's zero fields from def.
func (p Policy) resolve(def Policy) Policy {
	if p.Timeout == 0 {
		p.Timeout = def.Timeout
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.CompensationAttempts == 0 {
		p.CompensationAttempts = def.CompensationAttempts
	}
	if p.Backoff.Initial == 0 {
		p.Backoff.Initial = def.Backoff.Initial
	}
	if p.Backoff.Max == 0 {
		p.Backoff.Max = def.Backoff.Max
	}
	if p.Backoff.Multiplier == 0 {
		p.Backoff.Multiplier = def.Backoff.Multiplier
	}
	if p.Backoff.Jitter == 0 {
		p.Backoff.Jitter = def.Backoff.Jitter
	}
	if p.Classify == nil {
		p.Classify = def.Classify
	}
	return p
}

var defaultPolicy = Policy{
	Timeout:              DefaultTimeout,
	MaxAttempts:          DefaultMaxAttempts,
	CompensationAttempts: DefaultCompensationAttempts,
	Backoff: Backoff{
		Initial:    DefaultBackoffInitial,
		Max:        DefaultBackoffMax,
		Multiplier: DefaultBackoffMultiplier,
		Jitter:     DefaultBackoffJitter,
	},
	Classify: DefaultClassify,
}

// check reports what is wrong with p's fields, or "".
func (p Policy) check() string {
	switch {
	case p.MaxAttempts < 0:
		return "Policy.MaxAttempts is negative"
	case p.CompensationAttempts < 0:
		return "Policy.CompensationAttempts is negative"
	case p.Backoff.Initial < 0:
		return "Policy.Backoff.Initial is negative"
	case p.Backoff.Max < 0:
		return "Policy.Backoff.Max is negative"
	case p.Backoff.Multiplier != 0 && (p.Backoff.Multiplier < 1 || math.IsNaN(p.Backoff.Multiplier) || math.IsInf(p.Backoff.Multiplier, 0)):
		return "Policy.Backoff.Multiplier is below 1 or not finite"
	case p.Backoff.Jitter > 1 || math.IsNaN(p.Backoff.Jitter):
		return "Policy.Backoff.Jitter is above 1"
	}
	return ""
}

// Definition is a validated saga: named steps forming a directed acyclic
// graph of dependencies. Make one with [NewDefinition]; it is immutable
// and safe for concurrent use.
type Definition struct {
	name       string
	steps      []Step
	index      map[string]int
	deps       [][]int // direct dependencies of each step
	dependents [][]int // steps that depend directly on each step
	ancestors  [][]bool
}

// NewDefinition validates steps and returns the saga definition named
// name. Steps may be given in any order; their dependencies decide the
// order they run in.
//
// It returns a [*DefinitionError] (errors.Is ErrInvalidDefinition) when
// the name is empty, there are no steps, a step has an empty name, a name
// with '/', a duplicate name, no action, a dependency on itself, on an
// unknown step or twice on the same step, an invalid policy, or when the
// dependencies form a cycle (the error lists it: "a -> b -> a").
func NewDefinition(name string, steps ...Step) (*Definition, error) {
	bad := func(step, format string, args ...any) error {
		return &DefinitionError{Saga: name, Step: step, Reason: fmt.Sprintf(format, args...)}
	}
	if name == "" {
		return nil, bad("", "empty saga name")
	}
	if len(steps) == 0 {
		return nil, bad("", "no steps")
	}
	d := &Definition{name: name, steps: slices.Clone(steps), index: make(map[string]int, len(steps))}
	for i, s := range d.steps {
		switch {
		case s.Name == "":
			return nil, bad("", "step %d has an empty name", i)
		case strings.Contains(s.Name, "/"):
			return nil, bad(s.Name, "name contains '/'")
		case s.Action == nil:
			return nil, bad(s.Name, "nil Action")
		}
		if _, dup := d.index[s.Name]; dup {
			return nil, bad(s.Name, "duplicate step name")
		}
		if reason := s.Policy.check(); reason != "" {
			return nil, bad(s.Name, "%s", reason)
		}
		d.index[s.Name] = i
		d.steps[i].DependsOn = slices.Clone(s.DependsOn)
	}
	d.deps = make([][]int, len(steps))
	d.dependents = make([][]int, len(steps))
	for i, s := range d.steps {
		for _, dep := range s.DependsOn {
			j, ok := d.index[dep]
			switch {
			case dep == s.Name:
				return nil, bad(s.Name, "depends on itself")
			case !ok:
				return nil, bad(s.Name, "depends on unknown step %q", dep)
			case slices.Contains(d.deps[i], j):
				return nil, bad(s.Name, "depends on %q twice", dep)
			}
			d.deps[i] = append(d.deps[i], j)
			d.dependents[j] = append(d.dependents[j], i)
		}
	}
	if cycle := d.findCycle(); cycle != nil {
		names := make([]string, len(cycle))
		for k, i := range cycle {
			names[k] = d.steps[i].Name
		}
		return nil, bad("", "dependency cycle: %s", strings.Join(names, " -> "))
	}
	d.ancestors = make([][]bool, len(steps))
	for i := range d.steps {
		d.ancestors[i] = make([]bool, len(steps))
		var mark func(j int)
		mark = func(j int) {
			for _, k := range d.deps[j] {
				if !d.ancestors[i][k] {
					d.ancestors[i][k] = true
					mark(k)
				}
			}
		}
		mark(i)
	}
	return d, nil
}

// findCycle returns the steps of a dependency cycle, first step repeated
// at the end, or nil when there is none.
func (d *Definition) findCycle() []int {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(d.steps))
	var stack []int
	var visit func(i int) []int
	visit = func(i int) []int {
		color[i] = grey
		stack = append(stack, i)
		for _, j := range d.deps[i] {
			switch color[j] {
			case grey:
				k := slices.Index(stack, j)
				cycle := append(slices.Clone(stack[k:]), j)
				slices.Reverse(cycle) // dependency order: j -> ... -> j
				return cycle
			case white:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return nil
	}
	for i := range d.steps {
		if color[i] == white {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// Name returns the saga's name.
func (d *Definition) Name() string { return d.name }

// Steps returns the names of the steps in the order they were given.
func (d *Definition) Steps() []string {
	out := make([]string, len(d.steps))
	for i, s := range d.steps {
		out[i] = s.Name
	}
	return out
}

// Kind says whether an invocation is a step's action or its compensation.
type Kind uint8

const (
	// Action is a step's forward invocation.
	Action Kind = iota + 1
	// Compensation is a step's undoing invocation.
	Compensation
)

// String returns "action" or "compensation".
func (k Kind) String() string {
	switch k {
	case Action:
		return "action"
	case Compensation:
		return "compensation"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Key is the idempotency key of a step invocation: the saga instance, the
// step and whether it is the action or the compensation. Every attempt of
// the same invocation, by any coordinator, carries the same key, so a
// service that applies each key once applies each action and each
// compensation exactly once.
type Key struct {
	SagaID string
	Step   string
	Kind   Kind
}

// String returns "<saga ID>/<step>/<kind>", such as "trip-42/car/action",
// the form to send to a service (in an Idempotency-Key header, for
// example); [ParseKey] reads it back.
func (k Key) String() string { return k.SagaID + "/" + k.Step + "/" + k.Kind.String() }

// ParseKey parses the form [Key.String] writes. It returns an error
// wrapping [ErrInvalidKey] when s is not such a key.
func ParseKey(s string) (Key, error) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return Key{}, fmt.Errorf("%w: %q", ErrInvalidKey, s)
	}
	var k Key
	switch s[i+1:] {
	case "action":
		k.Kind = Action
	case "compensation":
		k.Kind = Compensation
	default:
		return Key{}, fmt.Errorf("%w: %q: unknown kind", ErrInvalidKey, s)
	}
	j := strings.LastIndexByte(s[:i], '/')
	if j <= 0 || j+1 == i {
		return Key{}, fmt.Errorf("%w: %q", ErrInvalidKey, s)
	}
	k.SagaID, k.Step = s[:j], s[j+1:i]
	return k, nil
}

// Call describes one invocation of a step's action or compensation. The
// coordinator makes a new one for each attempt; the step may read it but
// must not keep its byte slices past the call or modify them.
type Call struct {
	// SagaID is the saga instance's ID.
	SagaID string
	// Saga is the saga definition's name.
	Saga string
	// Step is the step's name.
	Step string
	// Kind says whether this is the action or the compensation.
	Kind Kind
	// Attempt numbers the attempts of this invocation, from 1. It keeps
	// counting across coordinators: an attempt cut short by a crash counts.
	Attempt int
	// Input is the saga's input, as given to [Coordinator.Execute].
	Input []byte
	// Output is, in a compensation, the output the action recorded, or
	// nil when the action's outcome is unknown.
	Output []byte

	r *run
	i int
}

// Key returns the invocation's idempotency key.
func (c *Call) Key() Key { return Key{SagaID: c.SagaID, Step: c.Step, Kind: c.Kind} }

// Result returns the recorded output of step, which must be a step this
// one depends on, directly or transitively; ok is false otherwise.
func (c *Call) Result(step string) (out []byte, ok bool) {
	if c.r == nil {
		return nil, false
	}
	d := c.r.def
	j, found := d.index[step]
	if !found || !d.ancestors[c.i][j] {
		return nil, false
	}
	return c.r.outputs[j], true
}
