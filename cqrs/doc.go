// Package cqrs implements Command Query Responsibility Segregation: writes
// and reads go through different models. The command side takes commands,
// validates them, checks business rules against event-sourced aggregates
// and stores the events that follow; the query side answers queries from
// read models, projections of the event log shaped for each query, which
// the log keeps up to date in the background.
//
// The package gives you a [CommandBus] (commands routed by Go type to
// exactly one handler, with validation and [Middleware]: [Logging],
// [Correlation], [Timeout], [RetryConflicts], [Authorize]), a [QueryBus]
// with typed answers ([Ask], [AskAfter]), [ReadModel] (a projection fed
// from the log or from pubsub, rebuilt into a shadow copy and swapped
// without downtime), consistency [Token]s for reading your own writes, a
// [Reconciler] that finds and repairs drift in the background, and
// [Table], an in-memory keyed read model. It builds on package
// eventsource: read models are [eventsource.Projection]s with its
// checkpoints, fed by its [eventsource.Projector], and tokens are its
// global positions. Any store that passes eventsourcetest works.
//
// # When CQRS is worth its cost
//
// Use it when reads and writes want different things: many views of the
// same facts (orders by customer, revenue per day, a search index), reads
// that outnumber writes by orders of magnitude and must scale apart from
// them, or write logic complex enough to deserve a model of its own. It
// pairs naturally with event sourcing, where the log is the write model
// and every read model is a projection of it.
//
// Do not use it for a CRUD screen whose reads are its writes: you would
// pay for two models, the infrastructure that syncs them, and eventual
// consistency (a user who saves and reloads may see the old data) for
// nothing. Start with one model and split when the read and write needs
// actually diverge.
//
// # Consistency: what you get and what a token costs
//
// Read models are eventually consistent. A read model lags the log by the
// time its feed takes to apply new events: with [ReadModel.Run] on the
// memory store, tens of microseconds; with a database read model, a
// transaction or so; under load or after a restart, as long as catching up
// takes. There is no bound on staleness in general, only on a read that
// asks for one.
//
// Read-your-writes: a command's [Result.Token] is the global position of
// its last event. A query that carries it ([AskAfter]) is answered only
// once the read model's checkpoint has reached the token, so it reflects
// that write (and everything before it in the log). If the read model does
// not get there within [QueryBusConfig.MaxWait] (5s by default) or the
// caller's context, the query fails with [ErrNotConsistent] rather than
// answering stale; the caller can retry, or ask without the token and show
// stale data knowingly. A query without a token reads whatever is current,
// at no cost.
//
// What a token costs: when the read model has already caught up (the
// usual case by the time a client sends its next request), one atomic
// load. Otherwise the query waits, holding its goroutine, for the feed to
// apply the token's event, plus one call to [eventsource.Store.Head] to
// reject tokens past the end of the log. A read model in another process
// (a shared database) is waited for by polling its checkpoint
// ([ReadModelConfig.PollInterval]). Tokens only order writes to one store;
// they are not comparable across stores.
//
// # Guarantees
//
//   - Each command type has exactly one handler: registering a second, or
//     dispatching an unregistered type, is an error ([ErrDuplicateHandler],
//     [ErrNoHandler]). An invalid command never reaches its handler
//     ([ErrInvalidCommand]).
//   - A query carrying a token never sees a state older than the token.
//   - A read model applies each event once: repeats from a resumed feed or
//     a redelivered message are dropped before the projection sees them,
//     and with an atomic projection (apply and checkpoint together, as
//     [Table] and [eventsource.MemoryProjection] do, and a database read
//     model does in one transaction) a crash and resume neither skips nor
//     repeats an event.
//   - [ReadModel.Rebuild] never serves a partially built copy: queries see
//     the old copy until the new one has caught up, then the new one.
//     Side effects ([ReadModelConfig.SideEffects], or a projection that
//     checks [Replaying]) do not run for the replay.
//   - A [Reconciler] pass compares and repairs a bounded number of rows
//     ([ReconcilerConfig.MaxRows]), at one checkpoint for both copies, so
//     it never "repairs" a row with stale data.
//
// # Scaling the two sides apart
//
// The command side and the query side share only the event log. Run them
// in different processes, or in one process with separate budgets
// ([CommandBusConfig.MaxInFlight], [QueryBusConfig.MaxInFlight]). Each
// query process runs its own read-model replicas, each with its own
// [ReadModel.Run] on the same log; add replicas for more read throughput.
// A token from the command side is valid on every replica, which waits
// for it on its own. Read models in other services can be fed from pubsub
// instead ([Forward] publishes the log; [ReadModel.Handle] applies it).
//
// # Usage
//
// Register command handlers, usually over an [eventsource.Repository]:
//
//	cmds, _ := cqrs.NewCommandBus(cqrs.CommandBusConfig{})
//	cmds.Use(cqrs.Correlation(), cqrs.Logging(logger), cqrs.Timeout(5*time.Second))
//	_ = cqrs.HandleCommand(cmds, cqrs.OnAggregate(orders, PlaceOrder.OrderID,
//		func(ctx context.Context, c PlaceOrder, o *Order) ([]any, error) {
//			if o.Placed {
//				return nil, ErrAlreadyPlaced
//			}
//			return []any{OrderPlaced{Customer: c.Customer, Total: c.Total}}, nil
//		}))
//
// Define a read model and the queries it answers, and keep it fed:
//
//	byCustomer, _ := cqrs.NewReadModel(ctx, store, newByCustomer(), cqrs.ReadModelConfig[*cqrs.Table[[]string]]{
//		Name: "orders-by-customer",
//		New:  newByCustomer, // for rebuilds and the reconciler
//	})
//	go byCustomer.Run(ctx)
//	queries, _ := cqrs.NewQueryBus(cqrs.QueryBusConfig{})
//	_ = cqrs.HandleQuery(queries, byCustomer, func(ctx context.Context, t *cqrs.Table[[]string], q OrdersOf) ([]string, error) {
//		ids, _ := t.Get(q.Customer)
//		return ids, nil
//	})
//
// Write, then read your write:
//
//	res, err := cmds.Dispatch(ctx, PlaceOrder{ID: "o-1", Customer: "ada", Total: 4200})
//	ids, err := cqrs.AskAfter[[]string](ctx, queries, res.Token, OrdersOf{Customer: "ada"})
//
// To change a read model's code, deploy it and call [ReadModel.Rebuild];
// to guard against drift, run a [Reconciler].
package cqrs
