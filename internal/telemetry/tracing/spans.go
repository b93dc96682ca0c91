package tracing

import (
	"context"
	"net"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// Span attribute keys, as daprd names them (semantic conventions where
// there is one, dapr.* otherwise).
const (
	AttrDBSystem             = "db.system"
	AttrDBName               = "db.name"
	AttrDBOperation          = "db.operation"
	AttrMessagingSystem      = "messaging.system"
	AttrMessagingDestination = "messaging.destination.name"
	AttrMessagingOperation   = "messaging.operation"
	AttrRPCSystem            = "rpc.system"
	AttrRPCService           = "rpc.service"
	AttrRPCMethod            = "rpc.method"
	AttrNetPeerName          = "net.peer.name"
	AttrServerAddress        = "server.address"
	AttrServerPort           = "server.port"
	AttrDaprAPI              = "dapr.api"
	AttrDaprProtocol         = "dapr.protocol"
	AttrDaprStatusCode       = "dapr.status_code"
	AttrDaprInvokeMethod     = "dapr.invoke_method"
	AttrDaprPubsub           = "dapr.pubsub_name"
	AttrHTTPMethod           = "http.request.method"
)

// Values of db.system and messaging.system for Dapr building blocks.
const (
	SystemState    = "state"
	SystemBindings = "bindings"
	SystemPubsub   = "pubsub"
	// ServiceInvocation is rpc.service of invocations, Dapr the API's.
	ServiceInvocation = "ServiceInvocation"
	ServiceDapr       = "Dapr"
)

// StartState starts the span of one state store operation (op: get,
// set, delete, bulkGet, transaction, ...) under the span in ctx. A store
// passes no trace context on, so in propagation-only mode (or tracing
// off) there is nothing to do.
func StartState(ctx context.Context, store, op string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil || p.tp == nil || !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx, noopSpan
	}
	ctx, span := p.start(ctx, "state."+op+" "+store, trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(attribute.String(AttrDBSystem, SystemState), attribute.String(AttrDBName, store), attribute.String(AttrDBOperation, op))
	}
	return ctx, span
}

// StartBinding starts the span of one output binding call.
func StartBinding(ctx context.Context, name, op string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil {
		return ctx, noopSpan
	}
	ctx, span := p.start(ctx, "bindings."+op+" "+name, trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(attribute.String(AttrDBSystem, SystemBindings), attribute.String(AttrDBName, name), attribute.String(AttrDBOperation, op))
	}
	return ctx, span
}

// StartPublish starts the producer span of one event published to topic;
// its span context is the event's traceparent.
func StartPublish(ctx context.Context, pubsub, topic string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil {
		return ctx, noopSpan
	}
	ctx, span := p.start(ctx, "pubsub.publish "+topic, trace.SpanKindProducer)
	if span.IsRecording() {
		span.SetAttributes(attrs(AttrMessagingSystem, SystemPubsub, AttrMessagingDestination, topic,
			AttrMessagingOperation, "publish", AttrDaprPubsub, pubsub)...)
	}
	return ctx, span
}

// StartDelivery starts the span of delivering one event of topic to its
// subscriber, continuing the trace the event carries (its traceparent and
// tracestate); an event without a valid one starts a new trace. It is
// daprd's "pubsub/<topic>" span.
func StartDelivery(ctx context.Context, parent, state, pubsub, topic string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil {
		return ctx, noopSpan
	}
	sc, _ := ParseTraceParent(parent, state)
	// An invalid sc makes the span a root, not a child of whatever span
	// ctx had (a streaming subscription's call).
	ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	ctx, span := p.start(ctx, "pubsub/"+topic, trace.SpanKindConsumer)
	if span.IsRecording() {
		span.SetAttributes(attrs(AttrMessagingSystem, SystemPubsub, AttrMessagingDestination, topic,
			AttrMessagingOperation, "process", AttrDaprPubsub, pubsub)...)
	}
	return ctx, span
}

// StartInvoke starts the client span of one call to appID's sidecar at
// addr, for method.
func StartInvoke(ctx context.Context, appID, method, addr string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil {
		return ctx, noopSpan
	}
	ctx, span := p.start(ctx, "CallLocal/"+appID+"/"+method, trace.SpanKindClient)
	if span.IsRecording() {
		host, port, _ := net.SplitHostPort(addr)
		span.SetAttributes(attrs(AttrRPCSystem, "grpc", AttrRPCService, ServiceInvocation, AttrNetPeerName, appID,
			AttrDaprInvokeMethod, method, AttrServerAddress, host, AttrServerPort, port)...)
	}
	return ctx, span
}

// StartCallLocal starts the server span of an invocation that arrived from
// another sidecar (fullMethod is the internal gRPC method), continuing the
// caller's trace: from the call's metadata (grpc-trace-bin, traceparent),
// else from the invocation's own metadata. The context also carries p for
// the spans below. A nil p returns ctx and a no-op span.
func (p *Provider) StartCallLocal(ctx context.Context, fullMethod, method string, md invokemsg.MD) (context.Context, trace.Span) {
	if p == nil {
		return ctx, noopSpan
	}
	in, _ := metadata.FromIncomingContext(ctx)
	sc, ok := fromGRPC(in)
	if !ok {
		sc, _ = fromMD(md)
	}
	ctx = trace.ContextWithRemoteSpanContext(p.ContextWith(ctx), sc)
	ctx, span := p.start(ctx, "CallLocal/"+p.appID+"/"+method, trace.SpanKindServer)
	if span.IsRecording() {
		span.SetAttributes(attrs(AttrRPCSystem, "grpc", AttrRPCService, ServiceInvocation, AttrRPCMethod, fullMethod,
			AttrDaprInvokeMethod, method, AttrDaprProtocol, "grpc", AttrDaprAPI, fullMethod)...)
	}
	return ctx, span
}
