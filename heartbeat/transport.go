package heartbeat

import "context"

// Packet is one datagram received by a [Transport].
type Packet struct {
	// From is the sender's address, in the form the transport's Send
	// accepts, so a reply can be sent to it.
	From string
	// Data is the payload. It belongs to the receiver, which may keep or
	// modify it.
	Data []byte
}

// Transport moves datagrams between addresses. It is the only thing a
// [Monitor] or a [Node] needs from the network, and it is deliberately
// general: other packages (distkit's election, for one) and your own
// protocols can send their own messages over the same implementations.
//
// The contract, which every implementation must honour and which
// [github.com/distkit/distkit/heartbeat/heartbeattest.TestTransport]
// checks:
//
//   - Delivery is best effort, like UDP: a datagram may be lost,
//     duplicated, delayed or reordered, and Send does not report that.
//     Protocols above a Transport must tolerate all four (heartbeat
//     does, with incarnations and sequence numbers).
//   - A datagram is delivered whole or not at all; it is never split or
//     merged with another.
//   - Send does not retain payload after it returns; the caller may reuse
//     the buffer at once.
//   - Recv hands each received datagram to exactly one caller. A
//     Transport therefore has one consumer: give each Monitor, Node or
//     protocol its own Transport (its own address or port).
//   - Every method is safe for concurrent use.
//
// [UDPTransport] is the implementation for real networks. Tests inside
// this module use an implementation backed by internal/simnet, a
// deterministic simulated network with drops, delays, partitions and
// crashes.
type Transport interface {
	// LocalAddr returns the address other transports send to in order to
	// reach this one.
	LocalAddr() string
	// Send transmits payload to addr. It returns nil once the datagram is
	// handed to the network, whether or not it arrives. It returns an
	// error wrapping [ErrPacketTooLarge] for a payload the transport
	// cannot carry, [ErrClosed] after Close, an error wrapping ctx.Err()
	// if ctx ends first, and an implementation-specific error for an
	// address it cannot resolve. Send may block briefly (for example on
	// a full socket buffer) but never waits for the receiver.
	Send(ctx context.Context, addr string, payload []byte) error
	// Recv blocks until a datagram arrives and returns it. It returns an
	// error wrapping ctx.Err() if ctx ends first, and [ErrClosed] once
	// the transport is closed. It returns no other error: transient
	// network errors are the implementation's to handle.
	Recv(ctx context.Context) (Packet, error)
	// Close releases the transport: blocked and later Recv and Send
	// calls return [ErrClosed]. It is idempotent and leaves no goroutine
	// behind.
	Close() error
}
