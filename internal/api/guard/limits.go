package guard

import (
	"log"
	"math"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Defaults of Limits, daprd's where daprd has one.
const (
	// DefaultReadBufferSize is daprd's --read-buffer-size (4Ki): the HTTP
	// request header limit in bytes. net/http reads up to 4 KiB more
	// before it answers 431, as it does in daprd.
	DefaultReadBufferSize = 4 << 10
	// DefaultReadHeaderTimeout is the time a client has to send a
	// request's headers (HTTP) or complete the HTTP/2 handshake (gRPC);
	// daprd's HTTP value. A client that trickles its headers is cut off
	// then, instead of holding a connection and a goroutine for ever.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes keep-alive HTTP connections that carry no
	// request for this long.
	DefaultIdleTimeout = 2 * time.Minute
	// MaxConcurrentStreams bounds the calls one gRPC connection may have
	// in flight (grpc-go's default is unbounded). It is generous because
	// clients multiplex everything over one connection: an SDK client, and
	// the sidecar-to-sidecar client's one pooled connection per address;
	// calls past it wait for a free stream rather than fail.
	MaxConcurrentStreams = 1000
)

// gRPC keepalive, as daprd configures both its gRPC servers.
const (
	// keepaliveMinTime is the shortest ping interval a client may use;
	// pinging more often gets the connection closed (GOAWAY
	// too_many_pings). grpc-go clients cannot ping more often than every
	// 10 s, so none trips it.
	keepaliveMinTime = 8 * time.Second
	// maxConnectionIdle closes connections without calls for this long.
	maxConnectionIdle = 3 * time.Minute
	// keepaliveTime and keepaliveTimeout: the server pings a quiet client
	// and drops it when the ping is not answered.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// Limits are the resource limits and timeouts of the sidecar's servers.
// The zero value means the defaults.
type Limits struct {
	// ReadBufferSize is the HTTP request header limit, in bytes
	// (http.Server.MaxHeaderBytes); gRPC's header list limit is 1024 times
	// it (4 MiB by default), as in daprd.
	ReadBufferSize int
	// ReadHeaderTimeout bounds reading an HTTP request's headers and the
	// gRPC connection handshake.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive HTTP connections.
	IdleTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.ReadBufferSize <= 0 {
		l.ReadBufferSize = DefaultReadBufferSize
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	return l
}

// HTTPServer returns an HTTP server for h with the limits applied. Read
// and write timeouts of whole requests are left unset on purpose: bodies
// of service invocations stream for as long as the callers need.
func (l Limits) HTTPServer(h http.Handler, errorLog *log.Logger) *http.Server {
	l = l.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.ReadBufferSize,
		ErrorLog:          errorLog,
	}
}

// GRPCServerOptions are the options every gRPC server of the sidecar gets:
// a bound on concurrent streams per connection, the header list limit, a
// handshake deadline, and daprd's keepalive settings, whose enforcement
// policy closes connections of clients that ping too often.
func (l Limits) GRPCServerOptions() []grpc.ServerOption {
	l = l.withDefaults()
	headerList := uint64(l.ReadBufferSize) << 10
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.MaxHeaderListSize(uint32(min(headerList, math.MaxUint32))),
		grpc.ConnectionTimeout(l.ReadHeaderTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: maxConnectionIdle,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
	}
}
