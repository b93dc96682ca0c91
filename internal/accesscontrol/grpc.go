package accesscontrol

import (
	"context"
	"log/slog"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/api/grpcproxy"
	"github.com/mecha-dev/mecha/internal/blocks/invoke"
	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// Guard sits in front of the internal gRPC server's service invocation
// (CallLocal, CallLocalStream) and the proxied gRPC calls it delivers: it
// establishes the caller from its certificate and applies the access
// control list. Actor calls are not subject to it, as in daprd.
type Guard struct {
	// ACL is the access control list; nil allows every call.
	ACL *List
	// Identify returns the verified caller identity of a call (the mTLS
	// peer); nil, or false, when there is none.
	Identify func(ctx context.Context) (spiffe.ID, bool)
	Logger   *slog.Logger
}

// serviceInvocationPrefix is the internal service's method prefix.
var serviceInvocationPrefix = "/" + internalv1.ServiceInvocation_ServiceDesc.ServiceName + "/"

// UnaryServerInterceptor guards CallLocal.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == internalv1.ServiceInvocation_CallLocal_FullMethodName {
			if in, ok := req.(*internalv1.InternalInvokeRequest); ok {
				if err := g.admit(ctx, in); err != nil {
					return nil, err
				}
			}
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor guards CallLocalStream (when its leading
// message arrives) and proxied calls (before they are delivered).
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		switch {
		case info.FullMethod == internalv1.ServiceInvocation_CallLocalStream_FullMethodName:
			return handler(srv, &leadingStream{ServerStream: ss, g: g})
		case strings.HasPrefix(info.FullMethod, serviceInvocationPrefix):
			return handler(srv, ss)
		case grpcproxy.Marked(ss.Context()):
			ctx, err := g.admitProxied(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		}
		return handler(srv, ss)
	}
}

func (g *Guard) identify(ctx context.Context) *spiffe.ID {
	if g.Identify == nil {
		return nil
	}
	id, ok := g.Identify(ctx)
	if !ok {
		return nil
	}
	return &id
}

// admit stamps the verified caller on an invocation and applies the ACL.
// With a verified caller, dapr-caller-app-id and dapr-caller-namespace are
// set from its certificate, so the app can rely on them; without one they
// are what the calling sidecar said.
func (g *Guard) admit(ctx context.Context, in *internalv1.InternalInvokeRequest) error {
	msg := in.GetMessage()
	if msg == nil {
		return nil // the handler refuses it
	}
	caller := g.identify(ctx)
	if caller != nil {
		if in.Metadata == nil {
			in.Metadata = invokemsg.MD{}
		}
		invokemsg.Set(in.Metadata, invokemsg.CallerAppIDHeader, caller.AppID)
		invokemsg.Set(in.Metadata, invokemsg.CallerNamespaceHeader, caller.Namespace)
	}
	if g.ACL == nil {
		return nil
	}
	// Normalised before the check, as daprd does, so that "a/../admin" is
	// checked as what the app will see.
	m, err := invoke.NormalizeMethod(msg.GetMethod())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid method: %v", err)
	}
	msg.Method = m
	verb := commonv1.HTTPExtension_NONE
	if g.ACL.http && len(in.GetMetadata()) > 0 {
		verb = msg.GetHttpExtension().GetVerb()
	}
	if d := g.ACL.Check(caller, m, verb); !d.Allowed {
		return g.denied(caller, m, verb)
	}
	return nil
}

// admitProxied does the same for a proxied gRPC call: the caller goes
// into the incoming metadata, and the ACL sees the full method name with
// gRPC rules, as in daprd.
func (g *Guard) admitProxied(ctx context.Context, method string) (context.Context, error) {
	caller := g.identify(ctx)
	if caller != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		md = md.Copy()
		md.Set(invokemsg.CallerAppIDHeader, caller.AppID)
		md.Set(invokemsg.CallerNamespaceHeader, caller.Namespace)
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	if g.ACL == nil {
		return ctx, nil
	}
	m, err := invoke.NormalizeMethod(method)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid method: %v", err)
	}
	if d := g.ACL.check(caller, m, commonv1.HTTPExtension_NONE, false); !d.Allowed {
		return nil, g.denied(caller, m, commonv1.HTTPExtension_NONE)
	}
	return ctx, nil
}

func (g *Guard) denied(caller *spiffe.ID, method string, verb commonv1.HTTPExtension_Verb) error {
	msg := DeniedMessage(caller, method, verb)
	if g.Logger != nil {
		g.Logger.Debug("call refused by access control", "method", method, "verb", verb.String(), "caller", callerString(caller))
	}
	return status.Error(codes.PermissionDenied, msg)
}

func callerString(c *spiffe.ID) string {
	if c == nil {
		return "(no verified identity)"
	}
	return c.String()
}

// leadingStream admits a CallLocalStream when its leading message, which
// names the method, is received.
type leadingStream struct {
	grpc.ServerStream
	g    *Guard
	done bool
}

func (s *leadingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err != nil || s.done {
		return err
	}
	s.done = true
	if req, ok := m.(*internalv1.InternalInvokeRequestStream); ok && req.GetRequest() != nil {
		return s.g.admit(s.Context(), req.GetRequest())
	}
	return nil
}

// contextStream replaces a stream's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
