package tracing

import (
	"context"
	"strings"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// invokeServiceMethod answers with the invoked app's metadata: daprd adds
// no grpc-trace-bin of its own there.
const invokeServiceMethod = "/dapr.proto.runtime.v1.Dapr/InvokeService"

// spanAttributer is implemented by Dapr's request messages
// (dapr/pkg/proto/runtime/v1/dapr_tracing.go): the attributes daprd puts
// on the span of that API call.
type spanAttributer interface {
	AppendSpanAttributes(rpcMethod string, m map[string]string)
}

// actorRequest is InvokeActorRequest, the gRPC API's actor call.
type actorRequest interface {
	GetActorType() string
	GetActorId() string
	GetMethod() string
}

// daprSpanName is the key under which AppendSpanAttributes suggests a
// span name; keys with its "__dapr." prefix are not attributes.
const daprSpanName = "__dapr.spanname"

// serverStart starts the server span of a call to the gRPC API, from the
// caller's grpc-trace-bin or traceparent (a new trace when there is none
// or it is malformed).
func (p *Provider) serverStart(ctx context.Context, method string) (context.Context, trace.Span) {
	ctx = p.ContextWith(ctx)
	md, _ := metadata.FromIncomingContext(ctx)
	if sc, ok := fromGRPC(md); ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return p.start(ctx, method, trace.SpanKindServer)
}

// finish names and annotates a sampled gRPC span and ends it.
func finish(span trace.Span, method string, req any, err error) {
	if span.IsRecording() {
		m := make(map[string]string, 8)
		if a, ok := req.(spanAttributer); ok {
			a.AppendSpanAttributes(method, m)
		}
		if name := m[daprSpanName]; name != "" {
			span.SetName(name)
		}
		service, rpcMethod := splitMethod(method)
		kv := []string{AttrDaprProtocol, "grpc", AttrDaprAPI, method, AttrRPCSystem, "grpc", AttrRPCService, service, AttrRPCMethod, rpcMethod}
		if a, ok := req.(actorRequest); ok && strings.HasSuffix(method, "/InvokeActor") {
			// daprd leaves InvokeActor without attributes; the HTTP API's
			// are given here too.
			span.SetName("CallActor/" + a.GetActorType() + "/" + a.GetMethod())
			span.SetAttributes(actorAttrs(a.GetActorType(), a.GetActorId(), a.GetMethod(), AttrNetPeerName, a.GetActorType()+"."+a.GetActorId())...)
			kv[7] = ServiceInvocation
		}
		for k, v := range m {
			if !strings.HasPrefix(k, "__dapr.") {
				kv = append(kv, k, v)
			}
		}
		span.SetAttributes(attrs(kv...)...)
		if err != nil {
			st, _ := status.FromError(err)
			span.SetStatus(otelcodes.Error, st.Message())
			span.SetAttributes(attrs(AttrDaprStatusCode, st.Code().String())...)
		}
	}
	span.End()
}

// splitMethod splits "/pkg.Service/Method"; rpc.service is Dapr's short
// service name ("Dapr") when the method is Dapr's API.
func splitMethod(full string) (service, method string) {
	service, method, _ = strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if i := strings.LastIndexByte(service, '.'); i >= 0 && strings.HasPrefix(service, "dapr.proto.") {
		service = service[i+1:]
	}
	return service, method
}

// UnaryServerInterceptor gives every call of the gRPC API a server span
// (see HTTPMiddleware) and returns its context to the caller as
// grpc-trace-bin response metadata, as daprd does (InvokeService aside).
// A nil p passes calls through.
func (p *Provider) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if p == nil {
			return handler(ctx, req)
		}
		if p.off {
			return handler(offContext(ctx), req)
		}
		ctx, span := p.serverStart(ctx, info.FullMethod)
		if info.FullMethod != invokeServiceMethod {
			_ = grpc.SetHeader(ctx, metadata.MD{GRPCTraceBinKey: {string(BinaryFromSpanContext(span.SpanContext()))}})
		}
		resp, err := handler(ctx, req)
		finish(span, info.FullMethod, req, err)
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams
// (streaming subscriptions, configuration subscriptions, proxied calls):
// the span lasts as long as the stream.
func (p *Provider) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if p == nil {
			return handler(srv, ss)
		}
		if p.off {
			if ctx := offContext(ss.Context()); ctx != ss.Context() {
				ss = &spanStream{ServerStream: ss, ctx: ctx}
			}
			return handler(srv, ss)
		}
		ctx, span := p.serverStart(ss.Context(), info.FullMethod)
		err := handler(srv, &spanStream{ServerStream: ss, ctx: ctx})
		finish(span, info.FullMethod, nil, err)
		return err
	}
}

// spanStream is a server stream whose context carries the span.
type spanStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *spanStream) Context() context.Context { return s.ctx }

// offContext is the gRPC side of tracing off (see HTTPMiddleware): a call
// without a valid grpc-trace-bin or traceparent gets a new traceparent,
// not sampled, in its incoming metadata (a malformed one and its
// tracestate replaced), which the call's hops pass on as the caller's.
func offContext(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if _, ok := fromGRPC(md); ok {
		return ctx
	}
	md = md.Copy()
	delete(md, GRPCTraceBinKey)
	delete(md, TraceStateKey)
	md[TraceParentKey] = []string{FormatTraceParent(childOf(trace.SpanContext{}))}
	return metadata.NewIncomingContext(ctx, md)
}
