package eventsource_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/eventsource"
)

// Schema history of a "deposited" event:
//   v1: {"cents": 1250}                  (registered as "MoneyDeposited")
//   v2: {"amount": 12.5}                 (renamed to "account.deposited")
//   v3: {"amount": 1250, "currency": ""} (current: DepositedV3)

type DepositedV3 struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

type depositedV2 struct {
	Amount float64 `json:"amount"`
}

func historyRegistry(t *testing.T) *eventsource.Registry {
	t.Helper()
	reg := eventsource.NewRegistry(nil)
	require.NoError(t, eventsource.Register[DepositedV3](reg, "account.deposited", 3))
	require.NoError(t, reg.AddUpcaster(eventsource.Upcaster{
		FromType: "MoneyDeposited", FromVersion: 1, ToType: "account.deposited", ToVersion: 2,
		Func: func(data []byte) ([]byte, error) {
			var v1 struct{ Cents int64 }
			if err := json.Unmarshal(data, &v1); err != nil {
				return nil, err
			}
			return json.Marshal(depositedV2{Amount: float64(v1.Cents) / 100})
		},
	}))
	require.NoError(t, reg.AddUpcaster(eventsource.Upcaster{
		FromType: "account.deposited", FromVersion: 2, ToVersion: 3,
		Func: eventsource.UpcastWith(eventsource.JSON, func(v2 depositedV2) (DepositedV3, error) {
			return DepositedV3{Amount: int64(v2.Amount*100 + 0.5), Currency: "EUR"}, nil
		}),
	}))
	require.NoError(t, reg.AddUpcaster(eventsource.Upcaster{
		FromType: "account.deposited", FromVersion: 1, ToVersion: 2,
		Func: eventsource.UpcastWith(nil, func(v1 struct{ Cents int64 }) (depositedV2, error) {
			return depositedV2{Amount: float64(v1.Cents) / 100}, nil
		}),
	}))
	return reg
}

func TestRegistryUpcastsEveryOldVersion(t *testing.T) {
	reg := historyRegistry(t)
	require.NoError(t, reg.Validate())
	want := DepositedV3{Amount: 1250, Currency: "EUR"}
	tests := []struct {
		name string
		ev   eventsource.Event
		want DepositedV3
	}{
		{"RenamedV1", eventsource.Event{Type: "MoneyDeposited", SchemaVersion: 1, Data: []byte(`{"Cents":1250}`)}, want},
		{"V1", eventsource.Event{Type: "account.deposited", SchemaVersion: 1, Data: []byte(`{"Cents":1250}`)}, want},
		{"V1ZeroMeansOne", eventsource.Event{Type: "account.deposited", Data: []byte(`{"Cents":1250}`)}, want},
		{"V2", eventsource.Event{Type: "account.deposited", SchemaVersion: 2, Data: []byte(`{"amount":12.5}`)}, want},
		{"Current", eventsource.Event{Type: "account.deposited", SchemaVersion: 3, Data: []byte(`{"amount":7,"currency":"USD"}`)},
			DepositedV3{Amount: 7, Currency: "USD"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := reg.Decode(tc.ev)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestRegistryEncode(t *testing.T) {
	reg := historyRegistry(t)
	for _, v := range []any{DepositedV3{Amount: 5}, &DepositedV3{Amount: 5}} {
		d, err := reg.Encode(v)
		require.NoError(t, err)
		assert.Equal(t, "account.deposited", d.Type)
		assert.Equal(t, 3, d.SchemaVersion)
		assert.JSONEq(t, `{"amount":5,"currency":""}`, string(d.Data))
		back, err := reg.Decode(eventsource.Event{Type: d.Type, SchemaVersion: d.SchemaVersion, Data: d.Data})
		require.NoError(t, err)
		assert.Equal(t, DepositedV3{Amount: 5}, back)
	}
}

func TestRegistryUnknownEventNamesIt(t *testing.T) {
	reg := historyRegistry(t)
	tests := []struct {
		name    string
		ev      eventsource.Event
		mention []string
	}{
		{"UnknownType", eventsource.Event{Type: "account.frozen", SchemaVersion: 1}, []string{`"account.frozen"`, "not registered"}},
		{"NewerVersion", eventsource.Event{Type: "account.deposited", SchemaVersion: 4}, []string{`"account.deposited"`, "version 4", "newer"}},
		{"OldVersionOfRenamedSource", eventsource.Event{Type: "MoneyDeposited", SchemaVersion: 2}, []string{`"MoneyDeposited"`, "not registered"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reg.Decode(tc.ev)
			require.ErrorIs(t, err, eventsource.ErrUnknownEvent)
			var ue *eventsource.UnknownEventError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, tc.ev.Type, ue.Type)
			for _, m := range tc.mention {
				assert.Contains(t, err.Error(), m)
			}
		})
	}
	t.Run("UnregisteredGoType", func(t *testing.T) {
		_, err := reg.Encode(Withdrawn{Amount: 1})
		var ue *eventsource.UnknownEventError
		require.ErrorAs(t, err, &ue)
		assert.Contains(t, err.Error(), "eventsource_test.Withdrawn")
	})
	t.Run("Nil", func(t *testing.T) {
		_, err := reg.Encode(nil)
		require.ErrorIs(t, err, eventsource.ErrUnknownEvent)
	})
	t.Run("NoUpcasterForOldVersion", func(t *testing.T) {
		r := eventsource.NewRegistry(nil)
		require.NoError(t, eventsource.Register[Deposited](r, "deposited", 2))
		_, err := r.Decode(eventsource.Event{Type: "deposited", SchemaVersion: 1, Data: []byte(`{}`)})
		require.ErrorIs(t, err, eventsource.ErrUnknownEvent)
		assert.Contains(t, err.Error(), "no upcaster")
	})
}

func TestRegistryDecodeErrorsNamePosition(t *testing.T) {
	reg := historyRegistry(t)
	_, err := reg.Decode(eventsource.Event{StreamID: "account-1", Version: 9, Type: "account.deposited", SchemaVersion: 3, Data: []byte(`{"amount":"x"}`)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `stream "account-1" version 9`)
	_, err = reg.Decode(eventsource.Event{StreamID: "account-1", Version: 3, Type: "account.deposited", SchemaVersion: 2, Data: []byte(`not json`)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "upcast account.deposited/v2")
}

func TestRegistryRegistrationErrors(t *testing.T) {
	reg := eventsource.NewRegistry(nil)
	require.NoError(t, eventsource.Register[Deposited](reg, "deposited", 1))
	tests := []struct {
		name string
		err  error
	}{
		{"EmptyName", eventsource.Register[Withdrawn](reg, "", 1)},
		{"NegativeVersion", eventsource.Register[Withdrawn](reg, "withdrawn", -1)},
		{"NameTwice", eventsource.Register[Withdrawn](reg, "deposited", 2)},
		{"GoTypeTwice", eventsource.Register[Deposited](reg, "deposited.again", 1)},
		{"PointerType", eventsource.Register[*Withdrawn](reg, "withdrawn", 1)},
		{"InterfaceType", eventsource.Register[error](reg, "error", 1)},
		{"NilRegistry", eventsource.Register[Withdrawn](nil, "withdrawn", 1)},
		{"UpcasterNoFunc", reg.AddUpcaster(eventsource.Upcaster{FromType: "x", ToVersion: 2})},
		{"UpcasterNoFromType", reg.AddUpcaster(eventsource.Upcaster{ToType: "x", ToVersion: 2, Func: noop})},
		{"UpcasterToSelf", reg.AddUpcaster(eventsource.Upcaster{FromType: "x", FromVersion: 2, ToVersion: 2, Func: noop})},
		{"UpcasterBackwards", reg.AddUpcaster(eventsource.Upcaster{FromType: "x", FromVersion: 3, ToVersion: 2, Func: noop})},
		{"UpcasterToVersionZero", reg.AddUpcaster(eventsource.Upcaster{FromType: "x", ToType: "y", Func: noop})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.err, eventsource.ErrInvalidRegistry)
		})
	}
	t.Run("UpcasterTwice", func(t *testing.T) {
		r := eventsource.NewRegistry(nil)
		require.NoError(t, r.AddUpcaster(eventsource.Upcaster{FromType: "x", ToVersion: 2, Func: noop}))
		require.ErrorIs(t, r.AddUpcaster(eventsource.Upcaster{FromType: "x", FromVersion: 1, ToVersion: 3, Func: noop}), eventsource.ErrInvalidRegistry)
	})
	t.Run("SealedAfterUse", func(t *testing.T) {
		require.NoError(t, reg.Validate())
		require.ErrorIs(t, eventsource.Register[Withdrawn](reg, "withdrawn", 1), eventsource.ErrRegistrySealed)
		require.ErrorIs(t, reg.AddUpcaster(eventsource.Upcaster{FromType: "deposited.old", ToType: "deposited", ToVersion: 1, Func: noop}), eventsource.ErrRegistrySealed)
	})
}

func noop(b []byte) ([]byte, error) { return b, nil }

func TestRegistryValidateChains(t *testing.T) {
	type up struct {
		from string
		fv   int
		to   string
		tv   int
	}
	tests := []struct {
		name    string
		current map[string]int // type -> current version (Go types are generated)
		ups     []up
		wantErr string // "" means valid
	}{
		{"Empty", nil, nil, ""},
		{"Chain", map[string]int{"a": 3}, []up{{"a", 1, "a", 2}, {"a", 2, "a", 3}}, ""},
		{"SkipThenStep", map[string]int{"a": 3}, []up{{"a", 1, "a", 3}, {"a", 2, "a", 3}}, ""},
		{"TypeIntroducedLate", map[string]int{"a": 4}, []up{{"a", 3, "a", 4}}, ""},
		{"Rename", map[string]int{"b": 1}, []up{{"a", 1, "b", 1}}, ""},
		{"RenameChain", map[string]int{"c": 2}, []up{{"a", 1, "b", 1}, {"b", 1, "c", 1}, {"c", 1, "c", 2}}, ""},
		{"Gap", map[string]int{"a": 4}, []up{{"a", 1, "a", 2}, {"a", 3, "a", 4}}, "a gap"},
		{"MissingMiddleVersion", map[string]int{"a": 4}, []up{{"a", 1, "a", 4}, {"a", 3, "a", 4}}, "none from version 2"},
		{"DeadEnd", map[string]int{"a": 3}, []up{{"a", 1, "a", 2}}, "a/v1 -> a/v2 ends at a/v2"},
		{"TargetNotRegistered", nil, []up{{"a", 1, "b", 1}}, "neither registered"},
		{"FromCurrent", map[string]int{"a": 2}, []up{{"a", 2, "a", 3}}, "a/v2 is the current version"},
		{"FromNewer", map[string]int{"a": 2}, []up{{"a", 3, "a", 4}}, "current version"},
		{"Cycle", map[string]int{"c": 1}, []up{{"a", 1, "b", 1}, {"b", 1, "a", 1}}, "cycle"},
		{"LongCycle", map[string]int{"d": 1}, []up{{"a", 1, "b", 1}, {"b", 1, "c", 1}, {"c", 1, "a", 1}}, "cycle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := eventsource.NewRegistry(nil)
			registerGenerated(t, reg, tc.current)
			for _, u := range tc.ups {
				require.NoError(t, reg.AddUpcaster(eventsource.Upcaster{FromType: u.from, FromVersion: u.fv, ToType: u.to, ToVersion: u.tv, Func: noop}))
			}
			err := reg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, eventsource.ErrInvalidRegistry)
			assert.Contains(t, err.Error(), tc.wantErr)
			// The registry stays unusable, with the same error.
			_, derr := reg.Decode(eventsource.Event{Type: "a", SchemaVersion: 1})
			assert.Equal(t, err, derr)
			_, eerr := reg.Encode(Deposited{})
			assert.Equal(t, err, eerr)
		})
	}
}

// registerGenerated registers distinct Go types under the given names.
func registerGenerated(t *testing.T, reg *eventsource.Registry, current map[string]int) {
	t.Helper()
	type g1 struct{}
	type g2 struct{}
	type g3 struct{}
	type g4 struct{}
	regs := []func(name string, v int) error{
		func(n string, v int) error { return eventsource.Register[g1](reg, n, v) },
		func(n string, v int) error { return eventsource.Register[g2](reg, n, v) },
		func(n string, v int) error { return eventsource.Register[g3](reg, n, v) },
		func(n string, v int) error { return eventsource.Register[g4](reg, n, v) },
	}
	i := 0
	for name, v := range current {
		require.NoError(t, regs[i](name, v))
		i++
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	reg := historyRegistry(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				v, err := reg.Decode(eventsource.Event{Type: "MoneyDeposited", SchemaVersion: 1, Data: fmt.Appendf(nil, `{"Cents":%d}`, g*1000+i)})
				if err != nil || v.(DepositedV3).Amount != int64(g*1000+i) {
					t.Errorf("decode: %v, %v", v, err)
					return
				}
				if _, err := reg.Encode(DepositedV3{Amount: int64(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestUpcastWithErrors(t *testing.T) {
	boom := errors.New("boom")
	f := eventsource.UpcastWith(nil, func(struct{ A int }) (struct{ B int }, error) { return struct{ B int }{}, boom })
	_, err := f([]byte(`{"A":1}`))
	require.ErrorIs(t, err, boom)
	_, err = f([]byte(`{`))
	require.Error(t, err)
	assert.False(t, errors.Is(err, boom))
}
