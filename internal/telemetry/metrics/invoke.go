package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// The type label of the service invocation metrics.
const (
	typeUnary     = "unary"
	typeStreaming = "streaming"
)

type invokeMetrics struct {
	reqSent, reqRecv, resSent, resRecv *prometheus.CounterVec
	resRecvLatency                     *prometheus.HistogramVec
}

func newInvokeMetrics(f factory) invokeMetrics {
	return invokeMetrics{
		reqSent:        f.counter("runtime_service_invocation_req_sent_total", "Number of service invocation requests sent to other sidecars.", "dst_app_id", "type"),
		reqRecv:        f.counter("runtime_service_invocation_req_recv_total", "Number of service invocation requests received from other sidecars.", "src_app_id"),
		resSent:        f.counter("runtime_service_invocation_res_sent_total", "Number of service invocation responses sent back to other sidecars, by the app's status.", "dst_app_id", "status"),
		resRecv:        f.counter("runtime_service_invocation_res_recv_total", "Number of service invocation responses received from other sidecars, by the app's status.", "src_app_id", "status", "type"),
		resRecvLatency: f.histogram("runtime_service_invocation_res_recv_latency_ms", "Service invocation round-trip latency to other sidecars in milliseconds.", f.latency, "src_app_id", "status"),
	}
}

func (i *invokeMetrics) sent(dst, typ string) {
	i.reqSent.WithLabelValues(dst, typ).Inc()
}

// received counts a response from app src; in daprd's metric the
// responding app is the "source".
func (i *invokeMetrics) received(src string, code int32, typ string, ms float64) {
	c := codeText(code)
	i.resRecv.WithLabelValues(src, c, typ).Inc()
	i.resRecvLatency.WithLabelValues(src, c).Observe(ms)
}

// callee counts a request from app caller delivered to the app, and the
// response sent back with the app's status.
func (i *invokeMetrics) callee(caller string, code int32) {
	i.reqRecv.WithLabelValues(caller).Inc()
	i.resSent.WithLabelValues(caller, codeText(code)).Inc()
}

// Caller is the sidecar-to-sidecar invocation client (invoke.Remote).
type Caller interface {
	Call(ctx context.Context, addr string, req *invokemsg.Request) (*invokemsg.Response, error)
}

// Remote wraps the invocation client with the caller side of
// dapr_runtime_service_invocation_*: each attempt counts as a request sent;
// an answer counts with the app's status (an HTTP status or a gRPC code),
// a failure to get one with the call's gRPC code, as its latency does.
// With a nil *Metrics it returns next.
func (m *Metrics) Remote(next Caller) Caller {
	if m == nil {
		return next
	}
	return &remote{m: m, next: next}
}

type remote struct {
	m    *Metrics
	next Caller
}

func (r *remote) Call(ctx context.Context, addr string, req *invokemsg.Request) (*invokemsg.Response, error) {
	dst := r.m.apps.get(invokemsg.Get(req.Metadata, invokemsg.CalleeAppIDHeader))
	start := time.Now()
	r.m.invoke.sent(dst, typeUnary)
	resp, err := r.next.Call(ctx, addr, req)
	if err != nil {
		r.m.invoke.received(dst, int32(status.Code(err)), typeUnary, msSince(start))
		return nil, err
	}
	r.m.invoke.received(dst, resp.Status.GetCode(), typeUnary, msSince(start))
	return resp, nil
}
