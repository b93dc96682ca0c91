// Package grpcapi serves the dapr.proto.runtime.v1.Dapr gRPC service with
// Dapr's published generated types. Like httpapi it only translates: the
// semantics live in the building blocks, and errors are mapped by apierr.
//
// Methods not built yet fall through to the embedded
// UnimplementedDaprServer, which answers codes.Unimplemented naming the
// method. Calls for any other service that name a target app (dapr-app-id)
// are the transparent gRPC proxy's (UnknownService, grpcproxy).
package grpcapi

import (
	"context"
	"log/slog"
	"runtime/debug"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/api/grpcproxy"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/blocks/bindings"
	"github.com/mecha-dev/mecha/internal/blocks/configuration"
	"github.com/mecha-dev/mecha/internal/blocks/invoke"
	"github.com/mecha-dev/mecha/internal/blocks/lock"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/blocks/pubsub"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
	"github.com/mecha-dev/mecha/internal/blocks/state"
)

// Deps are the blocks the gRPC API serves.
type Deps struct {
	AppID         string
	State         *state.Block
	Metadata      *metadata.Block
	Secrets       *secrets.Block
	Lock          *lock.Block
	Configuration *configuration.Block
	Bindings      *bindings.Block
	// PubSub is publish/subscribe; nil answers ERR_PUBSUB_NOT_CONFIGURED.
	PubSub *pubsub.Block
	// Invoke is service invocation; nil answers "invoke API is not ready".
	Invoke *invoke.Block
	// Actors is the actor runtime; nil answers ERR_ACTOR_RUNTIME_NOT_FOUND.
	Actors *actors.Block
	// MaxBodySize limits the response bodies InvokeService holds, in bytes.
	MaxBodySize int64
	// Shutdown asks the runtime to shut down gracefully; it must not block.
	Shutdown func()
	Logger   *slog.Logger
}

// Server implements runtimev1.DaprServer.
type Server struct {
	runtimev1.UnimplementedDaprServer
	Deps
}

// New returns the API server.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxBodySize <= 0 {
		d.MaxBodySize = 4 << 20
	}
	return &Server{Deps: d}
}

// Register adds the Dapr service to gs.
func (s *Server) Register(gs *grpc.Server) {
	runtimev1.RegisterDaprServer(gs, s)
}

// UnknownService is the API server's grpc.UnknownServiceHandler: a call for
// a service (or method) the server does not serve that names a target app
// with dapr-app-id goes to proxy (grpcproxy.Proxy.Forward); any other gets
// gRPC's usual Unimplemented answer. The server must also use
// grpcproxy.ServerCodec.
func UnknownService(proxy grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		if proxy == nil || !grpcproxy.Marked(ss.Context()) {
			method, _ := grpc.MethodFromServerStream(ss)
			return grpcproxy.Unimplemented(method, runtimev1.Dapr_ServiceDesc.ServiceName)
		}
		return proxy(srv, ss)
	}
}

// RecoverUnary turns a handler panic into an Internal error, logged with its
// stack, instead of a crashed sidecar.
func RecoverUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				logger.Error("panic in gRPC handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = apierr.GRPC(apierr.Internal.New("internal error"))
			}
		}()
		return handler(ctx, req)
	}
}

// RecoverStream is RecoverUnary for streams.
func RecoverStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				logger.Error("panic in gRPC stream handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = apierr.GRPC(apierr.Internal.New("internal error"))
			}
		}()
		return handler(srv, ss)
	}
}

var empty = &emptypb.Empty{}
