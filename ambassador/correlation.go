package ambassador

import (
	"context"
	"math/rand/v2"
)

type correlationKey struct{}

// WithCorrelationID returns a copy of ctx that carries id as the
// correlation ID. A [Transport] sends it in [Config.CorrelationHeader] with
// every request made with that context, unless the request already has the
// header.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation ID carried by ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

const hexDigits = "0123456789abcdef"

// putHex writes v as 16 lowercase hex digits into b.
func putHex(b []byte, v uint64) {
	_ = b[15]
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

// newCorrelationID fills b with a random 128-bit ID in hex.
func newCorrelationID(b *[32]byte) {
	putHex(b[:16], rand.Uint64())
	putHex(b[16:], rand.Uint64())
}

// traceParentLen is the length of a version 00 traceparent:
// "00-" trace-id(32) "-" parent-id(16) "-" flags(2).
const traceParentLen = 55

// newTraceParent fills b with a version 00 traceparent that starts a new,
// sampled trace: random non-zero trace and parent IDs.
func newTraceParent(b *[traceParentLen]byte) {
	copy(b[:], "00-")
	hi, lo := rand.Uint64(), rand.Uint64()
	for hi == 0 && lo == 0 {
		hi, lo = rand.Uint64(), rand.Uint64()
	}
	putHex(b[3:19], hi)
	putHex(b[19:35], lo)
	b[35] = '-'
	span := rand.Uint64()
	for span == 0 {
		span = rand.Uint64()
	}
	putHex(b[36:52], span)
	copy(b[52:], "-01")
}

// ValidTraceParent reports whether s is a traceparent header the W3C Trace
// Context recommendation lets a participant pass on: version 00 in the
// exact form version-traceid-parentid-flags with lowercase hex, non-zero
// IDs, or a later version (not ff) with at least those fields, which a
// version 00 participant must accept.
func ValidTraceParent(s string) bool {
	if len(s) < traceParentLen {
		return false
	}
	if !isLowerHex(s[0:2]) || s[0:2] == "ff" || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if s[0:2] == "00" && len(s) != traceParentLen {
		return false
	}
	if len(s) > traceParentLen && s[traceParentLen] != '-' {
		return false
	}
	trace, parent, flags := s[3:35], s[36:52], s[53:55]
	return isLowerHex(trace) && isLowerHex(parent) && isLowerHex(flags) &&
		!allZero(trace) && !allZero(parent)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
