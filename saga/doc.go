// Package saga implements the saga pattern: a business transaction that
// spans several services, each doing a local transaction in its own
// database, kept consistent without distributed locks or two-phase
// commit. When a step fails, the steps that completed are undone by
// compensating transactions (refund the payment, cancel the booking), so
// the system ends consistent either way: every step done, or every
// completed step compensated. In between, the system is eventually
// consistent: another reader may see the flight booked before the car has
// failed.
//
// The package gives you both ways of running sagas:
//
//   - Orchestration: a [Coordinator] runs a [Definition], a validated
//     graph of [Step]s, calling each service in dependency order and the
//     compensations in reverse, writing every transition to a durable log
//     ([Store]) before it takes effect, so that a new coordinator can
//     resume what a crashed one left.
//   - Choreography: no coordinator; each service reacts to an event on
//     package pubsub and publishes the next one, or a compensating one
//     ([Participant], [Publish]), while a [ProcessManager] watches the
//     instances go by and times out the ones that stall.
//
// # Orchestration or choreography
//
// Orchestrate when the flow has more than two or three steps, when it
// branches or runs steps in parallel, when you need to know where each
// instance is, or when operators must be able to retry, compensate or
// abort an instance: the flow is in one place, readable and testable, and
// the coordinator's log is the answer to "what happened to order 42". The
// coordinator is one more component to run, and the services it calls are
// coupled to it (it knows them all).
//
// Choreograph when a few services already exchange events and the flow is
// short and linear: there is no central component, and services stay
// decoupled (each knows only the events it reacts to and publishes). The
// flow, though, is spread over every service; cycles and forgotten
// compensations are easy to build and hard to see. The [ProcessManager]
// gives the missing overview.
//
// # Defining and running a saga
//
// A step has an action and, usually, a compensation. Steps name the steps
// they depend on; steps with no dependency between them run in parallel.
// [NewDefinition] refuses cycles, unknown or repeated dependencies and
// duplicate names with a [*DefinitionError]:
//
//	trip, err := saga.NewDefinition("trip",
//		saga.Step{Name: "flight", Action: bookFlight, Compensate: cancelFlight},
//		saga.Step{Name: "hotel", DependsOn: []string{"flight"}, Action: bookHotel, Compensate: cancelHotel},
//		saga.Step{Name: "car", DependsOn: []string{"flight"}, Action: rentCar, Compensate: returnCar},
//	)
//	c, err := saga.New(store, []*saga.Definition{trip}, saga.Config{Logger: logger})
//	st, err := c.Execute(ctx, "trip", tripID, input)
//	switch {
//	case err == nil: // every step succeeded
//	case errors.Is(err, saga.ErrCompensated): // a step failed (or ctx was cancelled); all undone
//	case errors.Is(err, saga.ErrStuck): // parked: an operator must look (see below)
//	default: // interrupted (store error, crash): Recover will finish it
//	}
//
// On start, and periodically, a coordinator calls [Coordinator.Recover] to
// resume every saga that a crashed coordinator left unfinished.
//
// # Failures, retries and timeouts
//
// Each attempt of a step runs under its [Policy]: a timeout, a bounded
// number of attempts, exponential backoff with jitter between them, and a
// classification of its error ([Outcome]):
//
//   - success: the step took effect; its output is recorded.
//   - business failure, an error made with [Fail] ("card declined", "no
//     cars left"): the step did not take effect and will not. The saga
//     stops going forward, waits for the steps running in parallel, and
//     compensates.
//   - unknown outcome, any other error (a timeout, a lost reply, a 503):
//     the step may or may not have taken effect. It is retried with the
//     same idempotency key; when its attempts run out the saga is parked
//     as [Stuck] for an operator instead of guessing.
//
// Compensations run in the reverse dependency order (a step is
// compensated only after every step that depends on it; independent ones
// in parallel), for every step that succeeded and every step whose outcome
// is unknown. They run on a context that the caller's cancellation cannot
// stop, bounded by [Config.CompensationTimeout]: cancelling Execute's
// context compensates what completed rather than leaving it half done.
// Compensations are retried; one that keeps failing, or fails with [Fail]
// ("cannot be compensated"), parks the saga.
//
// # Durability and recovery
//
// Every transition is a [Record] appended to the saga's log before it
// takes effect: the intent ([RecordStepStarted]) before an action runs,
// its result after. A coordinator that crashes anywhere leaves a log from
// which another coordinator resumes the saga ([Coordinator.Resume],
// [Coordinator.Recover]): a step whose intent has no result is retried
// (its outcome is unknown), a saga that had turned back keeps
// compensating. Attempts cut short by crashes count against the step's
// budget, so a step that crashes its coordinator parks the saga instead of
// crash-looping.
//
// The log's optimistic concurrency ([Store.Append] with an expected
// version) keeps one writer per saga instance: of two coordinators that
// resume the same saga, the first to append wins and the other stops
// ([ErrConflict]). [MemoryStore] is the reference store; [EventStore]
// keeps each saga as a stream of an eventsource.Store, which is also the
// saga's audit trail. Other stores must pass the suite in package
// sagatest.
//
// # Exactly-once step effects
//
// The coordinator calls each action and compensation at least once: a
// retry after a timeout, or a new coordinator after a crash, calls again.
// Effects happen exactly once when the step's service applies each
// idempotency key once. Every invocation carries a [Key] (saga ID, step,
// action or compensation; [Call.Key]), the same for every attempt by any
// coordinator; send it to the service (as an Idempotency-Key header, for
// example) and guard the service's local transaction with
// [BarrierAction] and [BarrierCompensation] (or, for a service with
// in-memory state, a [MemoryBarrier]). They give the three guarantees
// known as a saga barrier:
//
//   - a repeated action or compensation takes effect once, and a repeated
//     action returns the output of the first;
//   - a compensation for an action the service never applied (its
//     request was lost) is a recorded no-op;
//   - an action that arrives after its compensation (a request delayed in
//     the network) is refused, as a business failure ([ErrLateAction]).
//
// What this needs from the service: the barrier's marks must be written
// in the same local transaction as the business effect (a table next to
// the service's own, see [BarrierTx]), and two deliveries of one key must
// serialize. Without that, exactly-once degrades to at-least-once.
//
// # Operating sagas
//
// [Coordinator.List] finds sagas by state (every stuck saga, say);
// [Coordinator.Status] shows one step by step. [Coordinator.Retry] gives a
// stuck saga fresh attempts, [Coordinator.Compensate] forces one to turn
// back (even while it runs), and [Coordinator.Abort] ends one where it is
// when things were put right by hand. Each log line the coordinator writes
// carries the saga's ID ("saga_id").
//
// # Choreography
//
// [Publish] starts a choreographed saga by publishing its first event with
// the saga ID in [HeaderSagaID] and as the correlation ID. Each service
// registers a [Participant] handler on a pubsub router: it is called once
// per saga and event type (redeliveries and republished events are
// deduplicated), does its local transaction, and returns the events to
// publish next, which keep the saga ID and get deterministic message IDs
// (so a retried handler does not publish twice). A [ProcessManager]
// subscribed to the saga's topics tracks each instance's progress and,
// from [ProcessManager.Run], marks stalled instances and calls
// [ProcessManagerConfig.OnStall], typically to publish a compensating
// event.
package saga
