package benchmarks

import (
	"context"
	"net"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// echoTestService answers UnaryCall with the request's payload.
type echoTestService struct {
	testpb.UnimplementedTestServiceServer
}

func (echoTestService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

// serveTestService serves echoTestService on 127.0.0.1:0 until the
// benchmark ends and returns its port.
func serveTestService(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, echoTestService{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(l)
	}()
	b.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

func dialTestService(b *testing.B, addr string) testpb.TestServiceClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// BenchmarkGRPCProxy is one unary call of the app's own gRPC service
// (grpc.testing.TestService/UnaryCall, 1 KiB each way) made straight to
// the app (direct), through the app's own sidecar (self: dapr-app-id on
// the sidecar's gRPC port, forwarded to the app), and through two sidecars
// (two-sidecars: caller's sidecar → internal gRPC → the app's sidecar →
// app), the transparent proxying of grpcproxy. µs/op is the latency of one
// call; the /parallel variants run GOMAXPROCS×4 callers for throughput.
// Allocations include the client's and the app's (same process).
func BenchmarkGRPCProxy(b *testing.B) {
	port := serveTestService(b)
	callee := mechatest.Start(b, func(o *runtime.Options) { quiet(o); mechatest.App("callee", port, "grpc")(o) })
	caller := mechatest.Start(b, func(o *runtime.Options) { quiet(o); o.AppID = "caller" })
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: invokeBody}}
	for _, tc := range []struct {
		name string
		ts   testpb.TestServiceClient
		md   metadata.MD
	}{
		{"direct", dialTestService(b, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))), nil},
		{"self", dialTestService(b, callee.RT.GRPCAddr()), metadata.Pairs("dapr-app-id", "callee")},
		{"two-sidecars", dialTestService(b, caller.RT.GRPCAddr()), metadata.Pairs("dapr-app-id", "callee")},
	} {
		ctx := metadata.NewOutgoingContext(context.Background(), tc.md)
		call := func(b *testing.B) {
			resp, err := tc.ts.UnaryCall(ctx, req)
			if err != nil || len(resp.GetPayload().GetBody()) != invokeBodySize {
				b.Fatalf("UnaryCall: %v", err)
			}
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				call(b)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/op")
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					call(b)
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/op")
		})
	}
}
