package channel

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// tokenHeader carries the app token (APP_API_TOKEN) on every call to the
// app: an HTTP header, or gRPC metadata.
const tokenHeader = "dapr-api-token"

// withToken is the one place the gRPC channel adds the app token: every
// call on the app connection passes here through the interceptors below
// (AppCallback, AppCallbackHealthCheck and AppCallbackAlpha calls, and the
// calls the gRPC proxy forwards). The token replaces any value the call
// already carried, so the app sees exactly one: the sidecar's.
func withToken(ctx context.Context, token string) context.Context {
	md, ok := metadata.FromOutgoingContext(ctx) // a copy
	if !ok {
		return metadata.NewOutgoingContext(ctx, metadata.MD{tokenHeader: {token}})
	}
	md.Set(tokenHeader, token)
	return metadata.NewOutgoingContext(ctx, md)
}

func tokenUnary(token string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(withToken(ctx, token), method, req, reply, cc, opts...)
	}
}

func tokenStream(token string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(withToken(ctx, token), desc, cc, method, opts...)
	}
}

// healthCheckMethod is not limited: a probe must not queue behind work.
const healthCheckMethod = "/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck"

func limitUnary(sem chan struct{}) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == healthCheckMethod {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-sem }()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
