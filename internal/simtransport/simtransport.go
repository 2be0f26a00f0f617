// Package simtransport adapts an internal/simnet node to
// heartbeat.Transport, so that heartbeat, and protocols built on its
// transports (such as election), run on the deterministic simulated
// network in tests: drops, delays, duplicates, reordering, partitions and
// crashes, on synctest fake time.
package simtransport

import (
	"context"
	"errors"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
)

// Transport is a heartbeat.Transport over one simnet node. It is safe
// for concurrent use.
type Transport struct {
	node *simnet.Node
}

var _ heartbeat.Transport = (*Transport)(nil)

// New returns a transport sending and receiving as node. Closing the
// transport closes the node.
func New(node *simnet.Node) *Transport { return &Transport{node: node} }

// Listen registers a node at addr on net and returns its transport.
func Listen(net *simnet.Network, addr string) (*Transport, error) {
	nd, err := net.Node(addr)
	if err != nil {
		return nil, err
	}
	return New(nd), nil
}

// LocalAddr returns the node's address.
func (t *Transport) LocalAddr() string { return t.node.Addr() }

// Send hands payload to the simulated network. It returns
// heartbeat.ErrClosed once the node or network is closed and an error
// wrapping ctx.Err() if ctx has ended.
func (t *Transport) Send(ctx context.Context, addr string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.node.Send(addr, payload); err != nil {
		if errors.Is(err, simnet.ErrClosed) {
			return heartbeat.ErrClosed
		}
		return err
	}
	return nil
}

// Recv returns the next packet delivered to the node. It returns
// heartbeat.ErrClosed once the node or network is closed.
func (t *Transport) Recv(ctx context.Context) (heartbeat.Packet, error) {
	p, err := t.node.Recv(ctx)
	if err != nil {
		if errors.Is(err, simnet.ErrClosed) {
			return heartbeat.Packet{}, heartbeat.ErrClosed
		}
		return heartbeat.Packet{}, err
	}
	return heartbeat.Packet{From: p.From, Data: p.Payload}, nil
}

// Close closes the node. It is idempotent.
func (t *Transport) Close() error { return t.node.Close() }
