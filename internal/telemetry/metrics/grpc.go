package metrics

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// Server is which gRPC server a stats handler observes.
type Server int

const (
	// APIServer is the Dapr API server (the app's calls; proxied gRPC
	// invocation streams).
	APIServer Server = iota
	// InternalServer is the sidecar-to-sidecar server (ServiceInvocation).
	InternalServer
)

// Methods of the internal server that deliver service invocation to the app.
const (
	callLocal       = "/dapr.proto.internals.v1.ServiceInvocation/CallLocal"
	callLocalStream = "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream"
	appHealthCheck  = "/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck"
	// proxyAppIDKey is the metadata that marks a call for the gRPC proxy.
	proxyAppIDKey = "dapr-app-id"
)

type grpcMetrics struct {
	completed *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	received  *prometheus.HistogramVec
	sent      *prometheus.HistogramVec
}

// newGRPCMetrics creates the grpc_io_<side>_* collectors, side being
// "server" or "client", with OpenCensus's ocgrpc names as daprd exports
// them (grpc_server_method / grpc_client_method …).
func newGRPCMetrics(f factory, side string) grpcMetrics {
	method, st := "grpc_"+side+"_method", "grpc_"+side+"_status"
	latencyName := "grpc_io_server_server_latency"
	if side == "client" {
		latencyName = "grpc_io_client_roundtrip_latency"
	}
	return grpcMetrics{
		completed: f.counter("grpc_io_"+side+"_completed_rpcs", "Number of completed gRPC calls ("+side+" side), by method and status.", method, st),
		latency:   f.histogram(latencyName, "gRPC call latency in milliseconds ("+side+" side), by method and status.", f.latency, method, st),
		received:  f.histogram("grpc_io_"+side+"_received_bytes_per_rpc", "Bytes received per gRPC call across all messages ("+side+" side).", sizeBuckets, method),
		sent:      f.histogram("grpc_io_"+side+"_sent_bytes_per_rpc", "Bytes sent per gRPC call across all messages ("+side+" side).", sizeBuckets, method),
	}
}

func (g *grpcMetrics) record(method, code string, recv, sent int64, ms float64) {
	g.completed.WithLabelValues(method, code).Inc()
	g.latency.WithLabelValues(method, code).Observe(ms)
	g.received.WithLabelValues(method).Observe(float64(recv))
	g.sent.WithLabelValues(method).Observe(float64(sent))
}

// ServerOption observes a gRPC server: unary calls always; streams on the
// API server when they are proxied service invocation (dapr-app-id), as
// daprd does, and every stream on the internal server. On the internal
// server it also counts the invocations delivered to the app; on the API
// server, proxied streams count as invocations sent. With a nil *Metrics it
// is a no-op option.
func (m *Metrics) ServerOption(s Server) grpc.ServerOption {
	if m == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(&statsHandler{m: m, server: s})
}

// ClientDialOption records dapr_grpc_io_client_* for the unary calls of a
// client connection (the app's gRPC channel, the sidecar-to-sidecar
// client), as daprd's client interceptor does. Health probes are left out.
func (m *Metrics) ClientDialOption() grpc.DialOption {
	if m == nil {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithStatsHandler(&statsHandler{m: m, client: true})
}

type statsHandler struct {
	m      *Metrics
	server Server
	client bool
}

type rpcKey struct{}

// rpc is the state of one call, from TagRPC to End. Payload events of a
// stream may come from two goroutines.
type rpc struct {
	method      string
	proxyTarget string // dapr-app-id of a proxied call
	start       time.Time
	stream      atomic.Bool
	recv, sent  atomic.Int64

	mu         sync.Mutex
	caller     string // callee side of invocation: the calling app
	seenReq    bool
	respStatus int32
	seenResp   bool
}

func (h *statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if h.client && info.FullMethodName == appHealthCheck {
		return ctx
	}
	r := &rpc{method: info.FullMethodName, start: time.Now()}
	if !h.client {
		if v := metadata.ValueFromIncomingContext(ctx, proxyAppIDKey); len(v) > 0 {
			r.proxyTarget = v[0]
		}
	}
	return context.WithValue(ctx, rpcKey{}, r)
}

func (h *statsHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r, _ := ctx.Value(rpcKey{}).(*rpc)
	if r == nil {
		return
	}
	switch s := s.(type) {
	case *stats.Begin:
		r.start = s.BeginTime
		r.stream.Store(s.IsClientStream || s.IsServerStream)
	case *stats.InPayload:
		r.recv.Add(int64(s.Length))
		if h.server == InternalServer && !h.client {
			r.request(s.Payload)
		}
	case *stats.OutPayload:
		r.sent.Add(int64(s.Length))
		if h.server == InternalServer && !h.client {
			r.response(s.Payload)
		}
	case *stats.End:
		h.end(r, s)
	}
}

// request notes the caller of a service invocation from its first message.
func (r *rpc) request(p any) {
	var md invokemsg.MD
	switch m := p.(type) {
	case *internalv1.InternalInvokeRequest:
		md = m.GetMetadata()
	case *internalv1.InternalInvokeRequestStream:
		md = m.GetRequest().GetMetadata()
	default:
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.seenReq {
		r.seenReq = true
		r.caller = invokemsg.Get(md, invokemsg.CallerAppIDHeader)
	}
}

// response notes the app's status from the first response message.
func (r *rpc) response(p any) {
	var st *internalv1.Status
	switch m := p.(type) {
	case *internalv1.InternalInvokeResponse:
		st = m.GetStatus()
	case *internalv1.InternalInvokeResponseStream:
		if m.GetResponse() == nil {
			return
		}
		st = m.GetResponse().GetStatus()
	default:
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.seenResp {
		r.seenResp = true
		r.respStatus = st.GetCode()
	}
}

func (h *statsHandler) end(r *rpc, e *stats.End) {
	m := h.m
	stream := r.stream.Load()
	code := status.Code(e.Error)
	ms := float64(e.EndTime.Sub(r.start)) / float64(time.Millisecond)
	if h.client {
		if !stream {
			m.grpcClient.record(m.methods.get(r.method), code.String(), r.sent.Load(), r.recv.Load(), ms)
		}
		return
	}
	if stream && h.server == APIServer && r.proxyTarget == "" {
		return // a subscription or other long-lived stream, as daprd
	}
	m.grpcServer.record(m.methods.get(r.method), code.String(), r.recv.Load(), r.sent.Load(), ms)
	switch {
	case h.server == APIServer && r.proxyTarget != "":
		// The caller side of a proxied gRPC invocation.
		target := m.apps.get(r.proxyTarget)
		m.invoke.sent(target, typeStreaming)
		m.invoke.received(target, int32(code), typeStreaming, ms)
	case h.server == InternalServer && (r.method == callLocal || r.method == callLocalStream):
		r.mu.Lock()
		caller, seen, st, answered := r.caller, r.seenReq, r.respStatus, r.seenResp
		r.mu.Unlock()
		if !seen {
			return
		}
		if caller == "" {
			caller = "unknown"
		}
		if !answered || e.Error != nil {
			st = int32(code)
		}
		m.invoke.callee(m.apps.get(caller), st)
	}
}

func (h *statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h *statsHandler) HandleConn(context.Context, stats.ConnStats) {}

// codeText is a status code as daprd's invocation metrics label it: the
// number (an HTTP status or a gRPC code).
func codeText(c int32) string {
	if c >= 100 && c < 600 {
		return statusText(int(c))
	}
	return strconv.Itoa(int(c))
}
