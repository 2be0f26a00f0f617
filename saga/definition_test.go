package saga_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/distkit/distkit/saga"
)

func TestNewDefinitionRejectsInvalidSagas(t *testing.T) {
	act := func(context.Context, *saga.Call) ([]byte, error) { return nil, nil }
	s := func(name string, deps ...string) saga.Step {
		return saga.Step{Name: name, DependsOn: deps, Action: act}
	}
	tests := []struct {
		name  string
		saga  string
		steps []saga.Step
		want  string
	}{
		{"empty saga name", "", []saga.Step{s("a")}, "empty saga name"},
		{"no steps", "x", nil, "no steps"},
		{"empty step name", "x", []saga.Step{s("")}, "empty name"},
		{"slash in step name", "x", []saga.Step{s("a/b")}, "contains '/'"},
		{"nil action", "x", []saga.Step{{Name: "a"}}, "nil Action"},
		{"duplicate step", "x", []saga.Step{s("a"), s("a")}, "duplicate step name"},
		{"self dependency", "x", []saga.Step{s("a", "a")}, "depends on itself"},
		{"unknown dependency", "x", []saga.Step{s("a", "b")}, `unknown step "b"`},
		{"repeated dependency", "x", []saga.Step{s("a"), s("b", "a", "a")}, `depends on "a" twice`},
		{"cycle", "x", []saga.Step{s("a", "c"), s("b", "a"), s("c", "b"), s("d")}, "dependency cycle: a -> b -> c -> a"},
		{"two-step cycle", "x", []saga.Step{s("a", "b"), s("b", "a")}, "dependency cycle: "},
		{"negative attempts", "x", []saga.Step{{Name: "a", Action: act, Policy: saga.Policy{MaxAttempts: -1}}}, "MaxAttempts is negative"},
		{"multiplier below 1", "x", []saga.Step{{Name: "a", Action: act, Policy: saga.Policy{Backoff: saga.Backoff{Multiplier: 0.5}}}}, "Multiplier"},
		{"jitter above 1", "x", []saga.Step{{Name: "a", Action: act, Policy: saga.Policy{Backoff: saga.Backoff{Jitter: 2}}}}, "Jitter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := saga.NewDefinition(tt.saga, tt.steps...)
			var de *saga.DefinitionError
			if d != nil || !errors.As(err, &de) || !errors.Is(err, saga.ErrInvalidDefinition) {
				t.Fatalf("NewDefinition = %v, %v; want a *DefinitionError", d, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestNewDefinitionAcceptsADAGInAnyOrder(t *testing.T) {
	act := func(context.Context, *saga.Call) ([]byte, error) { return nil, nil }
	d, err := saga.NewDefinition("trip",
		saga.Step{Name: "car", DependsOn: []string{"flight"}, Action: act},
		saga.Step{Name: "pay", DependsOn: []string{"hotel", "car"}, Action: act},
		saga.Step{Name: "hotel", DependsOn: []string{"flight"}, Action: act},
		saga.Step{Name: "flight", Action: act},
	)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "trip" || strings.Join(d.Steps(), ",") != "car,pay,hotel,flight" {
		t.Errorf("definition %s %v", d.Name(), d.Steps())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	d := mustDefinition(t, "x", saga.Step{Name: "a", Action: func(context.Context, *saga.Call) ([]byte, error) { return nil, nil }})
	tests := []struct {
		name  string
		store saga.Store
		defs  []*saga.Definition
		cfg   saga.Config
	}{
		{"nil store", nil, []*saga.Definition{d}, saga.Config{}},
		{"nil definition", saga.NewMemoryStore(), []*saga.Definition{nil}, saga.Config{}},
		{"duplicate definition", saga.NewMemoryStore(), []*saga.Definition{d, d}, saga.Config{}},
		{"negative compensation timeout", saga.NewMemoryStore(), nil, saga.Config{CompensationTimeout: -1}},
		{"negative concurrency", saga.NewMemoryStore(), nil, saga.Config{Concurrency: -1}},
		{"bad policy", saga.NewMemoryStore(), nil, saga.Config{Policy: saga.Policy{CompensationAttempts: -2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := saga.New(tt.store, tt.defs, tt.cfg); !errors.Is(err, saga.ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestKeyRoundTrip(t *testing.T) {
	for _, k := range []saga.Key{
		{SagaID: "trip-1", Step: "car", Kind: saga.Action},
		{SagaID: "a/b/c", Step: "hotel", Kind: saga.Compensation},
	} {
		got, err := saga.ParseKey(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKey(%q) = %+v, %v", k.String(), got, err)
		}
	}
	for _, bad := range []string{"", "x", "a/b/undo", "/b/action", "a//action", "a/action"} {
		if _, err := saga.ParseKey(bad); !errors.Is(err, saga.ErrInvalidKey) {
			t.Errorf("ParseKey(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}
