package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of [UDPConfig].
const (
	// DefaultUDPRecvQueue is the number of datagrams queued between the
	// socket and [UDPTransport.Recv] when [UDPConfig].RecvQueue is 0.
	DefaultUDPRecvQueue = 1024
	// DefaultUDPMaxPacket is the largest datagram sent or received when
	// [UDPConfig].MaxPacketSize is 0: the largest UDP payload over IPv4.
	DefaultUDPMaxPacket = 65507
)

// resolveTTL is how long a resolved host name is reused by Send.
const resolveTTL = time.Minute

// UDPConfig configures a [UDPTransport]. The zero value is ready to use.
type UDPConfig struct {
	// RecvQueue bounds the datagrams read from the socket but not yet
	// taken by Recv. When it is full the reader stops reading and the
	// kernel's socket buffer absorbs (then drops) the excess, as it
	// would for any UDP reader. 0 means [DefaultUDPRecvQueue].
	RecvQueue int
	// MaxPacketSize is the largest payload Send accepts and Recv
	// returns; larger received datagrams are dropped and counted in
	// [UDPStats].Oversize. 0 means [DefaultUDPMaxPacket].
	MaxPacketSize int
	// ReadBuffer and WriteBuffer set the socket's kernel buffer sizes
	// (SO_RCVBUF, SO_SNDBUF). 0 keeps the operating system's default.
	ReadBuffer, WriteBuffer int
}

// UDPStats counts what a [UDPTransport] did.
type UDPStats struct {
	Sent       uint64 // datagrams handed to the socket
	Received   uint64 // datagrams queued for Recv
	Oversize   uint64 // received datagrams larger than MaxPacketSize, dropped
	ReadErrors uint64 // transient socket read errors, skipped
	SendErrors uint64 // Send calls the socket refused
}

// UDPTransport is a [Transport] over one UDP socket, for heartbeats (or
// any datagram protocol) between processes and hosts. Addresses are
// "host:port" strings; host names are resolved on first use and the
// result is reused for a minute.
//
// It owns one goroutine, which reads the socket into a bounded queue;
// [UDPTransport.Close] stops it and waits for it. A UDPTransport is safe
// for concurrent use.
type UDPTransport struct {
	conn    *net.UDPConn
	local   string
	maxSize int
	queue   chan Packet
	done    chan struct{} // closed by Close
	readerD chan struct{} // closed when the reader exits
	once    sync.Once

	mu       sync.Mutex
	resolved map[string]resolvedAddr // host names -> address
	names    map[netip.AddrPort]string
	stats    UDPStats
}

type resolvedAddr struct {
	ap  netip.AddrPort
	exp time.Time
}

var _ Transport = (*UDPTransport)(nil)

// ListenUDP opens a UDP socket on addr ("127.0.0.1:0" picks a free
// loopback port; ":7946" listens on every interface) and returns a
// transport reading from it. It returns an error wrapping
// [ErrInvalidConfig] for a negative config field and the socket error if
// the address cannot be bound.
func ListenUDP(addr string, cfg UDPConfig) (*UDPTransport, error) {
	if cfg.RecvQueue < 0 || cfg.MaxPacketSize < 0 || cfg.ReadBuffer < 0 || cfg.WriteBuffer < 0 {
		return nil, fmt.Errorf("%w: UDPConfig fields must not be negative: %+v", ErrInvalidConfig, cfg)
	}
	if cfg.MaxPacketSize > DefaultUDPMaxPacket {
		return nil, fmt.Errorf("%w: UDPConfig.MaxPacketSize %d exceeds the UDP limit %d", ErrInvalidConfig, cfg.MaxPacketSize, DefaultUDPMaxPacket)
	}
	if cfg.RecvQueue == 0 {
		cfg.RecvQueue = DefaultUDPRecvQueue
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = DefaultUDPMaxPacket
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: listen udp %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: listen udp %q: %w", addr, err)
	}
	if cfg.ReadBuffer > 0 {
		_ = conn.SetReadBuffer(cfg.ReadBuffer)
	}
	if cfg.WriteBuffer > 0 {
		_ = conn.SetWriteBuffer(cfg.WriteBuffer)
	}
	t := &UDPTransport{
		conn:     conn,
		local:    conn.LocalAddr().String(),
		maxSize:  cfg.MaxPacketSize,
		queue:    make(chan Packet, cfg.RecvQueue),
		done:     make(chan struct{}),
		readerD:  make(chan struct{}),
		resolved: make(map[string]resolvedAddr),
		names:    make(map[netip.AddrPort]string),
	}
	go t.read()
	return t, nil
}

// LocalAddr returns the socket's address, such as "127.0.0.1:41234".
func (t *UDPTransport) LocalAddr() string { return t.local }

// Stats returns a snapshot of the transport's counters.
func (t *UDPTransport) Stats() UDPStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// Send writes payload as one datagram to addr ("host:port"). See
// [Transport.Send] for the contract; a name that does not resolve
// returns the resolver's error.
func (t *UDPTransport) Send(ctx context.Context, addr string, payload []byte) error {
	select {
	case <-t.done:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("heartbeat: udp send: %w", err)
	}
	if len(payload) > t.maxSize {
		return fmt.Errorf("%w: %d bytes > %d", ErrPacketTooLarge, len(payload), t.maxSize)
	}
	ap, err := t.resolve(ctx, addr)
	if err != nil {
		return err
	}
	if _, err := t.conn.WriteToUDPAddrPort(payload, ap); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return ErrClosed
		}
		t.mu.Lock()
		t.stats.SendErrors++
		t.mu.Unlock()
		return fmt.Errorf("heartbeat: udp send to %s: %w", addr, err)
	}
	t.mu.Lock()
	t.stats.Sent++
	t.mu.Unlock()
	return nil
}

func (t *UDPTransport) resolve(ctx context.Context, addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	return t.resolveName(ctx, addr)
}

func (t *UDPTransport) resolveName(ctx context.Context, addr string) (netip.AddrPort, error) {
	now := time.Now()
	t.mu.Lock()
	r, ok := t.resolved[addr]
	t.mu.Unlock()
	if ok && now.Before(r.exp) {
		return r.ap, nil
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("heartbeat: udp address %q: %w", addr, err)
	}
	port, err := net.DefaultResolver.LookupPort(ctx, "udp", portStr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("heartbeat: udp address %q: %w", addr, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, t.network(), host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("heartbeat: resolve %q: %w", addr, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("heartbeat: resolve %q: no address", addr)
	}
	ap := netip.AddrPortFrom(ips[0].Unmap(), uint16(port))
	t.mu.Lock()
	if len(t.resolved) >= maxNameCache {
		clear(t.resolved)
	}
	t.resolved[addr] = resolvedAddr{ap: ap, exp: now.Add(resolveTTL)}
	t.mu.Unlock()
	return ap, nil
}

// network returns the IP family names must resolve to for this socket.
func (t *UDPTransport) network() string {
	if ap, err := netip.ParseAddrPort(t.local); err == nil && ap.Addr().Is4() {
		return "ip4"
	}
	return "ip"
}

// maxNameCache bounds the address caches; past it they are cleared.
const maxNameCache = 4096

// Recv returns the next datagram. See [Transport.Recv].
func (t *UDPTransport) Recv(ctx context.Context) (Packet, error) {
	select {
	case <-t.done:
		return Packet{}, ErrClosed
	default:
	}
	select {
	case p := <-t.queue:
		return p, nil
	case <-t.done:
		return Packet{}, ErrClosed
	case <-ctx.Done():
		return Packet{}, fmt.Errorf("heartbeat: udp recv: %w", ctx.Err())
	}
}

// Close closes the socket, stops the reader goroutine and waits for it.
// Queued datagrams are discarded. It is idempotent and returns nil.
func (t *UDPTransport) Close() error {
	t.once.Do(func() {
		close(t.done)
		_ = t.conn.Close()
		<-t.readerD
	})
	return nil
}

func (t *UDPTransport) read() {
	defer close(t.readerD)
	// One byte more than the limit tells an oversize datagram from one
	// that fits exactly.
	buf := make([]byte, t.maxSize+1)
	for {
		n, ap, err := t.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (for example an ICMP error surfaced by the
			// kernel): count it and keep reading.
			t.mu.Lock()
			t.stats.ReadErrors++
			t.mu.Unlock()
			continue
		}
		if n > t.maxSize {
			t.mu.Lock()
			t.stats.Oversize++
			t.mu.Unlock()
			continue
		}
		p := Packet{From: t.name(ap), Data: append([]byte(nil), buf[:n]...)}
		select {
		case t.queue <- p:
		case <-t.done:
			return
		}
	}
}

// name returns the string form of ap, cached so that a steady stream from
// the same peers does not allocate one per datagram.
func (t *UDPTransport) name(ap netip.AddrPort) string {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Received++
	s, ok := t.names[ap]
	if !ok {
		if len(t.names) >= maxNameCache {
			clear(t.names)
		}
		s = ap.String()
		t.names[ap] = s
	}
	return s
}
