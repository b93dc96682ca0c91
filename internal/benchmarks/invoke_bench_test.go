package benchmarks

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// invokeBodySize is the request and response size of one call, the
// issue's target load (1 KiB bodies).
const invokeBodySize = 1 << 10

var invokeBody = bytes.Repeat([]byte("b"), invokeBodySize)

// echoApp answers every POST with a 1 KiB body after reading the request.
var echoApp = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(invokeBody)
})

// invokeTargets starts the app and sidecars "caller" (no app) and "callee"
// (in front of the app) and returns the URLs of the three paths to compare.
func invokeTargets(b *testing.B) (direct, self, twoSidecars string, caller *mechatest.Sidecar) {
	appURL := serveLoopback(b, echoApp)
	port := appURL[strings.LastIndexByte(appURL, ':')+1:]
	var appPort int
	for _, c := range port {
		appPort = appPort*10 + int(c-'0')
	}
	callee := mechatest.Start(b, func(o *runtime.Options) { quiet(o); mechatest.App("callee", appPort, "")(o) })
	caller = mechatest.Start(b, func(o *runtime.Options) { quiet(o); o.AppID = "caller" })
	return appURL + "/echo", callee.URL + "/v1.0/invoke/callee/method/echo", caller.URL + "/v1.0/invoke/callee/method/echo", caller
}

func postEcho(b *testing.B, c *http.Client, url string, buf *bytes.Buffer) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(invokeBody))
	req.Header.Set("Content-Type", "application/octet-stream")
	if status := send(b, c, req, buf); status != http.StatusOK || buf.Len() != invokeBodySize {
		b.Fatalf("invoke: %d %q", status, buf.Bytes())
	}
}

// BenchmarkInvokeHTTP is one 1 KiB POST answered with 1 KiB, over
// HTTP/1.1 keep-alive on loopback: straight to the app (direct), through
// the app's own sidecar (self: caller → sidecar → app), and through two
// sidecars (two-sidecars: caller → sidecar A → internal gRPC → sidecar B →
// app). The /parallel variants run GOMAXPROCS×4 callers for throughput.
// Allocations include the client's and the app's (same process).
func BenchmarkInvokeHTTP(b *testing.B) {
	direct, self, two, _ := invokeTargets(b)
	for _, tc := range []struct{ name, url string }{{"direct", direct}, {"self", self}, {"two-sidecars", two}} {
		b.Run(tc.name, func(b *testing.B) {
			c := newHTTPClient()
			defer c.CloseIdleConnections()
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				postEcho(b, c, tc.url, &buf)
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			c := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}}
			defer c.CloseIdleConnections()
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				var buf bytes.Buffer
				for pb.Next() {
					postEcho(b, c, tc.url, &buf)
				}
			})
		})
	}
}

// BenchmarkInvokeGRPC is the same call made with the gRPC API's
// InvokeService (what the Go SDK's InvokeMethodWithContent does) through
// two sidecars to the HTTP app.
func BenchmarkInvokeGRPC(b *testing.B) {
	_, _, _, caller := invokeTargets(b)
	req := &runtimev1.InvokeServiceRequest{Id: "callee", Message: &commonv1.InvokeRequest{
		Method: "echo", ContentType: "application/octet-stream", Data: &anypb.Any{Value: invokeBody},
		HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST},
	}}
	call := func(b *testing.B) {
		resp, err := caller.Dapr.InvokeService(b.Context(), req)
		if err != nil || len(resp.GetData().GetValue()) != invokeBodySize {
			b.Fatalf("InvokeService: %v", err)
		}
	}
	b.Run("two-sidecars", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call(b)
		}
	})
	b.Run("two-sidecars/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call(b)
			}
		})
	})
}
