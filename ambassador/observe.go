package ambassador

import (
	"log/slog"
	"time"
)

func (r *result) status() int {
	if r.resp != nil {
		return r.resp.StatusCode
	}
	return 0
}

// observeAttempt reports one attempt to the metrics and, when it is
// retried or is a hedged copy, to the logger. Hedged copies call it from
// their own goroutines: it reads only what does not change during a call.
func (t *Transport) observeAttempt(c *call, res *result, n int, retry bool, delay time.Duration) {
	if t.metrics != nil {
		t.metrics.ObserveAttempt(AttemptEvent{
			Name: t.name, Host: c.host, Method: c.orig.Method, Attempt: n, Hedge: res.hedge,
			Outcome: res.outcome, Status: res.status(), Err: res.err, Duration: res.dur, Retry: retry,
		})
	}
	if t.logger == nil || !(retry || res.hedge > 0) {
		return
	}
	ctx := c.orig.Context()
	if !t.logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	msg := "ambassador: attempt"
	if retry {
		msg = "ambassador: retrying"
	}
	attrs := append(t.common(c), slog.Int("attempt", n), slog.Int("hedge", res.hedge),
		slog.String("outcome", res.outcome.String()), slog.Int("status", res.status()),
		slog.Duration("duration", res.dur))
	if res.err != nil {
		attrs = append(attrs, slog.String("error", res.err.Error()))
	}
	if retry {
		attrs = append(attrs, slog.Duration("delay", delay))
	}
	t.logger.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// observeRequest reports the request's final result.
func (t *Transport) observeRequest(c *call, res *result) {
	dur := time.Since(c.start)
	if t.metrics != nil {
		t.metrics.ObserveRequest(RequestEvent{
			Name: t.name, Host: c.host, Method: c.orig.Method, Outcome: res.outcome,
			Status: res.status(), Err: res.err, Attempts: c.attempts, Hedges: c.hedges,
			RetryDenied: c.denied, Duration: dur,
		})
	}
	if t.logger == nil {
		return
	}
	level := slog.LevelInfo
	if res.err != nil || res.status() >= 500 {
		level = slog.LevelWarn
	}
	ctx := c.orig.Context()
	if !t.logger.Enabled(ctx, level) {
		return
	}
	attrs := append(t.common(c), slog.Int("status", res.status()), slog.Int("attempts", c.attempts),
		slog.Duration("duration", dur))
	if c.hedges > 0 {
		attrs = append(attrs, slog.Int("hedges", c.hedges))
	}
	if c.denied {
		attrs = append(attrs, slog.Bool("retry_denied", true))
	}
	if res.err != nil {
		attrs = append(attrs, slog.String("outcome", res.outcome.String()), slog.String("error", res.err.Error()))
	}
	t.logger.LogAttrs(ctx, level, "ambassador: request", attrs...)
}

// common returns the attributes every record carries.
func (t *Transport) common(c *call) []slog.Attr {
	attrs := make([]slog.Attr, 0, 16)
	if t.name != "" {
		attrs = append(attrs, slog.String("name", t.name))
	}
	attrs = append(attrs, slog.String("method", c.orig.Method), slog.String("host", c.host),
		slog.String("path", orSlash(c.orig.URL.Path)))
	if t.breakers != nil {
		attrs = append(attrs, slog.String("breaker", t.breakers.Get(c.host).State().String()))
	}
	if c.corrID != "" {
		attrs = append(attrs, slog.String("correlation_id", c.corrID))
	}
	return attrs
}

func orSlash(p string) string {
	if p == "" {
		return "/"
	}
	return p
}
