package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// proxyApp is a gRPC app that knows nothing of Dapr: it serves
// grpc.testing.TestService, which the sidecars forward without its protos.
type proxyApp struct {
	testpb.UnimplementedTestServiceServer
	// cancelled receives when a call with x-mode: block ends before the
	// app answered, with whether the call carried a deadline.
	cancelled chan bool
}

func (a *proxyApp) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(
		"seen-caller", strings.Join(md.Get("dapr-caller-app-id"), ","),
		"seen-callee", strings.Join(md.Get("dapr-callee-app-id"), ","),
		"seen-app-id", strings.Join(md.Get("dapr-app-id"), ","),
	))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("app-trailer", "done"))
	if v := md.Get("x-mode"); len(v) > 0 && v[0] == "block" {
		_, hasDeadline := ctx.Deadline()
		select {
		case <-ctx.Done():
			a.cancelled <- hasDeadline
		case <-time.After(20 * time.Second):
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if s := in.GetResponseStatus(); s != nil {
		st, err := status.New(codes.Code(s.GetCode()), s.GetMessage()).WithDetails(&errdetails.ErrorInfo{Reason: "APP_REASON", Domain: "proxyapp"})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	return &testpb.SimpleResponse{Payload: in.GetPayload(), Username: "proxyapp"}, nil
}

func (a *proxyApp) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range in.GetResponseParameters() {
		if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: bytes.Repeat([]byte("s"), int(p.GetSize()))}}); err != nil {
			return err
		}
	}
	return nil
}

func (a *proxyApp) StreamingInputCall(ss grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var total int32
	for {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			return ss.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		total += int32(len(in.GetPayload().GetBody()))
	}
}

func (a *proxyApp) FullDuplexCall(ss grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestGRPCProxy drives transparent gRPC proxying with a plain gRPC client
// (the Go SDK's helper only adds the dapr-app-id metadata): two `mecha
// sidecar` processes sharing a registry, the callee's in front of the app
// with --app-protocol grpc.
func TestGRPCProxy(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	registry := filepath.Join(dir, "registry", "nameresolution.db")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: proxy
spec:
  nameResolution:
    component: sqlite
    configuration:
      connectionString: %q
`, registry)), 0o644); err != nil {
		t.Fatal(err)
	}
	app := &proxyApp{cancelled: make(chan bool, 4)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, app)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)

	base := appIDFor(t)
	server := startSidecar(t, sidecarConfig{AppID: "server-" + base, Args: []string{
		"--config", cfg, "--app-port", strconv.Itoa(l.Addr().(*net.TCPAddr).Port), "--app-protocol", "grpc"}})
	client := startSidecar(t, sidecarConfig{AppID: "client-" + base, Args: []string{"--config", cfg}})

	dial := func(addr string) testpb.TestServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return testpb.NewTestServiceClient(conn)
	}
	ctxFor := func(t *testing.T, target string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, "dapr-app-id", target)
	}
	for _, p := range []struct {
		name           string
		ts             testpb.TestServiceClient
		caller, callee string
	}{
		{"two-sidecars", dial(client.GRPCAddr), client.AppID, server.AppID},
		{"self", dial(server.GRPCAddr), "", ""},
	} {
		t.Run(p.name, func(t *testing.T) {
			var header, trailer metadata.MD
			resp, err := p.ts.UnaryCall(ctxFor(t, server.AppID), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}},
				grpc.Header(&header), grpc.Trailer(&trailer))
			if err != nil {
				t.Fatalf("UnaryCall: %v", err)
			}
			if string(resp.GetPayload().GetBody()) != "hello" || resp.GetUsername() != "proxyapp" {
				t.Fatalf("UnaryCall answered %v", resp)
			}
			got := fmt.Sprint(header.Get("seen-caller"), header.Get("seen-callee"), header.Get("seen-app-id"))
			if want := fmt.Sprint([]string{p.caller}, []string{p.callee}, []string{""}); got != want {
				t.Errorf("the app saw caller, callee, dapr-app-id = %s, want %s", got, want)
			}
			if v := trailer.Get("app-trailer"); len(v) != 1 || v[0] != "done" {
				t.Errorf("trailer %v", trailer)
			}

			out, err := p.ts.StreamingOutputCall(ctxFor(t, server.AppID), &testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 100 << 10}, {Size: 3}}})
			if err != nil {
				t.Fatal(err)
			}
			var sizes []int
			for {
				m, err := out.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("server stream: %v", err)
				}
				sizes = append(sizes, len(m.GetPayload().GetBody()))
			}
			if fmt.Sprint(sizes) != "[1 102400 3]" {
				t.Errorf("server stream sizes %v", sizes)
			}

			in, err := p.ts.StreamingInputCall(ctxFor(t, server.AppID))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{5, 200 << 10, 0, 9} {
				if err := in.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := in.CloseAndRecv(); err != nil || r.GetAggregatedPayloadSize() != 5+200<<10+9 {
				t.Errorf("client stream: %v, %v", r, err)
			}

			bidi, err := p.ts.FullDuplexCall(ctxFor(t, server.AppID))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				body := []byte("ping " + strconv.Itoa(i))
				if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
					t.Fatal(err)
				}
				m, err := bidi.Recv()
				if err != nil || !bytes.Equal(m.GetPayload().GetBody(), body) {
					t.Fatalf("bidi round %d: %v, %v", i, m, err)
				}
			}
			if err := bidi.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("bidi end: %v", err)
			}

			_, err = p.ts.UnaryCall(ctxFor(t, server.AppID), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: "no way"}})
			st := status.Convert(err)
			if st.Code() != codes.PermissionDenied || st.Message() != "no way" || len(st.Details()) != 1 {
				t.Fatalf("app error: %v (details %v)", err, st.Details())
			}
			if info, ok := st.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != "APP_REASON" {
				t.Fatalf("app error details %v", st.Details())
			}

			ctx, cancel := context.WithTimeout(ctxFor(t, server.AppID), 300*time.Millisecond)
			defer cancel()
			_, err = p.ts.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-mode", "block"), &testpb.SimpleRequest{})
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("blocked call: %v, want DeadlineExceeded", err)
			}
			select {
			case hadDeadline := <-app.cancelled:
				if !hadDeadline {
					t.Error("the app's call carried no deadline")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the app's call did not end when the caller's deadline passed")
			}
		})
	}
	t.Run("unknown target", func(t *testing.T) {
		_, err := dial(client.GRPCAddr).UnaryCall(ctxFor(t, "nosuchapp-"+base), &testpb.SimpleRequest{})
		if st := status.Convert(err); st.Code() != codes.Unknown || !strings.Contains(st.Message(), "nosuchapp-"+base) {
			t.Fatalf("got %v, want Unknown naming the app", err)
		}
	})
	t.Run("no dapr-app-id", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := dial(client.GRPCAddr).UnaryCall(ctx, &testpb.SimpleRequest{})
		if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "unknown service grpc.testing.TestService" {
			t.Fatalf("got %v, want Unimplemented unknown service", err)
		}
	})
}
