package heartbeat

import "errors"

// Errors returned by this package. Compare with [errors.Is]: most are
// wrapped with the detail that caused them.
var (
	// ErrClosed is returned by a closed [Monitor], [Node], [Subscription]
	// or [Transport].
	ErrClosed = errors.New("heartbeat: closed")
	// ErrRunning is returned by Run when the same Monitor or Node is
	// already running.
	ErrRunning = errors.New("heartbeat: already running")
	// ErrInvalidConfig is wrapped by every error that reports a bad
	// configuration field; the message names the field and the reason.
	ErrInvalidConfig = errors.New("heartbeat: invalid config")
	// ErrInvalidPeer is returned by [Monitor.Add] for a peer whose ID is
	// empty or too long, or (in pull mode) whose address is missing.
	ErrInvalidPeer = errors.New("heartbeat: invalid peer")
	// ErrPeerExists is returned by [Monitor.Add] for an ID already tracked.
	ErrPeerExists = errors.New("heartbeat: peer already tracked")
	// ErrUnknownPeer is returned by [Monitor.Remove] for an ID not tracked.
	ErrUnknownPeer = errors.New("heartbeat: unknown peer")
	// ErrTooManyPeers is returned by [Monitor.Add] when the monitor
	// already tracks [MonitorConfig].MaxPeers peers.
	ErrTooManyPeers = errors.New("heartbeat: too many peers")
	// ErrPacketTooLarge is returned by [Transport.Send] for a payload
	// larger than the transport carries.
	ErrPacketTooLarge = errors.New("heartbeat: packet too large")
	// ErrMalformed is wrapped by every error the wire decoder returns for
	// a truncated, oversized, unversioned or otherwise malformed packet.
	// Monitors and nodes drop such packets and count them in
	// [Stats].Malformed.
	ErrMalformed = errors.New("heartbeat: malformed packet")
)
