package pubsub_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/pubsub"
)

type order struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func TestTypedRoundTrip(t *testing.T) {
	m, err := pubsub.Marshal(nil, order{"o1", 42})
	require.NoError(t, err)
	require.Equal(t, "application/json", m.Header(pubsub.HeaderContentType))
	require.NotEmpty(t, m.ID)
	var got order
	h := pubsub.Typed(nil, func(_ context.Context, o order, _ *pubsub.Message) error { got = o; return nil })
	require.NoError(t, h(t.Context(), m))
	require.Equal(t, order{"o1", 42}, got)

	err = h(t.Context(), pubsub.NewMessage([]byte("{not json")))
	require.ErrorIs(t, err, pubsub.ErrPermanent, "undecodable payloads are not retried")
	_, err = pubsub.Marshal(nil, make(chan int))
	require.Error(t, err)
}

func TestInjectHeadersDoesNotModifySharedHeaders(t *testing.T) {
	shared := map[string]string{"a": "b"}
	m := &pubsub.Message{Headers: shared}
	ctx := pubsub.ContextWithCorrelationID(t.Context(), "c1")
	pubsub.InjectHeaders(ctx, m)
	require.Equal(t, map[string]string{"a": "b"}, shared)
	require.Equal(t, "c1", m.Header(pubsub.HeaderCorrelationID))

	// Headers the message sets win over the context.
	m2 := &pubsub.Message{Headers: map[string]string{pubsub.HeaderCorrelationID: "own"}}
	pubsub.InjectHeaders(ctx, m2)
	require.Equal(t, "own", m2.Header(pubsub.HeaderCorrelationID))

	// Nothing to add: no allocation, no map.
	m3 := &pubsub.Message{}
	require.Zero(t, testing.AllocsPerRun(10, func() { pubsub.InjectHeaders(context.Background(), m3) }))
	require.Nil(t, m3.Headers)
}

func TestNewIDIsUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := pubsub.NewID()
		require.Len(t, id, 32)
		require.False(t, seen[id])
		seen[id] = true
	}
}

func TestErrorsMatchTheirSentinels(t *testing.T) {
	base := errors.New("x")
	require.ErrorIs(t, &pubsub.QueueFullError{Subscription: "s"}, pubsub.ErrQueueFull)
	require.ErrorIs(t, &pubsub.UndeliveredError{}, pubsub.ErrUndelivered)
	require.ErrorIs(t, &pubsub.PublishError{Published: 1, Err: base}, base)
	require.ErrorIs(t, pubsub.RetryAfter(1, base), base)
	require.Nil(t, pubsub.RetryAfter(1, nil))
	require.Nil(t, pubsub.Permanent(nil))
	require.ErrorIs(t, pubsub.Permanent(base), base)
	require.ErrorIs(t, &pubsub.PanicError{Value: base}, base)
}
