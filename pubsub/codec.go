package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
)

// A Codec turns values into message payloads and back. Implementations
// must be safe for concurrent use.
type Codec interface {
	// ContentType names the encoding, for the content-type header.
	ContentType() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to.
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json, content type
// "application/json". A nil Codec argument means JSON.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) ContentType() string                { return "application/json" }
func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Marshal encodes v with c (nil means [JSON]) into a new message with a
// unique ID and the content-type header set.
func Marshal(c Codec, v any) (*Message, error) {
	if c == nil {
		c = JSON
	}
	p, err := c.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("pubsub: encoding %T: %w", v, err)
	}
	m := NewMessage(p)
	m.Headers = map[string]string{HeaderContentType: c.ContentType()}
	return m, nil
}

// Unmarshal decodes m's payload with c (nil means [JSON]) into a T. A
// decoding error is returned as a [Permanent] error: a handler that
// returns it sends the message to the dead-letter topic instead of
// retrying a payload that will never decode.
func Unmarshal[T any](c Codec, m *Message) (T, error) {
	var v T
	if c == nil {
		c = JSON
	}
	if err := c.Unmarshal(m.Payload, &v); err != nil {
		return v, Permanent(fmt.Errorf("pubsub: decoding message %s into %T: %w", m.ID, v, err))
	}
	return v, nil
}

// Typed adapts a function of decoded values into a [Handler]: each message
// is decoded with c (nil means [JSON]) into a T before fn runs. Messages
// that do not decode fail permanently (see [Unmarshal]).
func Typed[T any](c Codec, fn func(ctx context.Context, v T, m *Message) error) Handler {
	return func(ctx context.Context, m *Message) error {
		v, err := Unmarshal[T](c, m)
		if err != nil {
			return err
		}
		return fn(ctx, v, m)
	}
}
