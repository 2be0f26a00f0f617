package cqrs

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/distkit/distkit/eventsource"
)

// tableRanges is how many key ranges a [Table] splits its rows into for
// [Table.Compare]: rows are placed by a hash of their key.
const tableRanges = 256

// Table is an in-memory read model: rows of V by string key, plus the
// checkpoint they reflect, kept by an apply function that turns each event
// into row changes. It implements [eventsource.Projection] (so a
// [ReadModel] can serve, rebuild and feed it) and [Reconcilable] (so a
// [Reconciler] can check and repair it).
//
// Apply is all or nothing per batch: when the apply function fails on an
// event, every row change of the batch is undone and the checkpoint stays
// where it was. Readers never see a batch half applied.
//
// Values are shared between the table, its readers and the undo record of
// a batch: never modify a value in place (append to a slice that came from
// the table, write to a map that came from it), Put a new one.
//
// A Table is safe for concurrent use. The apply function runs under the
// table's lock and must not call the table's methods.
type Table[V any] struct {
	mu    sync.RWMutex
	rows  [tableRanges]map[string]V
	n     int
	cp    uint64
	apply func(tx *TableTx[V], ev eventsource.Event) error
	equal func(a, b V) bool
	tx    TableTx[V] // reused under mu
}

var _ Reconcilable[*Table[int]] = (*Table[int])(nil)

// TableTx is the view of a [Table] an apply function changes rows
// through. It is valid only during the call it was passed to.
type TableTx[V any] struct {
	t    *Table[V]
	undo []undoEntry[V]
}

type undoEntry[V any] struct {
	key string
	old V
	had bool
}

// NewTable returns an empty table whose rows apply keeps: it is called
// once per event, in position order, and changes rows with tx. An error
// from apply fails the whole batch (see [Table.Apply]). Rows are compared
// (by [Table.Compare]) with V's Equal(V) bool method when it has one, and
// with reflect.DeepEqual otherwise.
func NewTable[V any](apply func(tx *TableTx[V], ev eventsource.Event) error) *Table[V] {
	t := &Table[V]{apply: apply}
	t.tx.t = t
	var zero V
	if _, ok := any(zero).(interface{ Equal(V) bool }); ok {
		t.equal = func(a, b V) bool { return any(a).(interface{ Equal(V) bool }).Equal(b) }
	} else {
		t.equal = func(a, b V) bool { return reflect.DeepEqual(a, b) }
	}
	return t
}

func rangeOf(key string) int { return int(xxhash.Sum64String(key) % tableRanges) }

func (t *Table[V]) get(key string) (V, bool) {
	v, ok := t.rows[rangeOf(key)][key]
	return v, ok
}

func (t *Table[V]) put(key string, v V) {
	r := &t.rows[rangeOf(key)]
	if *r == nil {
		*r = make(map[string]V)
	}
	if _, ok := (*r)[key]; !ok {
		t.n++
	}
	(*r)[key] = v
}

func (t *Table[V]) del(key string) {
	r := t.rows[rangeOf(key)]
	if _, ok := r[key]; ok {
		delete(r, key)
		t.n--
	}
}

// Get returns the row of key, as of the current batch.
func (tx *TableTx[V]) Get(key string) (V, bool) { return tx.t.get(key) }

// Put sets the row of key to v.
func (tx *TableTx[V]) Put(key string, v V) {
	old, had := tx.t.get(key)
	tx.undo = append(tx.undo, undoEntry[V]{key: key, old: old, had: had})
	tx.t.put(key, v)
}

// Delete removes the row of key, if there is one.
func (tx *TableTx[V]) Delete(key string) {
	old, had := tx.t.get(key)
	if !had {
		return
	}
	tx.undo = append(tx.undo, undoEntry[V]{key: key, old: old, had: had})
	tx.t.del(key)
}

func (tx *TableTx[V]) rollback() {
	for i := len(tx.undo) - 1; i >= 0; i-- {
		u := tx.undo[i]
		if u.had {
			tx.t.put(u.key, u.old)
		} else {
			tx.t.del(u.key)
		}
	}
}

// Checkpoint implements [eventsource.Projection].
func (t *Table[V]) Checkpoint(context.Context) (uint64, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.cp, nil
}

// Apply implements [eventsource.Projection]: it calls the apply function
// for each event after the checkpoint, then sets the checkpoint, all or
// nothing. When the apply function fails, the rows and the checkpoint are
// as before the call, and the error names the event.
func (t *Table[V]) Apply(ctx context.Context, events []eventsource.Event, checkpoint uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.apply == nil {
		return fmt.Errorf("%w: table has no apply function", ErrInvalidConfig)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tx := &t.tx
	defer func() {
		clear(tx.undo) // drop references to old values
		tx.undo = tx.undo[:0]
	}()
	cp := t.cp
	for _, ev := range events {
		if ev.Position <= cp {
			continue
		}
		if err := t.apply(tx, ev); err != nil {
			tx.rollback()
			return fmt.Errorf("cqrs: table: event %d (%s in %q): %w", ev.Position, ev.Type, ev.StreamID, err)
		}
		cp = ev.Position
	}
	t.cp = max(cp, checkpoint)
	return nil
}

// Get returns the row of key and whether there is one.
func (t *Table[V]) Get(key string) (V, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.get(key)
}

// Len returns the number of rows.
func (t *Table[V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Read calls fn with a consistent view of the table: a function to look
// up rows, a function to visit every row (in no particular order, until
// visit's fn returns false), and the checkpoint the rows reflect. It holds
// the read lock while fn runs: fn must not keep the view, call the table's
// methods, or block.
func (t *Table[V]) Read(fn func(get func(key string) (V, bool), each func(func(key string, v V) bool), checkpoint uint64)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	each := func(visit func(string, V) bool) {
		for _, r := range t.rows {
			for k, v := range r {
				if !visit(k, v) {
					return
				}
			}
		}
	}
	fn(t.get, each, t.cp)
}

// Compare implements [Reconcilable]: it compares the rows of the key
// ranges from cursor on with want's, range after range, until it has
// looked at limit rows or more, and returns the keys that differ, how
// many keys it compared, and the cursor of the next range ("" after the
// last). A cursor is a range number in decimal; "" is the first.
func (t *Table[V]) Compare(ctx context.Context, want *Table[V], cursor string, limit int) (drift []string, compared int, next string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, cursor, err
	}
	start := 0
	if cursor != "" {
		start, err = strconv.Atoi(cursor)
		if err != nil || start < 0 || start >= tableRanges {
			return nil, 0, cursor, fmt.Errorf("cqrs: table: bad cursor %q", cursor)
		}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if want != t {
		want.mu.RLock()
		defer want.mu.RUnlock()
	}
	r := start
	for ; r < tableRanges && (compared < limit || r == start); r++ {
		have, exp := t.rows[r], want.rows[r]
		for k, v := range have {
			compared++
			if w, ok := exp[k]; !ok || !t.equal(v, w) {
				drift = append(drift, k)
			}
		}
		for k := range exp {
			if _, ok := have[k]; !ok {
				compared++
				drift = append(drift, k)
			}
		}
	}
	if r < tableRanges {
		next = strconv.Itoa(r)
	}
	return drift, compared, next, nil
}

// Repair implements [Reconcilable]: it sets the rows of keys to want's,
// deleting those want has not, and keeps the checkpoint.
func (t *Table[V]) Repair(ctx context.Context, want *Table[V], keys []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if want == t {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	want.mu.RLock()
	defer want.mu.RUnlock()
	for _, k := range keys {
		if v, ok := want.get(k); ok {
			t.put(k, v)
		} else {
			t.del(k)
		}
	}
	return nil
}
