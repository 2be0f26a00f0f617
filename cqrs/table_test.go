package cqrs_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
)

// op events for table tests: Type "put" sets row Data[0:] = StreamID's
// value, "del" deletes, "fail" makes apply fail after its writes.
func opEvent(pos uint64, typ, key, val string) eventsource.Event {
	return eventsource.Event{Position: pos, Type: typ, StreamID: key, Data: []byte(val)}
}

var errBadEvent = errors.New("bad event")

func applyOps(tx *cqrs.TableTx[string], ev eventsource.Event) error {
	switch ev.Type {
	case "put":
		tx.Put(ev.StreamID, string(ev.Data))
	case "del":
		tx.Delete(ev.StreamID)
	case "fail":
		tx.Put(ev.StreamID, "half-done")
		return errBadEvent
	}
	return nil
}

func rowsOf[V any](t *cqrs.Table[V]) (map[string]V, uint64) {
	rows := map[string]V{}
	var at uint64
	t.Read(func(_ func(string) (V, bool), each func(func(string, V) bool), cp uint64) {
		each(func(k string, v V) bool { rows[k] = v; return true })
		at = cp
	})
	return rows, at
}

func TestTableNilApplyIsAnError(t *testing.T) {
	tb := cqrs.NewTable[string](nil)
	err := tb.Apply(context.Background(), []eventsource.Event{opEvent(1, "put", "a", "1")}, 1)
	require.ErrorIs(t, err, cqrs.ErrInvalidConfig)
	_, cp := rowsOf(tb)
	assert.Zero(t, cp, "the checkpoint moved without applying")
}

func TestTableApplyIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	tb := cqrs.NewTable(applyOps)
	require.NoError(t, tb.Apply(ctx, []eventsource.Event{
		opEvent(1, "put", "a", "1"), opEvent(2, "put", "b", "2"), opEvent(3, "put", "a", "3"),
	}, 4))
	rows, cp := rowsOf(tb)
	assert.Equal(t, map[string]string{"a": "3", "b": "2"}, rows)
	assert.Equal(t, uint64(4), cp)

	err := tb.Apply(ctx, []eventsource.Event{
		opEvent(5, "del", "a", ""), opEvent(6, "put", "c", "6"), opEvent(7, "put", "b", "7"), opEvent(8, "fail", "b", ""),
	}, 8)
	require.ErrorIs(t, err, errBadEvent)
	assert.Contains(t, err.Error(), "event 8")
	rows, cp = rowsOf(tb)
	assert.Equal(t, map[string]string{"a": "3", "b": "2"}, rows, "a failed batch left changes")
	assert.Equal(t, uint64(4), cp)
	assert.Equal(t, 2, tb.Len())

	// Repeats are ignored; the checkpoint may pass filtered-out events.
	require.NoError(t, tb.Apply(ctx, []eventsource.Event{opEvent(3, "put", "a", "old"), opEvent(5, "del", "a", "")}, 9))
	v, ok := tb.Get("a")
	assert.False(t, ok, v)
	cp, _ = tb.Checkpoint(ctx)
	assert.Equal(t, uint64(9), cp)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, tb.Apply(cctx, nil, 10), context.Canceled)
	require.ErrorIs(t, (&cqrs.Table[int]{}).Apply(ctx, nil, 1), cqrs.ErrInvalidConfig)
}

type caseless string

func (c caseless) Equal(o caseless) bool { return strings.EqualFold(string(c), string(o)) }

func TestTableCompareAndRepair(t *testing.T) {
	ctx := context.Background()
	have, want := cqrs.NewTable(applyOps), cqrs.NewTable(applyOps)
	var hev, wev []eventsource.Event
	for i := range 1000 {
		k := fmt.Sprint("k", i)
		wev = append(wev, opEvent(uint64(i+1), "put", k, k))
		switch i % 100 {
		case 7: // missing in have
			hev = append(hev, opEvent(uint64(i+1), "noop", k, ""))
		case 8: // different in have
			hev = append(hev, opEvent(uint64(i+1), "put", k, "wrong"))
		default:
			hev = append(hev, opEvent(uint64(i+1), "put", k, k))
		}
	}
	hev = append(hev, opEvent(1001, "put", "extra", "x")) // only in have
	wev = append(wev, opEvent(1001, "noop", "extra", ""))
	require.NoError(t, have.Apply(ctx, hev, 1001))
	require.NoError(t, want.Apply(ctx, wev, 1001))

	sweep := func() (drift []string, passes int) {
		cursor := ""
		for {
			d, compared, next, err := have.Compare(ctx, want, cursor, 50)
			require.NoError(t, err)
			assert.Less(t, compared, 50+40, "a pass compared far more than its limit")
			drift = append(drift, d...)
			passes++
			if next == "" {
				return drift, passes
			}
			cursor = next
		}
	}
	drift, passes := sweep()
	assert.ElementsMatch(t, []string{"k7", "k107", "k207", "k307", "k407", "k507", "k607", "k707", "k807", "k907",
		"k8", "k108", "k208", "k308", "k408", "k508", "k608", "k708", "k808", "k908", "extra"}, drift)
	assert.Greater(t, passes, 10)
	require.NoError(t, have.Repair(ctx, want, drift))
	drift, _ = sweep()
	assert.Empty(t, drift)
	hr, hcp := rowsOf(have)
	wr, wcp := rowsOf(want)
	assert.True(t, maps.Equal(hr, wr))
	assert.Equal(t, wcp, hcp)

	_, _, _, err := have.Compare(ctx, want, "nope", 10)
	require.Error(t, err)
	_, _, _, err = have.Compare(ctx, want, "256", 10)
	require.Error(t, err)

	t.Run("Equal method", func(t *testing.T) {
		a := cqrs.NewTable(func(tx *cqrs.TableTx[caseless], ev eventsource.Event) error {
			tx.Put(ev.StreamID, caseless(ev.Data))
			return nil
		})
		b := cqrs.NewTable(func(tx *cqrs.TableTx[caseless], ev eventsource.Event) error {
			tx.Put(ev.StreamID, caseless(strings.ToUpper(string(ev.Data))))
			return nil
		})
		evs := []eventsource.Event{opEvent(1, "put", "k", "abc")}
		require.NoError(t, a.Apply(ctx, evs, 1))
		require.NoError(t, b.Apply(ctx, evs, 1))
		d, _, _, err := a.Compare(ctx, b, "", 1000)
		require.NoError(t, err)
		for next := ""; ; {
			var more []string
			more, _, next, err = a.Compare(ctx, b, next, 1000)
			require.NoError(t, err)
			d = append(d, more...)
			if next == "" {
				break
			}
		}
		assert.Empty(t, d)
	})
}

// FuzzTable checks a table against a plain map over random batches of
// puts, deletes and failures: a batch that fails changes nothing, one
// that succeeds changes what the map says.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{9, 9, 9, 1, 1, 1, 200, 3, 17})
	f.Fuzz(func(t *testing.T, ops []byte) {
		ctx := context.Background()
		tb := cqrs.NewTable(applyOps)
		model := map[string]string{}
		var pos uint64
		for len(ops) > 0 {
			n := 1 + int(ops[0]%5)
			ops = ops[1:]
			var batch []eventsource.Event
			next := maps.Clone(model)
			fails := false
			for i := 0; i < n && len(ops) > 0; i++ {
				b := ops[0]
				ops = ops[1:]
				pos++
				key := fmt.Sprint("k", b%7)
				switch b >> 6 {
				case 0, 1:
					batch = append(batch, opEvent(pos, "put", key, fmt.Sprint(pos)))
					next[key] = fmt.Sprint(pos)
				case 2:
					batch = append(batch, opEvent(pos, "del", key, ""))
					delete(next, key)
				case 3:
					batch = append(batch, opEvent(pos, "fail", key, ""))
					fails = true
				}
			}
			before, _ := tb.Checkpoint(ctx)
			err := tb.Apply(ctx, batch, pos)
			if fails {
				if err == nil {
					t.Fatal("a failing batch succeeded")
				}
				pos = before // the log would resend the same positions
			} else {
				if err != nil {
					t.Fatal(err)
				}
				model = next
			}
			got, _ := rowsOf(tb)
			if !maps.Equal(got, model) || tb.Len() != len(model) {
				t.Fatalf("table %v, model %v", got, model)
			}
		}
	})
}
