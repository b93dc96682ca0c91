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
	// AttrDaprActor is daprd's "<type>.<id>" of an actor call; the type
	// and the id are also apart, for queries by type.
	AttrDaprActor     = "dapr.actor"
	AttrDaprActorType = "dapr.actor.type"
	AttrDaprActorID   = "dapr.actor.id"
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

// StartState records one state store operation (op: get, set, delete,
// bulkGet, transaction, ...) under the span in ctx. A store passes no
// trace context on, so in propagation-only mode (or tracing off) there is
// nothing to do.
//
// Made straight from a request of the state or actor API (the span in ctx
// is that request's server span), the operation is that span's
// db.operation attribute, not a span of its own: the API span already
// names the store (db.system, db.name), as daprd's one span per state
// call does, and a second span would nearly double what tracing costs a
// state call (half the spans to start, end and export). Elsewhere (state
// an input binding's answer asks for, say) it is a client span
// "state.<op> <store>".
func StartState(ctx context.Context, store, op string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	parent := trace.SpanFromContext(ctx)
	if p == nil || p.tp == nil || !parent.SpanContext().IsSampled() {
		return ctx, noopSpan
	}
	if isServer(parent) {
		parent.SetAttributes(attribute.String(AttrDBOperation, op))
		return ctx, noopSpan
	}
	ctx, span := p.start(ctx, "state."+op+" "+store, trace.SpanKindClient)
	span.SetAttributes(attribute.String(AttrDBSystem, SystemState), attribute.String(AttrDBName, store), attribute.String(AttrDBOperation, op))
	return ctx, span
}

// isServer tells whether span is a recording server span of this process
// (the SDK's spans tell their kind; remote and no-op ones do not record).
func isServer(span trace.Span) bool {
	k, ok := span.(interface{ SpanKind() trace.SpanKind })
	return ok && span.IsRecording() && k.SpanKind() == trace.SpanKindServer
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
	if p == nil || p.off {
		return ctx, noopSpan
	}
	ctx = p.continueCaller(ctx, md)
	ctx, span := p.start(ctx, "CallLocal/"+p.appID+"/"+method, trace.SpanKindServer)
	if span.IsRecording() {
		span.SetAttributes(attrs(AttrRPCSystem, "grpc", AttrRPCService, ServiceInvocation, AttrRPCMethod, fullMethod,
			AttrDaprInvokeMethod, method, AttrDaprProtocol, "grpc", AttrDaprAPI, fullMethod)...)
	}
	return ctx, span
}

// continueCaller is ctx carrying p and, as the remote parent, the span
// context of the sidecar that sent the call: from the call's gRPC
// metadata (grpc-trace-bin, traceparent), else from the invocation's own
// metadata md.
func (p *Provider) continueCaller(ctx context.Context, md invokemsg.MD) context.Context {
	in, _ := metadata.FromIncomingContext(ctx)
	sc, ok := fromGRPC(in)
	if !ok {
		sc, _ = fromMD(md)
	}
	return trace.ContextWithRemoteSpanContext(p.ContextWith(ctx), sc)
}

// actorAttrs are the attributes of a span of a call to actor method of
// type typ, id id.
func actorAttrs(typ, id, method string, more ...string) []attribute.KeyValue {
	return attrs(append([]string{AttrDaprActor, typ + "." + id, AttrDaprActorType, typ, AttrDaprActorID, id,
		AttrDaprInvokeMethod, method}, more...)...)
}

// StartActorCall starts the client span of an actor call forwarded to the
// sidecar at addr that owns the actor (daprd's CallActor/<type>/<method>).
func StartActorCall(ctx context.Context, typ, id, method, addr string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil {
		return ctx, noopSpan
	}
	ctx, span := p.start(ctx, "CallActor/"+typ+"/"+method, trace.SpanKindClient)
	if span.IsRecording() {
		host, port, _ := net.SplitHostPort(addr)
		span.SetAttributes(actorAttrs(typ, id, method, AttrRPCSystem, "grpc", AttrRPCService, ServiceInvocation,
			AttrNetPeerName, typ+"."+id, AttrServerAddress, host, AttrServerPort, port)...)
	}
	return ctx, span
}

// StartCallActor starts the server span of an actor call another sidecar
// forwarded here, continuing its trace as StartCallLocal does. A nil p
// returns ctx and a no-op span.
func (p *Provider) StartCallActor(ctx context.Context, fullMethod, typ, id, method string, md invokemsg.MD) (context.Context, trace.Span) {
	if p == nil || p.off {
		return ctx, noopSpan
	}
	ctx = p.continueCaller(ctx, md)
	ctx, span := p.start(ctx, "CallActor/"+typ+"/"+method, trace.SpanKindServer)
	if span.IsRecording() {
		span.SetAttributes(actorAttrs(typ, id, method, AttrRPCSystem, "grpc", AttrRPCService, ServiceInvocation,
			AttrRPCMethod, fullMethod, AttrDaprProtocol, "grpc", AttrDaprAPI, fullMethod)...)
	}
	return ctx, span
}

// StartActorApp starts the span of the call to the app of an actor method
// (PUT /actors/<type>/<id>/method/<method>), made once the actor's turn is
// held; the app gets it as its parent. Like a store span, it is left out
// unless the trace is sampled: the app then gets the caller's span.
func StartActorApp(ctx context.Context, typ, id, method string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil || p.tp == nil || !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx, noopSpan
	}
	ctx, span := p.start(ctx, "actors/"+typ+"/"+method, trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(actorAttrs(typ, id, method, AttrHTTPMethod, "PUT")...)
	}
	return ctx, span
}

// StartInputBinding starts the span of delivering one event of input
// binding name to the app (daprd's "bindings/<name>"), continuing the
// trace the event's metadata carries (traceparent, tracestate), else
// starting one.
func StartInputBinding(ctx context.Context, name, parent, state string) (context.Context, trace.Span) {
	p := FromContext(ctx)
	if p == nil {
		return ctx, noopSpan
	}
	sc, _ := ParseTraceParent(parent, state)
	ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	ctx, span := p.start(ctx, "bindings/"+name, trace.SpanKindConsumer)
	if span.IsRecording() {
		span.SetAttributes(attrs(AttrDBSystem, SystemBindings, AttrDBName, name, AttrRPCService, ServiceDapr,
			AttrMessagingOperation, "process")...)
	}
	return ctx, span
}
