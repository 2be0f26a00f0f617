// Package heartbeat detects failed processes: nodes send (or are asked
// for) periodic heartbeats, and a monitor decides, per node, whether it is
// alive, suspect or dead, and tells subscribers the moment that changes.
// It implements the six heartbeat variants as one package, three failure
// detectors behind one interface, a signed and versioned wire format, and
// a UDP transport; distkit's election package builds on its failure
// signals and its transports.
//
// # The six variants, and when to choose each
//
// All six are configuration of the same two types, [Node] (the monitored
// process) and [Monitor] (the observer), and combine freely.
//
//  1. Push ([NodeConfig].Targets): each node sends a heartbeat to its
//     monitors every Interval. Simplest, and the default. Trade-off: the
//     monitor only hears silence, so congestion or loss on the path looks
//     like a failure; pick a tolerant detector (φ accrual) rather than a
//     short fixed timeout.
//  2. Pull ([MonitorConfig].Pull): the monitor pings each node every
//     Interval and counts the answer as its heartbeat. Nodes send nothing
//     unprompted, the monitor controls the load and measures the round
//     trip itself. Trade-off: detection takes up to one more round trip.
//     Choose it when nodes should not know who watches them, or when the
//     monitor must pace many nodes.
//  3. Diagnostics ([NodeConfig].Diagnostics): heartbeats carry up to
//     [MaxMetrics] key/value metrics (CPU, memory, queue depth) and
//     [PeerStatus].Diagnostics exposes the latest per peer, for decisions
//     subtler than alive/dead (drain a node whose load is high). Trade-off:
//     bigger packets; the callback runs once per Interval.
//  4. Timestamps (always on): every packet carries the sender's wall and
//     monotonic send times. The monitor estimates one-way delay, jitter
//     and clock offset ([Timing]) so an operator can tell a slow network
//     (heartbeats arriving late) from a dead node (heartbeats stopping).
//     The verdict never depends on synchronised clocks: detectors see only
//     the monitor's own monotonic clock, and the delay estimate uses only
//     differences of each clock.
//  5. Acknowledged ([NodeConfig].Ack): the monitor acknowledges each
//     heartbeat, so the node knows whether it is heard ([Node.Paths],
//     [Node.Subscribe]) and measures the round trip, which it reports back
//     for the monitor's delay and offset estimates. Trade-off: twice the
//     packets. Choose it when a node must act on losing its monitors (a
//     leader that should step down when cut off).
//  6. Quorum ([MonitorConfig].Quorum): several monitors exchange their
//     verdicts every Interval, and a peer is reported Dead only while a
//     strict majority of them say so; [Transition].Agreed names who did. A
//     monitor cut off from the others, or from the peer, cannot kill a
//     healthy node alone. Trade-off: one view packet per monitor pair per
//     Interval, and no verdict of death without a majority (the monitors
//     choose consistency over availability, as Paxos and Raft do).
//
// # Detection
//
// A [Detector] turns the arrival times of one peer's heartbeats into a
// suspicion level. Three ship, each a [DetectorFactory] config whose zero
// value is a documented default relative to the heartbeat interval:
//
//   - [PhiAccrualConfig]: the φ accrual detector (Hayashibara et al.,
//     2004) with Akka's defaults (threshold 8, 1000 samples, 100 ms
//     minimum deviation, 3 s acceptable pause at a 1 s interval). It
//     learns each peer's inter-arrival distribution and suspects when a
//     heartbeat this late has become improbable: about
//     mean + acceptable pause + 5.2σ after the last one (4.5 s at 1 s with
//     a steady heartbeat). It adapts to each peer and network. The
//     default.
//   - [ExponentialConfig]: Cassandra's variant, φ = t / (mean · ln 10),
//     which suspects after about 18 mean intervals. Very tolerant of pauses
//     and jitter, slow to detect, needs no variance.
//   - [DeadlineConfig]: a fixed timeout (4 × interval by default).
//     Predictable, but one timeout cannot fit every network: short ones
//     convict slow but healthy peers, long ones detect crashes late.
//
// The package's tests replay one simulated hour (1 s heartbeats, jitter,
// five 2.5 s stalls of a healthy peer, then a crash): φ accrual at the
// defaults makes no false suspicion and suspects the crash within
// interval + acceptable pause + interval; fixed deadlines of 2 and 3 s
// suspect the stalled peer 5 and 4 times while detecting faster, and
// longer ones detect later. Run `go test -run HourTrace -v` for the
// figures.
//
// # States and their guarantees
//
// A tracked peer is [Unknown], then [Alive], [Suspect] (the detector's
// threshold is crossed) and [Dead] (suspect for [MonitorConfig].DeadAfter,
// or by quorum), and back to Alive on a fresh heartbeat. Guarantees:
//
//   - Transitions are published in the order they happen, numbered
//     without gaps ([Transition].Seq), never while an internal lock is
//     held. Each [Subscription] has its own bounded queue: a slow reader
//     loses transitions (and is told how many) rather than stall
//     detection.
//   - A heartbeat counts once. Each node stamps its heartbeats with an
//     incarnation (new on every start) and a sequence number; the monitor
//     drops those from an older incarnation and those whose sequence
//     number is not above the highest seen, so duplicates and reordered
//     packets change nothing. A Dead peer is revived only by evidence sent
//     after the verdict: a heartbeat whose send time (its arrival minus
//     the queueing delay its timestamps reveal) is later, the answer to a
//     later ping, or a new incarnation.
//   - A monitor does not convict peers for its own pauses. It checks its
//     peers every CheckInterval; a longer gap on its monotonic clock
//     means it was not running (a GC stall, a stopped process, an
//     overloaded host), and that time is taken out of its detectors'
//     clock ([MonitorConfig].PauseThreshold), the lesson of memberlist's
//     Lifeguard and Cassandra's local-pause guard.
//   - Completeness: a crashed peer is suspected within the detector's
//     bound and declared dead DeadAfter later (in quorum mode, once a
//     majority of monitors agree, which needs a majority of them to be
//     connected).
//
// What heartbeats cannot guarantee: a failure detector in an asynchronous
// network can always be wrong. A Suspect or Dead peer may be alive behind
// a partition; anything that must never happen twice (two leaders, two
// writers) needs fencing on top, which distkit's election package
// provides.
//
// # Transports and the wire
//
// A [Transport] moves datagrams; [UDPTransport] is the one for real
// networks, and the module's tests use one on a simulated network.
// Packets are compact (about 45 bytes for a heartbeat without
// diagnostics), versioned, and decoded strictly: a truncated, oversized or
// malformed packet is rejected with an error wrapping [ErrMalformed],
// never a panic (the decoder is fuzzed). With [MonitorConfig].Keys and
// [NodeConfig].Keys set, every packet is signed with HMAC-SHA256 and
// unsigned or forged ones are dropped and counted in [Stats], so nobody
// without the key can fake a node's liveness or a monitor's vote. Keys
// rotate by listing the new key first and the old one second. Replays of
// captured packets are rejected by the sequence rules above as long as
// the monitor runs; a restarted monitor may accept one replayed packet
// per node, which at worst marks a dead node alive until its detector
// fires again.
//
// # Usage
//
// A node pushes heartbeats to a monitor over UDP:
//
//	tr, err := heartbeat.ListenUDP(":0", heartbeat.UDPConfig{})
//	node, err := heartbeat.NewNode(tr, heartbeat.NodeConfig{
//		ID:      "worker-1",
//		Targets: []string{"monitor.internal:7946"},
//	})
//	go node.Run(ctx)
//
// The monitor tracks it and reacts to transitions:
//
//	tr, err := heartbeat.ListenUDP(":7946", heartbeat.UDPConfig{})
//	mon, err := heartbeat.NewMonitor(tr, heartbeat.MonitorConfig{
//		ID:    "monitor",
//		Peers: []heartbeat.Peer{{ID: "worker-1"}},
//	})
//	sub := mon.Subscribe()
//	go mon.Run(ctx)
//	for {
//		t, err := sub.Next(ctx)
//		if err != nil {
//			return err
//		}
//		log.Printf("%s: %v -> %v (φ %.1f)", t.Peer, t.From, t.To, t.Level)
//	}
//
// Run blocks until its context ends; Close stops it, waits, and ends the
// subscriptions. Neither closes the transport, which belongs to the
// caller. Every exported type is safe for concurrent use except the
// detectors, which the monitor serialises.
package heartbeat
