// Package simnet is an in-memory, deterministic network for testing
// multi-node protocols (heartbeats, leader election, shard rebalancing)
// without sockets.
//
// A [Network] connects [Node]s identified by string addresses. [Node.Send]
// copies the payload and hands it to the network, which decides, from a
// seeded math/rand/v2 source and the current fault settings, whether the
// packet is dropped, duplicated, delayed or reordered. Surviving packets
// land in the receiver's bounded inbox ([Node.Inbox], [Node.Recv]); a full
// inbox drops the packet, as a UDP socket buffer would.
//
// # Faults
//
// All faults can be changed while the network runs:
//
//   - per-link behaviour ([LinkConfig]: drop, duplicate and reorder
//     probabilities and a uniformly drawn delay range), set as the default
//     with [Network.SetDefault] or per directed link with [Network.SetLink];
//   - [Network.Partition] splits the nodes into groups that cannot talk to
//     each other, [Network.Heal] removes every partition and cut;
//   - [Network.Cut] severs one direction of one link;
//   - [Network.Crash] isolates a node, discards its inbox and everything in
//     flight to it; [Network.Restart] reconnects it.
//
// Partitions, cuts and crashes are checked both when a packet is sent and
// when it is due for delivery, so nothing crosses a partition that was
// raised while the packet was in flight.
//
// # Ordering
//
// Links are FIFO by default: a packet is never delivered before an earlier
// packet sent on the same directed link, even when the delays drawn would
// say otherwise. [LinkConfig.Reorder] is the probability that a packet
// escapes that rule and is delivered purely by its own delay.
//
// # Determinism and time
//
// Every random choice comes from one source seeded by [Config.Seed], drawn
// in the order packets are sent, and due deliveries are made in (time,
// sequence) order from a single timer. The same seed and the same sequence
// of sends therefore give the same deliveries. Delays use the time package,
// so inside a testing/synctest bubble the network runs on fake time and a
// test of a five-minute protocol takes microseconds.
//
// # Observability
//
// [Network.Stats] counts what happened; with [Config.Trace] set, every
// send, delivery, drop and fault change is recorded and [Network.WriteTrace]
// prints it, which is what a failing seeded test should log.
//
// A Network and its Nodes are safe for concurrent use. [Network.Close]
// stops the delivery timer, closes every inbox and leaves no goroutine
// behind.
package simnet
