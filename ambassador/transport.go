package ambassador

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/distkit/distkit/circuitbreaker"
)

// Transport is an [http.RoundTripper] that sends each request through the
// policies of its [Config], outermost first: correlation ID and
// traceparent, retries with backoff under a retry budget and the overall
// Timeout, hedging, the host's bulkhead, the host's circuit breaker, the
// per-attempt timeout, and finally the pooled transport. Logs and metrics
// see every attempt and request.
//
// It follows the RoundTripper contract: it does not modify the caller's
// request (headers are added on a copy), it always closes the request
// body, and it returns a response, whatever its status, or an error, never
// both. When the retries run out on a retryable status, the last response
// is returned as is, so the caller sees the upstream's status, headers and
// body.
//
// A Transport is safe for concurrent use and starts no goroutine of its
// own per request: attempts run on the caller's goroutine, except hedged
// copies, each of which runs on the goroutine of the timer that launched
// it and ends once its attempt does. It holds no goroutine when idle, so it
// needs no Close; [Transport.CloseIdleConnections] closes pooled
// connections.
type Transport struct {
	name       string
	base       http.RoundTripper
	s          *settings
	budget     *Budget
	breakers   *circuitbreaker.Group
	bulkhead   *Bulkhead
	hedgeDelay time.Duration
	maxHedges  int
	attemptTO  time.Duration
	timeout    time.Duration
	corrHeader string
	corr       bool
	trace      bool
	logger     *slog.Logger
	metrics    Metrics
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport configured by cfg, or a [*ConfigError] (or the
// circuitbreaker's, for an invalid Breaker.Group) if cfg is invalid.
func New(cfg Config) (*Transport, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	t := &Transport{
		name:       cfg.Name,
		base:       cfg.Transport,
		s:          s,
		hedgeDelay: cfg.Hedge.Delay,
		maxHedges:  orDefault(cfg.Hedge.MaxHedges, 1),
		attemptTO:  cfg.AttemptTimeout,
		timeout:    cfg.Timeout,
		corrHeader: textproto.CanonicalMIMEHeaderKey(orDefault(cfg.CorrelationHeader, defaultCorrelation)),
		corr:       !cfg.DisableCorrelationID,
		trace:      !cfg.DisableTraceParent,
		logger:     cfg.Logger,
		metrics:    cfg.Metrics,
	}
	if t.base == nil {
		if t.base, err = NewHTTPTransport(cfg.Pool); err != nil {
			return nil, err
		}
	}
	if !cfg.Budget.Disable {
		if t.budget, err = NewBudget(cfg.Budget); err != nil {
			return nil, err
		}
	}
	if cfg.Bulkhead.MaxConcurrent > 0 {
		if t.bulkhead, err = NewBulkhead(cfg.Bulkhead); err != nil {
			return nil, err
		}
	}
	if !cfg.Breaker.Disable {
		gc := cfg.Breaker.Group
		userHook := gc.Breaker.OnStateChange
		prefix := ""
		if gc.Breaker.Name != "" {
			prefix = gc.Breaker.Name + "/"
		}
		gc.Breaker.OnStateChange = func(tr circuitbreaker.Transition) {
			t.breakerChanged(tr, tr.Name[min(len(prefix), len(tr.Name)):])
			if userHook != nil {
				userHook(tr)
			}
		}
		if t.breakers, err = circuitbreaker.NewGroup(gc); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// NewClient returns an [http.Client] whose transport is New(cfg). The
// client follows redirects like the default client; its Timeout is zero, so
// bound calls with the request's context or [Config.Timeout].
func NewClient(cfg Config) (*http.Client, error) {
	t, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

// Breakers returns the group of per-host circuit breakers, keyed by
// host:port, or nil if circuit breaking is disabled. Use it to inspect or
// force a host's breaker.
func (t *Transport) Breakers() *circuitbreaker.Group { return t.breakers }

// Budget returns the retry budget, or nil if it is disabled.
func (t *Transport) Budget() *Budget { return t.budget }

// CloseIdleConnections closes the idle connections of the underlying
// transport, if it has such a method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// call is the state of one request: one allocation holds the request
// copy, the added header values and the response body wrapper.
type call struct {
	t        *Transport
	orig     *http.Request
	req      http.Request // the first attempt's request
	ctx      context.Context
	host     string
	start    time.Time
	deadline time.Time // zero if none

	corrID     string
	retryable  bool // method or idempotency key allows retries
	replayable bool // the body can be sent again
	hedgeable  bool
	getBody    func() (io.ReadCloser, error)
	cancelReq  context.CancelCauseFunc // Config.Timeout's context
	stopReq    *time.Timer

	attempts, hedges int
	denied           bool

	vals  [2]string
	idBuf [32]byte
	tpBuf [traceParentLen]byte

	// The response body wrapper.
	body     io.ReadCloser
	slot     *bulkheadEntry
	cancel   context.CancelCauseFunc
	released atomic.Bool
}

// result is the outcome of one attempt.
type result struct {
	resp    *http.Response
	err     error
	outcome Outcome
	sent    bool // the request may have reached the upstream
	slot    *bulkheadEntry
	cancel  context.CancelCauseFunc
	dur     time.Duration
	hedge   int
}

var (
	errHedgeLost = errors.New("ambassador: another hedged attempt won")
	errCanceled  = errors.New("ambassador: request canceled")
)

// RoundTrip sends req through the policies and returns the response or
// the error of the last attempt. See [Transport] for the contract and
// [Config] for each policy.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("ambassador: request has no URL")
	}
	c := &call{t: t, orig: req, host: req.URL.Host, start: time.Now()}
	c.req = *req
	c.ctx = req.Context()
	t.decorate(c)

	if t.timeout > 0 {
		ctx, cancel := context.WithCancelCause(c.ctx)
		c.ctx, c.cancelReq = ctx, cancel
		c.stopReq = time.AfterFunc(t.timeout, func() { cancel(ErrTimeout) })
		c.deadline = c.start.Add(t.timeout)
		c.req = *c.req.WithContext(ctx)
	}
	if d, ok := c.ctx.Deadline(); ok && (c.deadline.IsZero() || d.Before(c.deadline)) {
		c.deadline = d
	}

	upgrade := req.Header.Get("Upgrade") != ""
	c.retryable = t.isRetryable(req)
	if err := c.prepareBody(); err != nil {
		c.end()
		return nil, err
	}
	c.hedgeable = t.hedgeDelay > 0 && c.retryable && c.replayable && !upgrade
	if t.budget != nil {
		t.budget.RequestAt(c.start)
	}

	var res result
	for n := 1; ; n++ {
		c.attempts = n
		r := &c.req
		if n > 1 {
			var err error
			if r, err = c.nextRequest(); err != nil {
				res = result{err: err, outcome: OutcomeError}
				break
			}
		}
		if c.hedgeable {
			res = t.race(c, r, n)
		} else {
			res = t.try(c.ctx, c, r, n, 0, nil)
		}
		delay, retry := t.retryDecision(c, &res, n)
		t.observeAttempt(c, &res, n, retry, delay)
		if !retry {
			break
		}
		discard(&res)
		if err := sleep(c.ctx, delay); err != nil {
			res = result{err: c.ctxError(err), outcome: ctxOutcome(c.ctx)}
			break
		}
	}
	return t.finish(c, &res, upgrade)
}

// decorate adds the correlation ID and the traceparent to c.req, on a copy
// of the header map.
func (t *Transport) decorate(c *call) {
	h := c.orig.Header
	var needCorr, needTrace bool
	if t.corr {
		if v := h[t.corrHeader]; len(v) > 0 && v[0] != "" {
			c.corrID = v[0]
		} else {
			needCorr = true
			c.corrID = CorrelationID(c.ctx)
			if c.corrID == "" {
				newCorrelationID(&c.idBuf)
				// The buffer is never written again: the string is
				// immutable for as long as the call is reachable.
				c.corrID = unsafe.String(&c.idBuf[0], len(c.idBuf))
			}
		}
	}
	if t.trace {
		v := h["Traceparent"]
		needTrace = len(v) == 0 || !ValidTraceParent(v[0])
	}
	if !needCorr && !needTrace {
		return
	}
	nh := make(http.Header, len(h)+2)
	for k, v := range h {
		nh[k] = v
	}
	if needCorr {
		c.vals[0] = c.corrID
		nh[t.corrHeader] = c.vals[0:1:1]
	}
	if needTrace {
		newTraceParent(&c.tpBuf)
		c.vals[1] = unsafe.String(&c.tpBuf[0], len(c.tpBuf))
		nh["Traceparent"] = c.vals[1:2:2]
	}
	c.req.Header = nh
}

// isRetryable reports whether req may be retried on any retryable outcome.
func (t *Transport) isRetryable(req *http.Request) bool {
	if t.s.maxAttempts <= 1 && t.hedgeDelay == 0 {
		return false
	}
	for _, m := range t.s.methods {
		if req.Method == m || (m == http.MethodGet && req.Method == "") {
			return true
		}
	}
	for _, h := range t.s.idemHeaders {
		if req.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// end releases what the call holds outside of any response.
func (c *call) end() {
	if c.stopReq != nil {
		c.stopReq.Stop()
		c.cancelReq(errCanceled)
	}
}

// ctxError returns the error for a context that ended: ErrTimeout for
// Config.Timeout, or the context's error.
func (c *call) ctxError(err error) error {
	if cause := context.Cause(c.ctx); errors.Is(cause, ErrTimeout) {
		return ErrTimeout
	}
	return err
}

func ctxOutcome(ctx context.Context) Outcome {
	if errors.Is(ctx.Err(), context.Canceled) && !errors.Is(context.Cause(ctx), ErrTimeout) {
		return OutcomeCanceled
	}
	return OutcomeTimeout
}

// try makes one attempt: bulkhead, breaker, attempt timeout, transport.
// A non-nil cancel ends ctx, which the caller made for this attempt alone.
func (t *Transport) try(ctx context.Context, c *call, r *http.Request, n, hedge int, cancel context.CancelCauseFunc) result {
	start := time.Now()
	res := result{hedge: hedge, cancel: cancel}
	fail := func(err error, o Outcome) result {
		closeBody(r)
		if res.slot != nil {
			res.slot.release()
		}
		if res.cancel != nil {
			res.cancel(errCanceled)
		}
		return result{err: err, outcome: o, dur: time.Since(start), hedge: hedge}
	}
	if err := ctx.Err(); err != nil {
		return fail(c.ctxError(err), ctxOutcome(ctx))
	}
	if t.bulkhead != nil {
		slot, err := t.bulkhead.acquire(ctx, c.host)
		if err != nil {
			if ctx.Err() != nil {
				return fail(c.ctxError(ctx.Err()), ctxOutcome(ctx))
			}
			return fail(err, OutcomeBulkheadFull)
		}
		res.slot = slot
	}
	var done func(error)
	if t.breakers != nil {
		var err error
		if done, err = t.breakers.Allow(c.host); err != nil {
			return fail(err, OutcomeBreakerOpen)
		}
	}
	var timer *time.Timer
	if t.attemptTO > 0 {
		actx := ctx
		if res.cancel == nil {
			var cf context.CancelCauseFunc
			actx, cf = context.WithCancelCause(ctx)
			res.cancel = cf
		}
		cf := res.cancel
		timer = time.AfterFunc(t.attemptTO, func() { cf(ErrAttemptTimeout) })
		ctx = actx
	}
	if r.Context() != ctx {
		r = r.WithContext(ctx)
	}
	res.sent = true
	resp, err := t.base.RoundTrip(r)
	res.dur = time.Since(start)
	timedOut := timer != nil && !timer.Stop()
	if err == nil && timedOut {
		drain(resp)
		resp, err = nil, context.Cause(ctx)
	}
	if err != nil {
		res.err, res.outcome = err, OutcomeError
		switch cause := context.Cause(ctx); {
		case ctx.Err() == nil:
			res.sent = sentAnything(err)
		case errors.Is(cause, ErrAttemptTimeout):
			res.err, res.outcome = ErrAttemptTimeout, OutcomeTimeout
		case errors.Is(cause, errHedgeLost):
			res.err, res.outcome = errHedgeLost, OutcomeCanceled
		default:
			res.err, res.outcome = c.ctxError(ctx.Err()), ctxOutcome(ctx)
		}
		if done != nil {
			switch res.outcome {
			case OutcomeCanceled:
				done(context.Canceled)
			default:
				done(res.err)
			}
		}
		if res.slot != nil {
			res.slot.release()
			res.slot = nil
		}
		if res.cancel != nil {
			res.cancel(errCanceled)
			res.cancel = nil
		}
		return res
	}
	res.resp = resp
	if done != nil {
		if t.s.failStatuses.has(resp.StatusCode) {
			done(&StatusError{Code: resp.StatusCode})
		} else {
			done(nil)
		}
	}
	return res
}

// retryDecision says whether to retry after res, and after what delay.
func (t *Transport) retryDecision(c *call, res *result, n int) (time.Duration, bool) {
	if n >= t.s.maxAttempts {
		return 0, false
	}
	switch res.outcome {
	case OutcomeResponse:
		if !t.s.retryStatuses.has(res.resp.StatusCode) || !c.retryable || !c.replayable {
			return 0, false
		}
	case OutcomeError, OutcomeTimeout:
		if res.outcome == OutcomeTimeout && !errors.Is(res.err, ErrAttemptTimeout) {
			return 0, false // the request's own deadline
		}
		if !c.replayable || (!c.retryable && res.sent) || !retryableError(res.err) {
			return 0, false
		}
	default:
		return 0, false
	}
	delay := t.backoff(n)
	if res.resp != nil {
		if ra, ok := parseRetryAfter(res.resp.Header.Get("Retry-After"), time.Now()); ok {
			if ra > t.s.maxRetryAfter {
				return 0, false
			}
			delay = ra
		}
	}
	if !c.deadline.IsZero() && time.Now().Add(delay).After(c.deadline) {
		return 0, false
	}
	if t.breakers != nil {
		if s := t.breakers.Get(c.host).State(); s == circuitbreaker.StateOpen || s == circuitbreaker.StateForcedOpen {
			return 0, false
		}
	}
	if t.budget != nil && !t.budget.AllowRetry() {
		c.denied = true
		return 0, false
	}
	return delay, true
}

// finish returns the final result to the caller, wrapping the response
// body when something must happen once it is read or closed.
func (t *Transport) finish(c *call, res *result, upgrade bool) (*http.Response, error) {
	if c.stopReq != nil {
		c.stopReq.Stop()
	}
	t.observeRequest(c, res)
	if res.err != nil {
		c.end()
		return nil, res.err
	}
	resp := res.resp
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols || upgrade && resp.Body != nil && isReadWriter(resp.Body):
		// The body is the upgraded connection, which must stay an
		// io.ReadWriteCloser; it outlives the request's bookkeeping.
		if res.slot != nil {
			res.slot.release()
		}
	case res.slot == nil && res.cancel == nil && c.cancelReq == nil:
	case resp.Body == nil || resp.Body == http.NoBody:
		if res.slot != nil {
			res.slot.release()
		}
		if res.cancel != nil {
			res.cancel(errCanceled)
		}
		c.end()
	default:
		c.body, c.slot, c.cancel = resp.Body, res.slot, res.cancel
		resp.Body = c
	}
	return resp, nil
}

func isReadWriter(b io.ReadCloser) bool {
	_, ok := b.(io.ReadWriteCloser)
	return ok
}

// Read reads the response body; at its end, the host's bulkhead slot is
// released.
func (c *call) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	if err != nil && c.slot != nil && c.released.CompareAndSwap(false, true) {
		c.slot.release()
	}
	return n, err
}

// Close closes the response body, releases the bulkhead slot and ends the
// request's contexts.
func (c *call) Close() error {
	err := c.body.Close()
	if c.slot != nil && c.released.CompareAndSwap(false, true) {
		c.slot.release()
	}
	if c.cancel != nil {
		c.cancel(errCanceled)
	}
	c.end()
	return err
}

// nextRequest returns a fresh copy of the request for attempt 2 and later,
// with a new body.
func (c *call) nextRequest() (*http.Request, error) {
	r := new(http.Request)
	*r = c.req
	if c.getBody != nil {
		b, err := c.getBody()
		if err != nil {
			return nil, err
		}
		r.Body = b
	}
	return r, nil
}

// discard drops a result that will not be returned: drains and closes the
// body so the connection can be reused, frees the slot, ends the context.
func discard(res *result) {
	if res.resp != nil {
		drain(res.resp)
	}
	if res.slot != nil {
		res.slot.release()
	}
	if res.cancel != nil {
		res.cancel(errCanceled)
	}
}

// drain reads a little of a discarded body, so that a small error page
// does not cost the connection, and closes it.
func drain(resp *http.Response) {
	if resp.Body != nil {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		_ = resp.Body.Close()
	}
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Transport) breakerChanged(tr circuitbreaker.Transition, host string) {
	if t.metrics != nil {
		t.metrics.ObserveBreaker(BreakerEvent{Name: t.name, Host: host, From: tr.From, To: tr.To, Reason: tr.Reason, At: tr.At})
	}
	if t.logger != nil {
		level := slog.LevelWarn
		if tr.To == circuitbreaker.StateClosed || tr.To == circuitbreaker.StateHalfOpen {
			level = slog.LevelInfo
		}
		t.logger.LogAttrs(context.Background(), level, "ambassador: breaker "+tr.To.String(),
			slog.String("name", t.name), slog.String("host", host),
			slog.String("from", tr.From.String()), slog.String("to", tr.To.String()),
			slog.String("reason", tr.Reason))
	}
}
