package grpcproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/sqlite"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// maxBody is the sidecars' message limit in these tests.
const maxBody = 1 << 20

const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// cluster is a gRPC app behind sidecar "server", and sidecar "client"
// without an app.
type cluster struct {
	app            *testApp
	server, client *mechatest.Sidecar
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	app, port := serveTestApp(t)
	c := &cluster{app: app}
	c.server = mechatest.Start(t, func(o *runtime.Options) {
		mechatest.App("server", port, "grpc")(o)
		o.MaxBodySize = maxBody
	})
	c.client = mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = "client"
		o.MaxBodySize = maxBody
	})
	return c
}

// path is one way of reaching the app through the proxy.
type path struct {
	name string
	conn *grpc.ClientConn
	// caller and callee are the dapr-caller-app-id and dapr-callee-app-id
	// the app must see ("-": none).
	caller, callee string
}

func (c *cluster) paths() []path {
	return []path{
		{"two-sidecars", c.client.Conn, "client", "server"},
		{"self", c.server.Conn, "-", "-"},
	}
}

// outCtx is a context carrying the proxy metadata for target plus what
// the app must (x-user, traceparent) and must not (dapr-api-token) see.
func outCtx(parent context.Context, target string) context.Context {
	return metadata.AppendToOutgoingContext(parent,
		"dapr-app-id", target, "x-user", "alice", "dapr-api-token", "caller-secret", "traceparent", traceparent)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkSeen verifies the metadata the app reported in its header.
func checkSeen(t *testing.T, header metadata.MD, p path) {
	t.Helper()
	want := map[string]string{
		"dapr-caller-app-id": p.caller, "dapr-callee-app-id": p.callee,
		"dapr-app-id": "-", "dapr-api-token": "-", "x-user": "alice", "traceparent": traceparent,
	}
	for k, v := range want {
		if got := header.Get("seen-" + k); len(got) != 1 || got[0] != v {
			t.Errorf("the app saw %s = %q, want %q", k, got, v)
		}
	}
}

func TestProxy(t *testing.T) {
	c := startCluster(t)
	for _, p := range c.paths() {
		ts := testpb.NewTestServiceClient(p.conn)
		t.Run(p.name+"/unary", func(t *testing.T) {
			var header, trailer metadata.MD
			resp, err := ts.UnaryCall(outCtx(testCtx(t), "server"), &testpb.SimpleRequest{Payload: payload(100)},
				grpc.Header(&header), grpc.Trailer(&trailer))
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetPayload().GetBody(); !bytes.Equal(got, payload(100).Body) || resp.GetUsername() != "app" {
				t.Fatalf("response %d bytes, user %q", len(got), resp.GetUsername())
			}
			checkSeen(t, header, p)
			if got := trailer.Get("app-trailer"); len(got) != 1 || got[0] != "unary" {
				t.Errorf("trailer app-trailer = %q, want unary", got)
			}
		})
		t.Run(p.name+"/server-stream", func(t *testing.T) {
			sizes := []int32{0, 10, 70 << 10, 300 << 10}
			req := &testpb.StreamingOutputCallRequest{}
			for _, n := range sizes {
				req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: n})
			}
			st, err := ts.StreamingOutputCall(outCtx(testCtx(t), "server"), req)
			if err != nil {
				t.Fatal(err)
			}
			header, err := st.Header()
			if err != nil {
				t.Fatal(err)
			}
			checkSeen(t, header, p)
			var got []int32
			for {
				m, err := st.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, int32(len(m.GetPayload().GetBody())))
			}
			if fmt.Sprint(got) != fmt.Sprint(sizes) {
				t.Fatalf("received sizes %v, want %v", got, sizes)
			}
			if tr := st.Trailer().Get("app-trailer"); len(tr) != 1 || tr[0] != "server-stream" {
				t.Errorf("trailer %v", st.Trailer())
			}
		})
		t.Run(p.name+"/client-stream", func(t *testing.T) {
			st, err := ts.StreamingInputCall(outCtx(testCtx(t), "server"))
			if err != nil {
				t.Fatal(err)
			}
			var want int32
			for _, n := range []int{1, 0, 64 << 10, 200 << 10, 7} {
				if err := st.Send(&testpb.StreamingInputCallRequest{Payload: payload(n)}); err != nil {
					t.Fatal(err)
				}
				want += int32(n)
			}
			resp, err := st.CloseAndRecv()
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetAggregatedPayloadSize() != want {
				t.Fatalf("the app counted %d bytes, want %d", resp.GetAggregatedPayloadSize(), want)
			}
			if tr := st.Trailer().Get("app-trailer"); len(tr) != 1 || tr[0] != "client-stream" {
				t.Errorf("trailer %v", st.Trailer())
			}
		})
		t.Run(p.name+"/bidi", func(t *testing.T) {
			st, err := ts.FullDuplexCall(outCtx(testCtx(t), "server"))
			if err != nil {
				t.Fatal(err)
			}
			header, err := st.Header()
			if err != nil {
				t.Fatal(err)
			}
			checkSeen(t, header, p)
			// Ping-pong: each answer must come before the next request is
			// sent, so no side buffers a whole direction.
			for i := range 20 {
				body := []byte(fmt.Sprintf("ping %d", i))
				if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
					t.Fatal(err)
				}
				m, err := st.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(m.GetPayload().GetBody(), body) {
					t.Fatalf("message %d: got %q", i, m.GetPayload().GetBody())
				}
			}
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("after CloseSend: %v, want io.EOF", err)
			}
			if tr := st.Trailer().Get("app-trailer"); len(tr) != 1 || tr[0] != "bidi" {
				t.Errorf("trailer %v", st.Trailer())
			}
		})
		t.Run(p.name+"/error-details", func(t *testing.T) {
			var trailer metadata.MD
			_, err := ts.UnaryCall(outCtx(testCtx(t), "server"),
				&testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not now"}},
				grpc.Trailer(&trailer))
			checkAppError(t, err, codes.FailedPrecondition, "not now")
			if got := trailer.Get("app-trailer"); len(got) != 1 || got[0] != "unary" {
				t.Errorf("trailer app-trailer = %q, want unary", got)
			}
			// An error ending a stream after messages went both ways.
			st, err := ts.FullDuplexCall(outCtx(testCtx(t), "server"))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: payload(3)}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Aborted), Message: "conflict"}}); err != nil {
				t.Fatal(err)
			}
			_, err = st.Recv()
			checkAppError(t, err, codes.Aborted, "conflict")
		})
		t.Run(p.name+"/deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(outCtx(testCtx(t), "server"), 500*time.Millisecond)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "x-mode", "block")
			_, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{})
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("got %v, want DeadlineExceeded", err)
			}
			<-c.app.started
			e := waitEnded(t, c.app)
			if e.err == nil || !e.hadDeadline {
				t.Fatalf("the app's call ended with %v, deadline %v; want it ended and with the caller's deadline", e.err, e.hadDeadline)
			}
		})
		t.Run(p.name+"/cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(outCtx(testCtx(t), "server"))
			ctx = metadata.AppendToOutgoingContext(ctx, "x-mode", "block")
			st, err := ts.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.app.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the call did not reach the app")
			}
			cancel()
			if _, err := st.Recv(); status.Code(err) != codes.Canceled {
				t.Fatalf("after cancel: %v, want Canceled", err)
			}
			if e := waitEnded(t, c.app); !errors.Is(e.err, context.Canceled) {
				t.Fatalf("the app's call ended with %v, want context.Canceled", e.err)
			}
		})
		t.Run(p.name+"/large", func(t *testing.T) {
			// The limit bounds each message, whatever the direction; a
			// message just under it passes both ways.
			n := maxBody - 1024
			resp, err := ts.UnaryCall(outCtx(testCtx(t), "server"), &testpb.SimpleRequest{Payload: payload(n), ResponseSize: int32(n)})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetPayload().GetBody()) != n {
				t.Fatalf("response of %d bytes, want %d", len(resp.GetPayload().GetBody()), n)
			}
			_, err = ts.UnaryCall(outCtx(testCtx(t), "server"), &testpb.SimpleRequest{Payload: payload(maxBody + 1)})
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("request over the limit: %v, want ResourceExhausted", err)
			}
			_, err = ts.UnaryCall(outCtx(testCtx(t), "server"), &testpb.SimpleRequest{ResponseSize: maxBody + 1})
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("response over the limit: %v, want ResourceExhausted", err)
			}
			// Many messages under the limit make a stream far over it.
			st, err := ts.StreamingInputCall(outCtx(testCtx(t), "server"))
			if err != nil {
				t.Fatal(err)
			}
			for range 8 {
				if err := st.Send(&testpb.StreamingInputCallRequest{Payload: payload(n)}); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := st.CloseAndRecv(); err != nil || r.GetAggregatedPayloadSize() != int32(8*n) {
				t.Fatalf("8 messages of %d bytes: %v, %v", n, r, err)
			}
		})
	}
}

func checkAppError(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("got %v, want %v %q", err, code, msg)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.GetReason() != "APP_REASON" || info.GetDomain() != "testapp" || info.GetMetadata()["k"] != "v" {
		t.Fatalf("details %v, want the app's ErrorInfo", st.Details())
	}
}

func waitEnded(t *testing.T, app *testApp) ended {
	t.Helper()
	select {
	case e := <-app.ended:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("the app's call did not end")
		return ended{}
	}
}

// TestProxyConcurrent runs 100 streams at once through two sidecars.
func TestProxyConcurrent(t *testing.T) {
	c := startCluster(t)
	ts := testpb.NewTestServiceClient(c.client.Conn)
	const streams, rounds = 100, 5
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Go(func() {
			ctx := outCtx(testCtx(t), "server")
			st, err := ts.FullDuplexCall(ctx)
			if err != nil {
				errs <- err
				return
			}
			for r := range rounds {
				body := []byte(fmt.Sprintf("stream %d round %d", i, r))
				if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
					errs <- err
					return
				}
				m, err := st.Recv()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(m.GetPayload().GetBody(), body) {
					errs <- fmt.Errorf("stream %d: got %q, want %q", i, m.GetPayload().GetBody(), body)
					return
				}
			}
			if err := st.CloseSend(); err != nil {
				errs <- err
				return
			}
			if _, err := st.Recv(); !errors.Is(err, io.EOF) {
				errs <- fmt.Errorf("stream %d end: %v", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestProxyDeclines: calls that are not the proxy's get the answers they
// got before it existed, and the Dapr API is unaffected by the codec.
func TestProxyDeclines(t *testing.T) {
	c := startCluster(t)
	ts := testpb.NewTestServiceClient(c.client.Conn)
	_, err := ts.UnaryCall(testCtx(t), &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown service grpc.testing.TestService" {
		t.Fatalf("without dapr-app-id: %v", err)
	}
	err = c.client.Conn.Invoke(testCtx(t), "/dapr.proto.runtime.v1.Dapr/NoSuchMethod", &testpb.Empty{}, &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown method NoSuchMethod for service dapr.proto.runtime.v1.Dapr" {
		t.Fatalf("unknown Dapr method: %v", err)
	}
	md, err := c.client.Dapr.GetMetadata(testCtx(t), &runtimev1.GetMetadataRequest{})
	if err != nil || md.GetId() != "client" {
		t.Fatalf("GetMetadata: %v, %v", md, err)
	}
	// The app's own Unimplemented passes through.
	_, err = ts.UnimplementedCall(outCtx(testCtx(t), "server"), &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "UnimplementedCall") {
		t.Fatalf("the app's Unimplemented: %v", err)
	}
}

// TestProxyTargets covers targets the proxy cannot reach.
func TestProxyTargets(t *testing.T) {
	c := startCluster(t)
	httpPort := mechatest.HTTPApp(t, http.NotFoundHandler())
	mechatest.Start(t, mechatest.App("web", httpPort, "http"))
	ts := testpb.NewTestServiceClient(c.client.Conn)
	for _, tc := range []struct {
		target string
		code   codes.Code
		msg    string
	}{
		{"nosuchapp", codes.Unknown, `no sidecar with app id "nosuchapp"`},
		{"a.b.c", codes.Unknown, "invalid app id a.b.c"},
		{"web", codes.FailedPrecondition, "the app speaks http"},
		{"client", codes.Internal, "app channel is not initialized"},
		{"server.otherns", codes.Unknown, `no sidecar with app id "server" in namespace "otherns"`},
	} {
		_, err := ts.UnaryCall(outCtx(testCtx(t), tc.target), &testpb.SimpleRequest{})
		if st := status.Convert(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("target %s: got %v, want %v containing %q", tc.target, err, tc.code, tc.msg)
		}
	}
	// The namespace form reaches the app too.
	if _, err := ts.UnaryCall(outCtx(testCtx(t), "server.default"), &testpb.SimpleRequest{}); err != nil {
		t.Errorf("server.default: %v", err)
	}
}

// TestProxyInternalPort: the internal server delivers only calls marked as
// forwarded to this app, and keeps serving ServiceInvocation.
func TestProxyInternalPort(t *testing.T) {
	c := startCluster(t)
	conn, err := grpc.NewClient(c.server.InternalAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts := testpb.NewTestServiceClient(conn)
	_, err = ts.UnaryCall(testCtx(t), &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown service grpc.testing.TestService" {
		t.Fatalf("unmarked call: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "dapr-callee-app-id", "other", "dapr-caller-app-id", "x")
	if _, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("call for another app: %v, want NotFound", err)
	}
	var header metadata.MD
	ctx = metadata.AppendToOutgoingContext(testCtx(t), "dapr-callee-app-id", "server", "dapr-caller-app-id", "peer",
		"dapr-app-id", "server", "x-user", "alice", "traceparent", traceparent)
	if _, err := ts.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, header, path{caller: "peer", callee: "server"})
	err = conn.Invoke(testCtx(t), "/dapr.proto.internals.v1.ServiceInvocation/NoSuch", &testpb.Empty{}, &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown method NoSuch for service dapr.proto.internals.v1.ServiceInvocation" {
		t.Fatalf("unknown internal method: %v", err)
	}
}

// registerDead announces an instance of app id whose sidecar is gone (a
// free port nobody listens on), as a crashed sidecar leaves behind.
func registerDead(t *testing.T, id string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := sqlite.New(components.Deps{})
	if err := r.Init(testCtx(t), components.Metadata{Properties: map[string]string{"connectionString": mechatest.Registry(t)}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Register(testCtx(t), nameresolution.Instance{InstanceID: "dead-" + addr, AppID: id, Namespace: "default", Address: addr}); err != nil {
		t.Fatal(err)
	}
}

// TestProxyDeadInstance: instances that cannot be reached are skipped as
// for InvokeService (the stream is opened on another), and an app with no
// live instance fails with Unavailable.
func TestProxyDeadInstance(t *testing.T) {
	registerDead(t, "server")
	registerDead(t, "server")
	registerDead(t, "ghost")
	c := startCluster(t)
	ts := testpb.NewTestServiceClient(c.client.Conn)
	for i := range 10 {
		body := []byte(fmt.Sprintf("call %d", i))
		resp, err := ts.UnaryCall(outCtx(testCtx(t), "server"), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
		if err != nil || !bytes.Equal(resp.GetPayload().GetBody(), body) {
			t.Fatalf("call %d: %v, %v", i, resp, err)
		}
	}
	start := time.Now()
	_, err := ts.UnaryCall(outCtx(testCtx(t), "ghost"), &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "attempt 4 of 4") {
		t.Fatalf("only dead instances: %v, want Unavailable after 4 attempts (DaprBuiltInServiceRetries)", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failing took %v", d)
	}
}

// TestProxyClose: a sidecar shutting down ends the streams it proxies once
// the grace period is over, and its Close returns.
func TestProxyClose(t *testing.T) {
	_, port := serveTestApp(t)
	mechatest.Start(t, mechatest.App("server", port, "grpc"))
	client := mechatest.Start(t, func(o *runtime.Options) { o.AppID, o.GracefulShutdown = "client", 300*time.Millisecond })
	st, err := testpb.NewTestServiceClient(client.Conn).FullDuplexCall(outCtx(testCtx(t), "server"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: payload(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := client.RT.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a stream open", d)
	}
	if _, err := st.Recv(); err == nil {
		t.Fatal("the stream survived its sidecar")
	}
}
