package internalgrpc

import (
	"context"

	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc"

	"github.com/mecha-dev/mecha/internal/api/grpcproxy"
)

// Besides ServiceInvocation, the internal port carries the calls other
// sidecars' transparent gRPC proxies forward (any service of the app's):
// daprd sends them there marked with dapr-callee-app-id, on the same
// connections as invocations.

// UnknownService is the internal server's grpc.UnknownServiceHandler:
// calls marked as proxied go to deliver (grpcproxy.Proxy.Deliver); any
// other call for a service the server does not serve gets gRPC's usual
// Unimplemented answer. The server must also use grpcproxy.ServerCodec.
func UnknownService(deliver grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		if deliver == nil || !grpcproxy.Marked(ss.Context()) {
			method, _ := grpc.MethodFromServerStream(ss)
			return grpcproxy.Unimplemented(method, internalv1.ServiceInvocation_ServiceDesc.ServiceName)
		}
		return deliver(srv, ss)
	}
}

// NewStream opens a stream for method, of any service, on the pooled
// connection to the sidecar at addr (the gRPC proxy's forwarded calls);
// release must be called once the stream is over. As with Call, failures
// to reach the sidecar wrap invoke.ErrUnreachable.
func (c *Client) NewStream(ctx context.Context, addr string, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (cs grpc.ClientStream, release func(), err error) {
	cn, err := c.acquire(addr)
	if err != nil {
		return nil, nil, err
	}
	cs, err = cn.cc.NewStream(ctx, desc, method, opts...)
	if err != nil {
		cn.inflight.Add(-1)
		return nil, nil, classify(cn, err)
	}
	return cs, func() { cn.inflight.Add(-1) }, nil
}
