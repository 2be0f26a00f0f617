package ambassador

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// backoff returns the delay before retry n (n >= 1): full jitter, uniform
// in [0, min(MaxDelay, BaseDelay*2^(n-1))).
func (t *Transport) backoff(n int) time.Duration {
	return fullJitter(t.s.baseDelay, t.s.maxDelay, n)
}

func fullJitter(base, maxDelay time.Duration, n int) time.Duration {
	ceil := maxDelay
	if n-1 < 62 && base <= maxDelay>>(n-1) {
		ceil = base << (n - 1)
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}

// parseRetryAfter parses a Retry-After value, in delay-seconds or as an
// HTTP-date, into a wait from now. A date in the past means no wait. It
// reports false for an empty or malformed value.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return time.Duration(1<<63 - 1), true
			}
			return 0, false
		}
		if secs > uint64((1<<63-1)/time.Second) {
			return time.Duration(1<<63 - 1), true
		}
		return time.Duration(secs) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(at.Sub(now), 0), true
}

// retryableError reports whether a transport error is worth retrying: not
// one about the request itself or the upstream's certificate.
func retryableError(err error) bool {
	var (
		mbe      *http.MaxBytesError
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		body     *bodyError
	)
	switch {
	case errors.As(err, &mbe), errors.As(err, &unknown), errors.As(err, &invalid),
		errors.As(err, &hostname), errors.As(err, &body):
		return false
	}
	return !strings.Contains(err.Error(), "unsupported protocol scheme")
}

// sentAnything reports whether a request that failed with err may have
// reached the upstream. Only a failure to connect proves it did not.
func sentAnything(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var dns *net.DNSError
	return !errors.As(err, &dns)
}

// bodyError is a failure to read the request body while preparing it for
// replay; it is the caller's side, so it is never retried.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "ambassador: reading the request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// prepareBody makes the request body replayable when the request may be
// retried or hedged: through GetBody, or by buffering up to MaxBodyBytes.
func (c *call) prepareBody() error {
	r := &c.req
	if r.Body == nil || r.Body == http.NoBody {
		c.replayable = true
		return nil
	}
	if r.GetBody != nil {
		if r.ContentLength <= c.t.s.maxBody {
			c.getBody, c.replayable = r.GetBody, true
		}
		return nil
	}
	if !c.retryable || r.ContentLength > c.t.s.maxBody {
		return nil
	}
	limit := c.t.s.maxBody
	size := limit + 1
	if r.ContentLength > 0 {
		size = r.ContentLength + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(size, 64<<10)))
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		_ = r.Body.Close()
		return &bodyError{err: err}
	}
	if n > limit {
		// Too long to keep: send what was read, then the rest, once.
		r.Body = &multiCloser{Reader: io.MultiReader(bytes.NewReader(buf.Bytes()), r.Body), c: r.Body}
		return nil
	}
	_ = r.Body.Close()
	data := buf.Bytes()
	c.getBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	c.replayable = true
	r.Body, _ = c.getBody()
	r.GetBody = c.getBody
	if r.ContentLength < 0 || (r.ContentLength == 0 && n > 0) {
		r.ContentLength = n
	}
	if r.ContentLength != n {
		return &bodyError{err: fmt.Errorf("ContentLength is %d but the body has %d bytes", r.ContentLength, n)}
	}
	return nil
}

type multiCloser struct {
	io.Reader
	c io.Closer
}

func (m *multiCloser) Close() error { return m.c.Close() }
