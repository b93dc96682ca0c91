package grpcproxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// seenKeys are the metadata keys the test app reports back, each as a
// response header "seen-<key>" ("-" when absent).
var seenKeys = []string{"dapr-caller-app-id", "dapr-callee-app-id", "dapr-app-id", "dapr-api-token", "x-user", "traceparent"}

// ended is how a blocked call ended at the app.
type ended struct {
	err         error
	hadDeadline bool
}

// testApp is a gRPC app serving grpc.testing.TestService, the service the
// proxy forwards without knowing it.
type testApp struct {
	testpb.UnimplementedTestServiceServer
	// started receives when a call with metadata x-mode: block arrives;
	// ended when its context is done.
	started chan struct{}
	ended   chan ended
}

// serveTestApp starts the app on 127.0.0.1:0 until the test ends and
// returns it with its port.
func serveTestApp(t testing.TB) (*testApp, int) {
	t.Helper()
	app := &testApp{started: make(chan struct{}, 16), ended: make(chan ended, 16)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	testpb.RegisterTestServiceServer(gs, app)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := gs.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("test app: %v", err)
		}
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return app, l.Addr().(*net.TCPAddr).Port
}

// seen is the response header reporting the call's metadata.
func seen(ctx context.Context) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for _, k := range seenKeys {
		v := md.Get(k)
		if len(v) == 0 {
			v = []string{"-"}
		}
		out.Set("seen-"+k, v...)
	}
	return out
}

// block waits for the call's end when the metadata asks for it.
func (a *testApp) block(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-mode"); len(v) == 0 || v[0] != "block" {
		return false
	}
	a.started <- struct{}{}
	_, hadDeadline := ctx.Deadline()
	select {
	case <-ctx.Done():
		a.ended <- ended{err: ctx.Err(), hadDeadline: hadDeadline}
	case <-time.After(30 * time.Second):
		a.ended <- ended{err: errors.New("the call was never ended")}
	}
	return true
}

// appError is the error the app answers an EchoStatus with: its code and
// message, with an ErrorInfo detail.
func appError(s *testpb.EchoStatus) error {
	st, err := status.New(codes.Code(s.GetCode()), s.GetMessage()).WithDetails(&errdetails.ErrorInfo{
		Reason: "APP_REASON", Domain: "testapp", Metadata: map[string]string{"k": "v"},
	})
	if err != nil {
		return err
	}
	return st.Err()
}

func payload(n int) *testpb.Payload {
	return &testpb.Payload{Body: bytes.Repeat([]byte{'x'}, n)}
}

// UnaryCall echoes the request payload, or answers ResponseSize bytes,
// with a header and a trailer.
func (a *testApp) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	_ = grpc.SetHeader(ctx, seen(ctx))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("app-trailer", "unary"))
	if a.block(ctx) {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if s := in.GetResponseStatus(); s != nil {
		return nil, appError(s)
	}
	out := in.GetPayload()
	if n := in.GetResponseSize(); n > 0 {
		out = payload(int(n))
	}
	return &testpb.SimpleResponse{Payload: out, Username: "app"}, nil
}

// StreamingOutputCall sends one message per ResponseParameters.
func (a *testApp) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := ss.SendHeader(seen(ss.Context())); err != nil {
		return err
	}
	ss.SetTrailer(metadata.Pairs("app-trailer", "server-stream"))
	if a.block(ss.Context()) {
		return status.FromContextError(ss.Context().Err()).Err()
	}
	for _, p := range in.GetResponseParameters() {
		if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
			return err
		}
	}
	if s := in.GetResponseStatus(); s != nil {
		return appError(s)
	}
	return nil
}

// StreamingInputCall answers the total payload size once the client is
// done.
func (a *testApp) StreamingInputCall(ss grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	ss.SetTrailer(metadata.Pairs("app-trailer", "client-stream"))
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

// FullDuplexCall answers each request at once: its payload back, then one
// message per ResponseParameters.
func (a *testApp) FullDuplexCall(ss grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	if err := ss.SendHeader(seen(ss.Context())); err != nil {
		return err
	}
	ss.SetTrailer(metadata.Pairs("app-trailer", "bidi"))
	for {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if s := in.GetResponseStatus(); s != nil {
			return appError(s)
		}
		if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
		for _, p := range in.GetResponseParameters() {
			if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
				return err
			}
		}
	}
}
