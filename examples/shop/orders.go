package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distkit/distkit/cqrs"
	"github.com/distkit/distkit/eventsource"
)

// Commands of the order service.
type (
	// PlaceOrder opens an order.
	PlaceOrder struct {
		OrderID, Customer string
		Amount            int64 // cents
	}
	// CompleteOrder records that checkout succeeded.
	CompleteOrder struct{ OrderID string }
	// CompensateOrder records that checkout failed and was undone.
	CompensateOrder struct{ OrderID, Reason string }
)

// Validate checks the command's own fields; rules that need state are the
// aggregate's.
func (c PlaceOrder) Validate() error {
	var errs []error
	if c.OrderID == "" || strings.Contains(c.OrderID, "-") {
		errs = append(errs, errors.New("order ID must be non-empty and contain no '-'"))
	}
	if c.Customer == "" {
		errs = append(errs, errors.New("customer is required"))
	}
	if c.Amount <= 0 {
		errs = append(errs, errors.New("amount must be positive"))
	}
	return errors.Join(errs...)
}

// Events of the order aggregate. Each carries what the read models need.
type (
	OrderPlaced struct {
		Customer string
		Amount   int64
	}
	OrderCompleted struct {
		Customer string
		Amount   int64
	}
	OrderCompensated struct {
		Customer string
		Amount   int64
		Reason   string
	}
)

// Order statuses as the read models show them.
const (
	statusPlaced      = "placed"
	statusCompleted   = "completed"
	statusCompensated = "compensated"
)

// Order is the write model.
type Order struct {
	Status   string
	Customer string
	Amount   int64
}

// Apply folds one event into the order.
func (o *Order) Apply(e any) error {
	switch e := e.(type) {
	case OrderPlaced:
		o.Status, o.Customer, o.Amount = statusPlaced, e.Customer, e.Amount
	case OrderCompleted:
		o.Status = statusCompleted
	case OrderCompensated:
		o.Status = statusCompensated
	}
	return nil
}

var (
	errExists   = errors.New("order already exists")
	errNotOpen  = errors.New("order is not open")
	errNotFound = errors.New("no such order")
)

// newRegistry registers the order events.
func newRegistry() (*eventsource.Registry, error) {
	reg := eventsource.NewRegistry(nil)
	return reg, errors.Join(
		eventsource.Register[OrderPlaced](reg, "order.placed", 1),
		eventsource.Register[OrderCompleted](reg, "order.completed", 1),
		eventsource.Register[OrderCompensated](reg, "order.compensated", 1),
	)
}

// newCommandBus wires the order commands to the aggregate.
func newCommandBus(repo *eventsource.Repository[*Order]) (*cqrs.CommandBus, error) {
	cmds, err := cqrs.NewCommandBus(cqrs.CommandBusConfig{})
	if err != nil {
		return nil, err
	}
	cmds.Use(cqrs.Correlation(), cqrs.RetryConflicts(cqrs.RetryConfig{}), cqrs.Timeout(5*time.Second))
	open := func(id string, o *Order) error {
		switch o.Status {
		case "":
			return fmt.Errorf("%w: %s", errNotFound, id)
		case statusPlaced:
			return nil
		}
		return fmt.Errorf("%w: %s is %s", errNotOpen, id, o.Status)
	}
	return cmds, errors.Join(
		cqrs.HandleCommand(cmds, cqrs.OnAggregate(repo, func(c PlaceOrder) string { return c.OrderID },
			func(_ context.Context, c PlaceOrder, o *Order) ([]any, error) {
				if o.Status != "" {
					return nil, fmt.Errorf("%w: %s", errExists, c.OrderID)
				}
				return []any{OrderPlaced{Customer: c.Customer, Amount: c.Amount}}, nil
			})),
		cqrs.HandleCommand(cmds, cqrs.OnAggregate(repo, func(c CompleteOrder) string { return c.OrderID },
			func(_ context.Context, c CompleteOrder, o *Order) ([]any, error) {
				if err := open(c.OrderID, o); err != nil {
					return nil, err
				}
				return []any{OrderCompleted{Customer: o.Customer, Amount: o.Amount}}, nil
			})),
		cqrs.HandleCommand(cmds, cqrs.OnAggregate(repo, func(c CompensateOrder) string { return c.OrderID },
			func(_ context.Context, c CompensateOrder, o *Order) ([]any, error) {
				if err := open(c.OrderID, o); err != nil {
					return nil, err
				}
				return []any{OrderCompensated{Customer: o.Customer, Amount: o.Amount, Reason: c.Reason}}, nil
			})),
	)
}

// Queries and their answers.
type (
	// OrdersOf asks for a customer's orders.
	OrdersOf struct{ Customer string }
	// Totals asks for the counters of the totals read model.
	Totals struct{}
	// OrderRow is one order in the orders-by-customer read model.
	OrderRow struct {
		ID     string
		Amount int64
		Status string
	}
)

// orderEvent is the shape shared by the order events, for the read
// models.
type orderEvent struct {
	Customer string
	Amount   int64
}

func orderID(ev eventsource.Event) string { return strings.TrimPrefix(ev.StreamID, "order-") }

func statusOf(eventType string) string { return strings.TrimPrefix(eventType, "order.") }

// newByCustomer is the orders-by-customer read model.
func newByCustomer() *cqrs.Table[[]OrderRow] {
	return cqrs.NewTable(func(tx *cqrs.TableTx[[]OrderRow], ev eventsource.Event) error {
		var e orderEvent
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		id := orderID(ev)
		rows, _ := tx.Get(e.Customer)
		rows = slices.Clone(rows) // never modify a stored value in place
		i := slices.IndexFunc(rows, func(r OrderRow) bool { return r.ID == id })
		if i < 0 {
			rows = append(rows, OrderRow{ID: id, Amount: e.Amount})
			i = len(rows) - 1
		}
		rows[i].Status = statusOf(ev.Type)
		tx.Put(e.Customer, rows)
		return nil
	})
}

// newTotals is the totals read model: orders per status and revenue.
func newTotals() *cqrs.Table[int64] {
	return cqrs.NewTable(func(tx *cqrs.TableTx[int64], ev eventsource.Event) error {
		var e orderEvent
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return err
		}
		add := func(k string, d int64) { v, _ := tx.Get(k); tx.Put(k, v+d) }
		switch st := statusOf(ev.Type); st {
		case statusPlaced:
			add(statusPlaced, 1)
		case statusCompleted, statusCompensated:
			add(statusPlaced, -1)
			add(st, 1)
			if st == statusCompleted {
				add("revenue", e.Amount)
			}
		}
		return nil
	})
}

// readSide is the query side: the two read models and the query bus that
// answers from them. The read models are fed only by the leading
// projector, through a fence (see projector.go).
type readSide struct {
	byCustomer *cqrs.ReadModel[*cqrs.Table[[]OrderRow]]
	totals     *cqrs.ReadModel[*cqrs.Table[int64]]
	queries    *cqrs.QueryBus
}

func newReadSide(ctx context.Context, store eventsource.Store) (*readSide, error) {
	r := &readSide{}
	var err error
	if r.byCustomer, err = cqrs.NewReadModel(ctx, store, newByCustomer(), cqrs.ReadModelConfig[*cqrs.Table[[]OrderRow]]{
		Name: "orders-by-customer", New: newByCustomer,
	}); err != nil {
		return nil, err
	}
	if r.totals, err = cqrs.NewReadModel(ctx, store, newTotals(), cqrs.ReadModelConfig[*cqrs.Table[int64]]{
		Name: "totals", New: newTotals,
	}); err != nil {
		return nil, err
	}
	if r.queries, err = cqrs.NewQueryBus(cqrs.QueryBusConfig{MaxWait: 10 * time.Second}); err != nil {
		return nil, err
	}
	return r, errors.Join(
		cqrs.HandleQuery(r.queries, r.byCustomer, func(_ context.Context, t *cqrs.Table[[]OrderRow], q OrdersOf) ([]OrderRow, error) {
			rows, _ := t.Get(q.Customer)
			return rows, nil
		}),
		cqrs.HandleQuery(r.queries, r.totals, func(_ context.Context, t *cqrs.Table[int64], _ Totals) (map[string]int64, error) {
			return tableMap(t), nil
		}),
	)
}

// tableMap copies a table's rows.
func tableMap[V any](t *cqrs.Table[V]) map[string]V {
	all := map[string]V{}
	t.Read(func(_ func(string) (V, bool), each func(func(string, V) bool), _ uint64) {
		each(func(k string, v V) bool { all[k] = v; return true })
	})
	return all
}

// replay rebuilds both read models from the whole log into fresh tables,
// for comparison with the served ones.
func replay(ctx context.Context, store eventsource.Store) (map[string][]OrderRow, map[string]int64, error) {
	byCustomer, totals := newByCustomer(), newTotals()
	for _, p := range []eventsource.Projection{byCustomer, totals} {
		if _, err := eventsource.Rebuild(ctx, store, p, eventsource.ProjectorConfig{}); err != nil {
			return nil, nil, err
		}
	}
	return tableMap(byCustomer), tableMap(totals), nil
}
