package pubsub

import (
	"context"
	"maps"
)

// Correlation travels in contexts: a publisher puts a correlation ID (and
// W3C trace context) in the context it passes to Publish, the broker
// copies them into the message headers, and the handler's context carries
// them again, together with the message itself. A handler that publishes
// with its own context therefore continues the chain without any code:
// the new message keeps the correlation ID and trace context and gets the
// handled message's ID as its causation ID.

type ctxKey int

const (
	correlationKey ctxKey = iota
	traceKey
	messageKey
	handlerKey
)

type traceContext struct{ parent, state string }

// ContextWithCorrelationID returns a context that carries id as the
// correlation ID of messages published with it.
func ContextWithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey, id)
}

// CorrelationID returns the correlation ID carried by ctx: the one set with
// [ContextWithCorrelationID], or else the correlation header of the message
// being handled. It returns "" if there is none.
func CorrelationID(ctx context.Context) string {
	if id, ok := ctx.Value(correlationKey).(string); ok {
		return id
	}
	if m := MessageFromContext(ctx); m != nil {
		return m.Headers[HeaderCorrelationID]
	}
	return ""
}

// ContextWithTraceParent returns a context that carries W3C Trace Context
// (the traceparent and tracestate header values) to messages published
// with it. The package does not parse or create spans; a tracing library
// stores its current span here and reads it back with [TraceParent].
func ContextWithTraceParent(ctx context.Context, traceparent, tracestate string) context.Context {
	return context.WithValue(ctx, traceKey, traceContext{traceparent, tracestate})
}

// TraceParent returns the W3C trace context carried by ctx: the one set
// with [ContextWithTraceParent], or else the headers of the message being
// handled.
func TraceParent(ctx context.Context) (traceparent, tracestate string) {
	if tc, ok := ctx.Value(traceKey).(traceContext); ok {
		return tc.parent, tc.state
	}
	if m := MessageFromContext(ctx); m != nil {
		return m.Headers[HeaderTraceParent], m.Headers[HeaderTraceState]
	}
	return "", ""
}

// ContextWithMessage returns a context carrying m as the message being
// handled. Backends call it to build a handler's context; handlers read it
// back with [MessageFromContext], and Publish uses it for causation and
// correlation.
func ContextWithMessage(ctx context.Context, m *Message) context.Context {
	return context.WithValue(ctx, messageKey, m)
}

// MessageFromContext returns the message being handled, or nil when ctx is
// not a handler's context.
func MessageFromContext(ctx context.Context) *Message {
	m, _ := ctx.Value(messageKey).(*Message)
	return m
}

// HandlerName returns the name of the [Router] handler running with ctx,
// or "" outside a router.
func HandlerName(ctx context.Context) string {
	s, _ := ctx.Value(handlerKey).(string)
	return s
}

// InjectHeaders adds the correlation ID, causation ID and trace context
// carried by ctx to m's headers, keeping any that m already sets. It
// copies m.Headers before changing it, so a map shared with other
// messages is never modified. Backends call it from Publish; it does not
// allocate when ctx carries nothing.
func InjectHeaders(ctx context.Context, m *Message) {
	corr := CorrelationID(ctx)
	var cause string
	if h := MessageFromContext(ctx); h != nil {
		cause = h.ID
	}
	tp, ts := TraceParent(ctx)
	if corr == "" && cause == "" && tp == "" {
		return
	}
	copied := false
	set := func(name, value string) {
		if value == "" {
			return
		}
		if _, ok := m.Headers[name]; ok {
			return
		}
		if !copied {
			h := make(map[string]string, len(m.Headers)+4)
			maps.Copy(h, m.Headers)
			m.Headers = h
			copied = true
		}
		m.Headers[name] = value
	}
	set(HeaderCorrelationID, corr)
	set(HeaderCausationID, cause)
	set(HeaderTraceParent, tp)
	set(HeaderTraceState, ts)
}

func withHandlerName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, handlerKey, name)
}
