// Package eventsource implements event sourcing: instead of storing the
// current state of an entity, store the sequence of events that led to it,
// and derive state by replaying them.
//
// The package gives you an event [Store] (an append-only log of streams
// with optimistic concurrency and one gap-free global order), catch-up
// subscriptions over it ([Subscribe]), a generic aggregate [Repository]
// with [Snapshot]s, an event [Registry] that maps type names and schema
// versions to Go types and upcasts old versions, and [Projector]s that
// keep read models up to date with checkpoints that survive crashes.
// [MemoryStore] is the reference implementation; the conformance suite in
// package eventsourcetest holds every other implementation to it.
//
// # When to use it
//
// Event sourcing fits where the history matters as much as the state:
// money and inventory (every change must be explained), audit and
// compliance, collaborative editing, anything that needs "what did this
// look like last Tuesday" or new views computed from old facts. It costs
// more than a CRUD table: every read of current state is a replay (cheap
// with snapshots), read models are eventually consistent, and the event
// schema is a public contract that must evolve compatibly. If nobody will
// ever ask why the state is what it is, a table is simpler.
//
// # The model
//
// An [Event] is an immutable fact: a type name, a schema version, a
// payload of bytes, [Metadata] (correlation and causation IDs, headers),
// and what the store assigns on commit: its stream, its version within the
// stream (1, 2, 3, ... with no gaps), its position in the global log (1, 2,
// 3, ... with no gaps, in commit order), an ID unique in the store, and a
// commit time. A stream is the history of one entity, named
// "<category>-<id>" ([Category]); a [Repository] for aggregate type
// "account" keeps account 42 in stream "account-42".
//
// # Guarantees
//
// What is atomic: one [Store.Append] (all its events or none) and one
// [Store.AppendStreams] across several streams (all streams or none). The
// events of an append become visible together.
//
// What is ordered: versions within a stream; positions across the whole
// store, which equal commit order, so a reader that follows positions
// ([Store.ReadAll], [Subscribe]) can never miss an event that commits
// "behind" it, the failure mode of logs whose sequence numbers are
// assigned at insert but become visible at commit. Commit times never
// decrease along the log, which is what makes time travel well defined.
//
// What is checked: every append states what it expects of its stream
// ([Any], [NoStream], [StreamExists] or [Exact]); when another writer got
// there first the append fails with a [*ConcurrencyError] carrying the
// expected and actual versions, and nothing is stored. Of several writers
// racing for the same version exactly one wins.
//
// What is idempotent: appends, by event ID. Re-sending an append after a
// timeout returns the original [AppendResult] instead of storing
// duplicates, however far the stream has moved since; reusing an ID in a
// different append is refused with [ErrDuplicateEventID]. The store keeps
// every ID as long as the event: this is deduplication, not a cache.
//
// What is eventually consistent: everything read from a projection or a
// subscription. A read model lags the log by however long its projector
// takes. Each event's position is the consistency token: a writer learns
// the position of its last event from [AppendResult.Position] or
// [Result.Position], and a reader can wait until a projection's
// checkpoint reaches it before answering (package cqrs builds
// read-your-writes on this). Subscriptions never drop: they pull from the
// log, so a slow subscriber falls back to catch-up reading instead of
// being disconnected, and writers never wait for readers.
//
// # Schema evolution
//
// Stored events are never rewritten. Each event type has one current
// version bound to a Go type ([Register]); older versions, and types that
// were renamed, reach it through [Upcaster] chains that rewrite the payload
// on read ([Registry.AddUpcaster], [UpcastWith] for typed steps). The
// registry validates the chains before first use: no cycles, no dead ends,
// no missing versions; an event it cannot decode is an
// [*UnknownEventError] that names the type and version.
//
// Snapshots record the aggregate type, the stream version and the schema
// version of the encoded state ([RepositoryConfig.SnapshotSchemaVersion]).
// Raise the schema version whenever the state's shape changes: a snapshot
// that does not match (or is corrupt, or claims a version its stream does
// not have) is logged, discarded and rebuilt by replaying the stream. A
// snapshot is only a cache; a load never fails because of one.
//
// # Storage growth
//
// The log only grows, so plan for it: snapshots make the cost of loading
// an aggregate depend on the events since the last snapshot, not on the
// stream's length ([RepositoryConfig.SnapshotEvery]); model long-lived
// entities as a series of streams ("closing the books": one stream per
// account and period, the next opened with a balance carried forward) so
// no single stream grows without bound; and archive old streams from a
// durable store's adapter. [MemoryStore] keeps everything in memory for
// its lifetime; [MemoryStore.Stats] reports its size.
//
// # Usage
//
// Define events as plain types and register them, define the aggregate's
// state with an Apply method, and run commands through a repository:
//
//	type Deposited struct{ Amount int64 }
//
//	type Account struct{ Balance int64 }
//
//	func (a *Account) Apply(e any) error {
//		switch e := e.(type) {
//		case Deposited:
//			a.Balance += e.Amount
//		}
//		return nil
//	}
//
//	reg := eventsource.NewRegistry(nil) // JSON
//	_ = eventsource.Register[Deposited](reg, "account.deposited", 1)
//	store := eventsource.NewMemoryStore()
//	accounts, _ := eventsource.NewRepository(store, reg, eventsource.RepositoryConfig[*Account]{
//		Type:            "account",
//		Snapshots:       eventsource.NewMemorySnapshotStore(),
//		ConflictRetries: 3,
//	})
//	res, err := accounts.Execute(ctx, "42", func(a *Account) ([]any, error) {
//		return []any{Deposited{Amount: 100}}, nil
//	})
//
// [Repository.LoadVersion] and [Repository.LoadAsOf] answer time-travel
// questions. For read models, implement [Projection] (or use
// [MemoryProjection]) and run a [Projector]; [Rebuild] builds a new read
// model from the start of the log. To follow the log directly, range over
// [Subscribe].
//
// # Implementing a store
//
// A [Store] adapter must pass eventsourcetest.Run, and a [SnapshotStore]
// eventsourcetest.RunSnapshotStore. The hard parts for a database are the
// ones the suite checks hardest: positions must equal commit order (for
// example, assign them under a lock taken at commit, not from a sequence at
// insert), and [Store.Wait] must wake on commits (LISTEN/NOTIFY or
// polling). [Subscribe] and [Projector] are built on the interface alone,
// so an adapter gets them for free.
package eventsource
