package election

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The wire format shared by the Raft, Bully and remote-store protocols:
// a 3-byte magic, a version, a kind, then the same fields for every kind
// (small, and simple to decode strictly).
var wireMagic = [3]byte{'d', 'k', 'e'}

const (
	wireVersion = 1
	maxWireList = 64 // leases in one List answer
	maxWireSize = 4 + 6*binary.MaxVarintLen64 + 4 + 2*(binary.MaxVarintLen16+MaxIDLen) +
		binary.MaxVarintLen16 + maxWireList*(2*(binary.MaxVarintLen16+MaxIDLen)+2*binary.MaxVarintLen64)
)

// Message kinds.
const (
	kStoreAcquire byte = 1 + iota
	kStoreRenew
	kStoreRelease
	kStoreGet
	kStoreList
	kStoreWatch
	kStoreReply

	kRaftPreVote byte = 20 + iota - 7
	kRaftPreVoteReply
	kRaftVote
	kRaftVoteReply
	kRaftBeat
	kRaftBeatReply
	kRaftResign

	kBullyElection byte = 40 + iota - 14
	kBullyAnswer
	kBullyCoordinator
	kBullyResign
)

// Store reply codes.
const (
	codeOK byte = iota
	codeHeld
	codeLost
	codeNoLease
	codeInvalid
	codeFailed
	codeStillLive // a watch that timed out on the server
)

type wmsg struct {
	kind   byte
	id     uint64 // request ID, or the heartbeat sequence number
	from   string
	term   uint64
	token  uint64 // fencing token or lease epoch
	ok     bool
	code   byte
	key    string
	holder string
	ttl    time.Duration // also a watch's wait
	leases []Lease
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (m *wmsg) append(b []byte) ([]byte, error) {
	if len(m.from) > MaxIDLen || len(m.key) > MaxIDLen || len(m.holder) > MaxIDLen {
		return b, fmt.Errorf("%w: field longer than %d bytes", ErrMalformed, MaxIDLen)
	}
	if len(m.leases) > maxWireList {
		return b, fmt.Errorf("%w: %d leases in one message, at most %d", ErrMalformed, len(m.leases), maxWireList)
	}
	b = append(b, wireMagic[:]...)
	b = append(b, wireVersion, m.kind)
	b = binary.AppendUvarint(b, m.id)
	b = appendStr(b, m.from)
	b = binary.AppendUvarint(b, m.term)
	b = binary.AppendUvarint(b, m.token)
	var ok byte
	if m.ok {
		ok = 1
	}
	b = append(b, ok, m.code)
	b = appendStr(b, m.key)
	b = appendStr(b, m.holder)
	b = binary.AppendVarint(b, int64(m.ttl))
	b = binary.AppendUvarint(b, uint64(len(m.leases)))
	for _, l := range m.leases {
		if len(l.Key) > MaxIDLen || len(l.Holder) > MaxIDLen {
			return b, fmt.Errorf("%w: lease field longer than %d bytes", ErrMalformed, MaxIDLen)
		}
		b = appendStr(b, l.Key)
		b = appendStr(b, l.Holder)
		b = binary.AppendUvarint(b, l.Epoch)
		b = binary.AppendVarint(b, int64(l.TTL))
	}
	return b, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail(what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str(what string) string {
	n := r.uvarint(what)
	if r.err != nil || n > MaxIDLen || n > uint64(len(r.b)) {
		r.fail(what)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decode parses one message. Every malformed input gives an error
// wrapping [ErrMalformed]; none panics.
func decode(b []byte) (wmsg, error) {
	var m wmsg
	if len(b) > maxWireSize {
		return m, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), maxWireSize)
	}
	if len(b) < 5 || [3]byte(b[:3]) != wireMagic {
		return m, fmt.Errorf("%w: not an election packet", ErrMalformed)
	}
	if b[3] != wireVersion {
		return m, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[3], wireVersion)
	}
	m.kind = b[4]
	r := &reader{b: b[5:]}
	m.id = r.uvarint("id")
	m.from = r.str("from")
	m.term = r.uvarint("term")
	m.token = r.uvarint("token")
	switch r.byte("ok") {
	case 0:
	case 1:
		m.ok = true
	default:
		r.fail("ok")
	}
	m.code = r.byte("code")
	m.key = r.str("key")
	m.holder = r.str("holder")
	m.ttl = time.Duration(r.varint("ttl"))
	n := r.uvarint("lease count")
	if n > maxWireList {
		r.fail("lease count")
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		l := Lease{Key: r.str("lease key"), Holder: r.str("lease holder"), Epoch: r.uvarint("lease epoch"), TTL: time.Duration(r.varint("lease ttl"))}
		m.leases = append(m.leases, l)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return wmsg{}, r.err
	}
	return m, nil
}
