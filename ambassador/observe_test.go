package ambassador_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/ambassador"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer lets the transport's logger write from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) records(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var recs []map[string]any
	dec := json.NewDecoder(bytes.NewReader(l.b.Bytes()))
	for dec.More() {
		var r map[string]any
		require.NoError(t, dec.Decode(&r))
		recs = append(recs, r)
	}
	return recs
}

// TestLogRecordsCarryTheRequestFields guards the structured log contract:
// a retried attempt and the final request each log the method, host, path,
// status, attempt number, duration, breaker state and correlation ID.
func TestLogRecordsCarryTheRequestFields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		var mu sync.Mutex
		upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			first := n == 1
			mu.Unlock()
			if first {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		var buf lockedBuffer
		tr := newTransport(t, ambassador.Config{
			Name:      "prices",
			Transport: handlerTransport{upstream},
			Retry:     ambassador.RetryConfig{BaseDelay: 10 * time.Millisecond},
			Logger:    slog.New(slog.NewJSONHandler(&buf, nil)),
		})
		ctx := ambassador.WithCorrelationID(t.Context(), "order-7")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://prices.internal:8080/v1/items", nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, resp))

		recs := buf.records(t)
		require.Len(t, recs, 2, "one record for the retried attempt, one for the request")
		for _, r := range recs {
			assert.Equal(t, "prices", r["name"])
			assert.Equal(t, "GET", r["method"])
			assert.Equal(t, "prices.internal:8080", r["host"])
			assert.Equal(t, "/v1/items", r["path"])
			assert.Equal(t, "closed", r["breaker"])
			assert.Equal(t, "order-7", r["correlation_id"])
			assert.Contains(t, r, "duration")
		}
		retry, final := recs[0], recs[1]
		assert.Equal(t, "ambassador: retrying", retry["msg"])
		assert.EqualValues(t, 1, retry["attempt"])
		assert.EqualValues(t, 503, retry["status"])
		assert.Contains(t, retry, "delay")
		assert.Equal(t, "ambassador: request", final["msg"])
		assert.EqualValues(t, 200, final["status"])
		assert.EqualValues(t, 2, final["attempts"])
	})
}
