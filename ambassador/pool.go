package ambassador

import (
	"net"
	"net/http"
	"time"
)

// PoolConfig tunes the connection pool of the [http.Transport] that
// [NewHTTPTransport] builds. Go's [http.DefaultTransport] keeps only 2 idle
// connections per host, so a service that calls one upstream at more than
// 2 concurrent requests opens and closes connections all the time; the
// defaults here keep enough idle connections for steady traffic to one
// host. The zero value uses the defaults written beside each field;
// negative values are rejected.
type PoolConfig struct {
	// MaxIdleConns bounds idle connections across all hosts. Zero means
	// 512.
	MaxIdleConns int

	// MaxIdleConnsPerHost bounds idle connections per host. Zero means
	// 128.
	MaxIdleConnsPerHost int

	// MaxConnsPerHost bounds connections per host, idle, dialing and in
	// use; a request that finds them all busy waits for one. Zero means
	// no limit (use [BulkheadConfig] to bound requests with a deadline).
	MaxConnsPerHost int

	// IdleConnTimeout closes connections idle for this long. Zero means
	// 90s.
	IdleConnTimeout time.Duration

	// DialTimeout bounds establishing a TCP connection. Zero means 5s.
	DialTimeout time.Duration

	// KeepAlive is the TCP keep-alive period. Zero means 30s.
	KeepAlive time.Duration

	// TLSHandshakeTimeout bounds the TLS handshake. Zero means 10s.
	TLSHandshakeTimeout time.Duration

	// ResponseHeaderTimeout bounds the wait for response headers after
	// the request is written. Zero means no bound here (see
	// [Config.AttemptTimeout], which also covers dialing and writing).
	ResponseHeaderTimeout time.Duration

	// ExpectContinueTimeout is how long to wait for a 100 Continue when
	// the request says "Expect: 100-continue". Zero means 1s.
	ExpectContinueTimeout time.Duration

	// DisableHTTP2 keeps connections on HTTP/1.1. By default HTTP/2 is
	// negotiated with TLS upstreams that offer it.
	DisableHTTP2 bool
}

const (
	defaultMaxIdleConns          = 512
	defaultMaxIdleConnsPerHost   = 128
	defaultIdleConnTimeout       = 90 * time.Second
	defaultDialTimeout           = 5 * time.Second
	defaultKeepAlive             = 30 * time.Second
	defaultTLSHandshakeTimeout   = 10 * time.Second
	defaultExpectContinueTimeout = time.Second
)

// NewHTTPTransport returns an [http.Transport] tuned by cfg, with proxies
// taken from the environment like [http.DefaultTransport], or a
// [*ConfigError] if a field is negative.
func NewHTTPTransport(cfg PoolConfig) (*http.Transport, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Pool.MaxIdleConns", int64(cfg.MaxIdleConns)},
		{"Pool.MaxIdleConnsPerHost", int64(cfg.MaxIdleConnsPerHost)},
		{"Pool.MaxConnsPerHost", int64(cfg.MaxConnsPerHost)},
		{"Pool.IdleConnTimeout", int64(cfg.IdleConnTimeout)},
		{"Pool.DialTimeout", int64(cfg.DialTimeout)},
		{"Pool.KeepAlive", int64(cfg.KeepAlive)},
		{"Pool.TLSHandshakeTimeout", int64(cfg.TLSHandshakeTimeout)},
		{"Pool.ResponseHeaderTimeout", int64(cfg.ResponseHeaderTimeout)},
		{"Pool.ExpectContinueTimeout", int64(cfg.ExpectContinueTimeout)},
	} {
		if f.v < 0 {
			return nil, negative(f.name)
		}
	}
	d := &net.Dialer{
		Timeout:   orDefault(cfg.DialTimeout, defaultDialTimeout),
		KeepAlive: orDefault(cfg.KeepAlive, defaultKeepAlive),
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     !cfg.DisableHTTP2,
		MaxIdleConns:          orDefault(cfg.MaxIdleConns, defaultMaxIdleConns),
		MaxIdleConnsPerHost:   orDefault(cfg.MaxIdleConnsPerHost, defaultMaxIdleConnsPerHost),
		MaxConnsPerHost:       cfg.MaxConnsPerHost,
		IdleConnTimeout:       orDefault(cfg.IdleConnTimeout, defaultIdleConnTimeout),
		TLSHandshakeTimeout:   orDefault(cfg.TLSHandshakeTimeout, defaultTLSHandshakeTimeout),
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: orDefault(cfg.ExpectContinueTimeout, defaultExpectContinueTimeout),
	}, nil
}
