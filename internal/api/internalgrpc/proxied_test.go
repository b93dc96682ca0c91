package internalgrpc_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/api/grpcproxy"
	"github.com/mecha-dev/mecha/internal/api/internalgrpc"
	"github.com/mecha-dev/mecha/internal/blocks/invoke"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serve runs a server whose unknown-service handler is
// UnknownService(deliver) and returns its address.
func serve(t *testing.T, deliver grpc.StreamHandler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.UnknownServiceHandler(internalgrpc.UnknownService(deliver)), grpcproxy.ServerCodec())
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return l.Addr().String()
}

func TestUnknownService(t *testing.T) {
	delivered := make(chan string, 1)
	deliver := func(_ any, ss grpc.ServerStream) error {
		m, _ := grpc.MethodFromServerStream(ss)
		delivered <- m
		return status.Error(codes.Aborted, "delivered")
	}
	c := internalgrpc.NewClient(4<<20, nil)
	defer c.Close()
	for _, tc := range []struct {
		name    string
		deliver grpc.StreamHandler
		md      []string
		code    codes.Code
		msg     string
	}{
		{"unmarked", deliver, nil, codes.Unimplemented, "unknown service grpc.testing.TestService"},
		{"marked without a proxy", nil, []string{"dapr-callee-app-id", "b"}, codes.Unimplemented, "unknown service grpc.testing.TestService"},
		{"callee marker", deliver, []string{"dapr-callee-app-id", "b", "dapr-caller-app-id", "a"}, codes.Aborted, "delivered"},
		{"app id marker", deliver, []string{"dapr-app-id", "b"}, codes.Aborted, "delivered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, tc.deliver)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx := metadata.AppendToOutgoingContext(testCtx(t), tc.md...)
			_, err = testpb.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{})
			if st := status.Convert(err); st.Code() != tc.code || st.Message() != tc.msg {
				t.Fatalf("got %v, want %v %q", err, tc.code, tc.msg)
			}
			if tc.code == codes.Aborted {
				if m := <-delivered; m != "/grpc.testing.TestService/UnaryCall" {
					t.Fatalf("delivered %q", m)
				}
			}
		})
	}
	t.Run("through Client.NewStream", func(t *testing.T) {
		addr := serve(t, deliver)
		ctx := metadata.AppendToOutgoingContext(testCtx(t), "dapr-callee-app-id", "b")
		cs, release, err := c.NewStream(ctx, addr, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/x.Y/Z")
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if err := cs.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if err := cs.RecvMsg(&testpb.Empty{}); status.Code(err) != codes.Aborted {
			t.Fatalf("got %v, want the delivered answer", err)
		}
		if m := <-delivered; m != "/x.Y/Z" {
			t.Fatalf("delivered %q", m)
		}
	})
}

// TestNewStreamUnreachable: a sidecar that cannot be reached is reported
// as such, so the invocation block tries another instance.
func TestNewStreamUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	c := internalgrpc.NewClient(4<<20, nil)
	defer c.Close()
	_, _, err = c.NewStream(testCtx(t), dead, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/x.Y/Z")
	if !errors.Is(err, invoke.ErrUnreachable) || status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable marked unreachable", err)
	}
	c.Close()
	if _, _, err := c.NewStream(testCtx(t), dead, &grpc.StreamDesc{}, "/x.Y/Z"); err == nil {
		t.Fatal("NewStream after Close succeeded")
	}
}
