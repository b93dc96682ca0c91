package benchmarks

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing/tracingtest"
)

// tracedInvokeTargets starts the echo app and, with the tracing of c, its
// sidecar "callee" and the app-less sidecar "caller"; both export to the
// one counting receiver returned (nil when tracing is off). The URL is
// the two-sidecar path: caller → internal gRPC → callee → app.
func tracedInvokeTargets(b *testing.B, c tracingCase) (url string, rcv *tracingtest.Receiver, caller, callee *mechatest.Sidecar) {
	configure, rcv := tracingConfig(b, c)
	port := mechatest.HTTPApp(b, echoApp)
	callee = mechatest.Start(b, func(o *runtime.Options) { configure(o); mechatest.App("callee", port, "")(o) })
	caller = mechatest.Start(b, func(o *runtime.Options) { configure(o); o.AppID = "caller" })
	return caller.URL + "/v1.0/invoke/callee/method/echo", rcv, caller, callee
}

// BenchmarkInvokeHTTPTracing is BenchmarkInvokeHTTP's two-sidecar call (a
// 1 KiB POST answered with 1 KiB: client → sidecar A → internal gRPC →
// sidecar B → app) with both sidecars at each setting of
// BenchmarkStateHTTPTracing: off, samplingRate 0, 0.1 and 1. Invocation is
// where tracing does the most per request: at rate 1 a call is three spans
// (A's API server span, A's CallLocal client span, B's CallLocal server
// span), the trace context crosses the internal hop in gRPC metadata and
// is passed on to the app, and two exporters batch and send; at rate 0
// only the propagation is left. The state benchmark's single span per
// request would understate that cost.
// seq is one client in a loop (latency); par is 8 clients per GOMAXPROCS
// (16 on the 2-core machine of BENCHMARKS.md) for throughput.
// cpu-µs/op is the CPU of the whole process (client, app, both sidecars,
// receiver) per call; spans/op is what the receiver got per call.
func BenchmarkInvokeHTTPTracing(b *testing.B) {
	benchTraced(b, func(b *testing.B, c tracingCase) (tracedOp, *tracingtest.Receiver, []*mechatest.Sidecar) {
		url, rcv, caller, callee := tracedInvokeTargets(b, c)
		return func(b *testing.B, cl *http.Client, buf *bytes.Buffer) { postEcho(b, cl, url, buf) }, rcv, []*mechatest.Sidecar{caller, callee}
	})
}
