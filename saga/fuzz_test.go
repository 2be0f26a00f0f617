package saga_test

import (
	"context"
	"errors"
	"testing"

	"github.com/distkit/distkit/saga"
)

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"trip-1/car/action", "a/b/c/compensation", "x", "/a/action", "a//action", "a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := saga.ParseKey(s)
		if err != nil {
			if !errors.Is(err, saga.ErrInvalidKey) {
				t.Fatalf("ParseKey(%q) = %v, not ErrInvalidKey", s, err)
			}
			return
		}
		if k.String() != s || k.SagaID == "" || k.Step == "" {
			t.Fatalf("ParseKey(%q) = %+v, which prints as %q", s, k, k.String())
		}
	})
}

// FuzzReplay feeds arbitrary logs to a coordinator: replaying them must
// never panic, and a log it accepts must lead to a status whose steps are
// consistent with the saga's state.
func FuzzReplay(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 1, 1, 2, 1, 10})
	f.Add([]byte{0, 1, 0, 3, 0, 5, 4, 0, 6, 0, 11})
	f.Add([]byte{0, 1, 0, 4, 0, 12, 0, 13, 0, 5, 4, 0, 6, 0, 11})
	types := []saga.RecordType{saga.RecordStarted, saga.RecordStepStarted, saga.RecordStepSucceeded, saga.RecordStepFailed,
		saga.RecordStepUnknown, saga.RecordCompensating, saga.RecordCompStarted, saga.RecordCompSucceeded, saga.RecordCompFailed,
		saga.RecordCompleted, saga.RecordCompleted, saga.RecordCompensated, saga.RecordStuck, saga.RecordRetried, saga.RecordAborted}
	steps := []string{"a", "b", "zz"}
	act := func(context.Context, *saga.Call) ([]byte, error) { return nil, nil }
	comp := func(context.Context, *saga.Call) error { return nil }
	def, _ := saga.NewDefinition("f", saga.Step{Name: "a", Action: act, Compensate: comp},
		saga.Step{Name: "b", DependsOn: []string{"a"}, Action: act, Compensate: comp})
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs []saga.Record
		attempts := map[string]int{}
		for i := 0; i+1 < len(data) && len(recs) < 40; i += 2 {
			typ := types[int(data[i])%len(types)]
			step := steps[int(data[i+1])%len(steps)]
			if typ == saga.RecordStepStarted || typ == saga.RecordCompStarted {
				attempts[string(typ)+step]++
			}
			n := attempts[string(saga.RecordStepStarted)+step]
			if typ == saga.RecordCompStarted || typ == saga.RecordCompSucceeded || typ == saga.RecordCompFailed {
				n = attempts[string(saga.RecordCompStarted)+step]
			}
			recs = append(recs, saga.Record{Type: typ, Saga: "f", Step: step, Attempt: n})
		}
		if len(recs) == 0 {
			return
		}
		store := saga.NewMemoryStore()
		if _, err := store.Append(context.Background(), "x", 0, recs...); err != nil {
			t.Fatal(err)
		}
		c, _ := saga.New(store, []*saga.Definition{def}, saga.Config{})
		st, err := c.Status(context.Background(), "x")
		if err != nil {
			if !errors.Is(err, saga.ErrCorruptLog) {
				t.Fatalf("Status = %v, want ErrCorruptLog", err)
			}
			return
		}
		for _, s := range st.Steps {
			if st.State == saga.Completed && s.State != saga.StepSucceeded {
				t.Fatalf("completed saga with step %s %s", s.Name, s.State)
			}
			if st.State == saga.Compensated && (s.State == saga.StepSucceeded || s.State == saga.StepRunning || s.State == saga.StepCompensating) {
				t.Fatalf("compensated saga with step %s %s", s.Name, s.State)
			}
		}
	})
}
