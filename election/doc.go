// Package election elects one leader among cooperating processes, so
// that one node at a time performs a task (a database primary, a job
// scheduler, the writer of a configuration), and hands every leader a
// fencing token so that the protected resource itself can refuse a
// deposed leader.
//
// # Fencing first
//
// No election algorithm can stop a leader that was paused (a GC pause, a
// stopped VM) or whose packets were delayed from acting after its
// successor was elected: when it resumes, it does not know yet. The only
// real protection is a token that grows with every grant and that the
// resource checks (Kleppmann's fencing tokens, Chubby's sequencers).
// Every [Elector] here grants leadership as a [Term] with a [Term.Token];
// a [Fence] in front of the resource remembers the highest token it has
// seen and refuses older ones with a [*StaleTokenError]. On top of that,
// the term's context ([Term.Context]) is cancelled on the leader's own
// monotonic clock before anyone else can be elected (the lease, sequence
// and Raft electors; within a documented clock-drift bound), so well
// behaved work stops in time and the fence catches the rest.
//
// # The algorithms, and when to pick each
//
// All four implement [Elector]: Run takes part, Campaign blocks until
// this node is elected, Resign steps down, Leader and Observe tell who
// leads (including "no leader").
//
//  1. [LeaseElector]: one lease in a [LeaseStore] (compare-and-set with a
//     TTL; the lease's epoch is the token). The simplest and the usual
//     choice when a coordination store exists (etcd, a SQL database, NATS
//     KV, or the bundled [MemoryStore], in process or served over UDP by
//     a [StoreServer]). Safe as long as the store is linearisable and the
//     leader's clock runs within (LeaseDuration-RenewDeadline)/
//     LeaseDuration of the store's; costs one store write per
//     RetryPeriod; fails over in about LeaseDuration. The store is the
//     single point of truth: no store, no leader.
//  2. [SequenceElector]: ZooKeeper's recipe on the same store. Each
//     candidate holds its own ephemeral entry; the oldest live entry
//     leads; each candidate watches only its predecessor. Same safety
//     and failover as the lease, plus fairness (first come, first
//     served) and no thundering herd; one entry per candidate.
//  3. [RaftElector]: Raft's election with pre-vote and check-quorum,
//     over a datagram transport, no store. The term is the token. Safe
//     with a majority of nodes up and connected, through partitions,
//     loss and restarts (terms and votes persisted in a [TermStore]);
//     a minority side has no leader. Costs a heartbeat per follower per
//     HeartbeatInterval; fails over in one to two election timeouts.
//     Pick it when there is no store to lean on, or when the group of
//     nodes must be self-sufficient.
//  4. [BullyElector]: the greatest live ID leads, failures found by a
//     [heartbeat.Monitor]. Deterministic choice of leader and quick
//     failover, but it is NOT safe under partitions: each side elects
//     its own leader, and a node cut off from the rest (or only believed
//     dead) leads alongside the real one. Its tokens stay unique and
//     grow with every term a node learns of, so a [Fence] still refuses
//     the older leader's writes once the newer one has written, which
//     the package's fault tests show. Use it only behind a fence, or
//     where two leaders for a while do no harm.
//
// Paxos is not offered separately: Raft's election is the same majority
// quorum argument in a form that is easier to operate.
//
// # Consistency over availability
//
// In CAP terms an elector chooses consistency: during a partition the
// lease, sequence and Raft electors give a leader to at most one side
// (the side with the store, or with a majority) and none to the other,
// and while a leader's term may still be live nowhere else is one
// granted, so a failover always waits out the old lease. In PACELC
// terms, even without a partition they trade latency for consistency:
// takeover time is bounded below by the lease or election timeout, not
// by how fast a crash could be noticed. Bully chooses availability and is
// only made safe by fencing.
//
// # Guarantees
//
//   - Tokens are never granted twice. For the lease, sequence and Raft
//     electors they strictly increase from one grant to the next, and a
//     term is granted only after every earlier term's context has ended
//     (with clocks within the drift bound). For Bully they increase along
//     every chain of elections in which the new leader heard of the old.
//   - Term contexts end with a cause: [ErrResigned], [ErrLeadershipLost],
//     [ErrLeaseLost] or [ErrClosed].
//   - Observations never block the elector: each has its own queue of
//     ObserveBuffer changes; a reader that falls behind loses the oldest
//     queued changes (and is told how many in [Event].Skipped), never the
//     latest. No user code runs under the elector's locks.
//   - Close stops every goroutine the elector started, ends the term and
//     releases the lease or entry it holds; a cancelled Campaign leaves
//     no lease or entry behind.
//
// The package's tests check these over 500 seeded scenarios per
// algorithm on a simulated network with partitions (some
// non-transitive: two nodes lose each other but still reach the rest),
// loss, duplication, reordering, delays, crashes, restarts, node stalls
// and worker pauses longer than a lease (5000 with `go test -run
// SafetyUnderFaults ./election -args -soak`; one failing seed replays
// with `-args -seed N`), and run each algorithm over UDP on loopback,
// both between nodes in one process and between separate processes
// (TestProcessFailover kills the leader's process). After the faults stop, a leader known to every node must
// emerge within 2 × LeaseDuration + RetryPeriod for the lease electors,
// 8 × ElectionTimeout for Raft and 3 s for Bully (at the timings in
// sim_test.go); `go test -v -run SafetyUnderFaults` logs the median,
// p99 and maximum measured.
//
// # Usage
//
// Run an elector, campaign, and do the leader's work under the term's
// context, passing its token to the resource:
//
//	store := election.NewMemoryStore() // or an adapter, or a RemoteStore
//	el, err := election.NewLease(store, election.LeaseConfig{ID: "node-1"})
//	go el.Run(ctx)
//	defer el.Close()
//	for {
//		term, err := el.Campaign(ctx)
//		if err != nil {
//			return err
//		}
//		err = doLeaderWork(term.Context(), term.Token())
//		// term.Context() ended: leadership is lost or resigned.
//	}
//
// The resource checks the token:
//
//	var fence election.Fence
//	err := fence.Do(token, func() error { return db.Write(x) })
//	if errors.Is(err, election.ErrStaleToken) {
//		// a newer leader has written: this node was deposed
//	}
//
// Every exported type is safe for concurrent use.
package election
