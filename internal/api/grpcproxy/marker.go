package grpcproxy

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// targetOf returns the app a proxied call is for, read as daprd reads it:
// dapr-callee-app-id (which the calling sidecar sets), else dapr-app-id
// (which the client sets). "" means the call is not for the proxy.
func targetOf(md metadata.MD) string {
	for _, k := range [...]string{invokemsg.CalleeAppIDHeader, invokemsg.AppIDHeader} {
		if v := md[k]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	return ""
}

// Marked reports whether the call in ctx names a target app (with
// dapr-callee-app-id or dapr-app-id), that is whether it is for the proxy,
// without copying the call's metadata.
func Marked(ctx context.Context) bool {
	for _, k := range [...]string{invokemsg.CalleeAppIDHeader, invokemsg.AppIDHeader} {
		if v := metadata.ValueFromIncomingContext(ctx, k); len(v) > 0 && v[0] != "" {
			return true
		}
	}
	return false
}

// Unimplemented is gRPC's own answer to a call nobody serves, for a server
// whose unknown-service handler declines it: "unknown method M for service
// S" when S is one of served, else "unknown service S".
func Unimplemented(fullMethod string, served ...string) error {
	sm := strings.TrimPrefix(fullMethod, "/")
	service, method := sm, ""
	if i := strings.LastIndexByte(sm, '/'); i >= 0 {
		service, method = sm[:i], sm[i+1:]
	}
	for _, s := range served {
		if s == service {
			return status.Errorf(codes.Unimplemented, "unknown method %v for service %v", method, service)
		}
	}
	return status.Errorf(codes.Unimplemented, "unknown service %v", service)
}
