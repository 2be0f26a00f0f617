package eventsource_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/distkit/distkit/eventsource"
)

// FuzzStoreAgainstModel runs the same random sequence of appends against
// the memory store and the naive baseline (a direct model of the contract)
// and requires the same outcome for each and the same log at the end.
// Event IDs come from small pools, some of them version 7 UUIDs arriving in
// any order, so that re-sends, partial re-sends and reused IDs are
// frequent.
func FuzzStoreAgainstModel(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{3, 17, 200, 3, 17, 200, 41, 9, 9, 250, 128, 64, 32, 16, 8})
	f.Add([]byte("re-send the same batch, then conflict, then multi"))
	v7 := make([]string, 9) // UUIDs like NewID's, for batches 6 to 8
	for i := range v7 {
		v7[i] = eventsource.NewID()
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		ctx := context.Background()
		mem, model := eventsource.NewMemoryStore(), newNaiveStore()
		streams := []string{"a-1", "a-2", "b-1"}
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		expected := func(b byte) eventsource.ExpectedVersion {
			switch b % 5 {
			case 0:
				return eventsource.Any
			case 1:
				return eventsource.NoStream
			case 2:
				return eventsource.StreamExists
			default:
				return eventsource.Exact(uint64(b / 5 % 6))
			}
		}
		events := func(b byte) []eventsource.EventData {
			// Batches are fixed per number, so the same number re-sends
			// the same events; some take single IDs from a shared pool.
			batch := int(b % 12)
			n := batch%3 + 1
			evs := make([]eventsource.EventData, n)
			for i := range evs {
				id := fmt.Sprintf("b%d-%d", batch, i)
				if batch >= 6 && batch < 9 {
					id = v7[(batch-6)*3+i]
				}
				if batch >= 9 {
					id = fmt.Sprintf("p%d", (batch+i)%4)
				}
				evs[i] = eventsource.EventData{ID: id, Type: fmt.Sprint("t", i), Data: []byte(id)}
			}
			return evs
		}
		for step := 0; len(ops) > 0 && step < 200; step++ {
			op := next()
			var rm, rn []eventsource.AppendResult
			var em, en error
			if op%4 == 3 {
				a := []eventsource.StreamAppend{
					{StreamID: streams[next()%3], Expected: expected(next()), Events: events(next())},
					{StreamID: streams[next()%3], Expected: expected(next()), Events: events(next())},
				}
				rm, em = mem.AppendStreams(ctx, a...)
				rn, en = model.AppendStreams(ctx, a...)
			} else {
				stream, exp, evs := streams[op%3], expected(next()), events(next())
				r1, e1 := mem.Append(ctx, stream, exp, evs...)
				r2, e2 := model.Append(ctx, stream, exp, evs...)
				rm, rn, em, en = []eventsource.AppendResult{r1}, []eventsource.AppendResult{r2}, e1, e2
			}
			if class(em) != class(en) {
				t.Fatalf("step %d: memory store %v, model %v", step, em, en)
			}
			var cm, cn *eventsource.ConcurrencyError
			if errors.As(em, &cm) && errors.As(en, &cn) && *cm != *cn {
				t.Fatalf("step %d: memory store %+v, model %+v", step, *cm, *cn)
			}
			if em == nil {
				for i := range rm {
					rm[i].Time = rn[i].Time // the stores read the clock separately
					if rm[i] != rn[i] {
						t.Fatalf("step %d: memory store %+v, model %+v", step, rm[i], rn[i])
					}
				}
			}
		}
		var logM, logN []eventsource.Event
		for e, err := range mem.ReadAll(ctx, 0, eventsource.Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			logM = append(logM, e)
		}
		for e, err := range model.ReadAll(ctx, 0, eventsource.Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			logN = append(logN, e)
		}
		if len(logM) != len(logN) {
			t.Fatalf("memory store has %d events, model %d", len(logM), len(logN))
		}
		for i := range logM {
			logM[i].Time = logN[i].Time
			if fmt.Sprint(logM[i]) != fmt.Sprint(logN[i]) {
				t.Fatalf("event %d: memory store %+v, model %+v", i+1, logM[i], logN[i])
			}
		}
	})
}

func class(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, eventsource.ErrConcurrencyConflict):
		return "conflict"
	case errors.Is(err, eventsource.ErrInvalidAppend):
		return "invalid"
	case errors.Is(err, eventsource.ErrDuplicateEventID):
		return "duplicate"
	default:
		return "other: " + err.Error()
	}
}

// FuzzRegistryDecode feeds arbitrary stored events to a registry with an
// upcaster chain: Decode never panics, and whatever it accepts re-encodes
// to the current schema and decodes to the same value.
func FuzzRegistryDecode(f *testing.F) {
	f.Add("MoneyDeposited", 1, []byte(`{"Cents":1250}`))
	f.Add("account.deposited", 2, []byte(`{"amount":12.5}`))
	f.Add("account.deposited", 3, []byte(`{"amount":1,"currency":"EUR"}`))
	f.Add("account.deposited", 0, []byte(`{"Cents":-3}`))
	f.Add("account.deposited", 9, []byte(`{}`))
	f.Add("nope", 1, []byte(`null`))
	f.Add("account.deposited", 2, []byte(`{"amount":1e400}`))
	f.Fuzz(func(t *testing.T, typ string, version int, data []byte) {
		reg := historyRegistry(t)
		v, err := reg.Decode(eventsource.Event{Type: typ, SchemaVersion: version, Data: data})
		if err != nil {
			return
		}
		d, err := reg.Encode(v)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", v, err)
		}
		if d.Type != "account.deposited" || d.SchemaVersion != 3 {
			t.Fatalf("re-encoded as %s v%d", d.Type, d.SchemaVersion)
		}
		back, err := reg.Decode(eventsource.Event{Type: d.Type, SchemaVersion: d.SchemaVersion, Data: d.Data})
		if err != nil || back != v {
			t.Fatalf("round trip: %#v -> %s -> %#v, %v", v, d.Data, back, err)
		}
	})
}
