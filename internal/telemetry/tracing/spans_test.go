package tracing

import (
	"context"
	"errors"
	"testing"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestStoreSpan: a state store span of a sampled trace reaches the span
// processors (child of the span in the context, client kind, db.*
// attributes, error status, resource and scope); under an unsampled parent
// there is none.
func TestStoreSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	res := resource.NewSchemaless()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res))
	p := &Provider{tp: tp, tracer: tp.Tracer(TracerName)}
	parent, _ := ParseTraceParent(validTP, "k=v")
	ctx := trace.ContextWithRemoteSpanContext(p.ContextWith(context.Background()), parent)

	_, span := StartState(ctx, "statestore", "set")
	if !span.IsRecording() {
		t.Fatal("the store span of a sampled trace does not record")
	}
	End(span, errors.New("boom"))
	span.End() // a second End is ignored
	if span.IsRecording() {
		t.Fatal("an ended span still records")
	}
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans ended, want 1", len(ended))
	}
	s := ended[0]
	sc := s.SpanContext()
	if s.Name() != "state.set statestore" || s.SpanKind() != trace.SpanKindClient || s.Parent().SpanID() != parent.SpanID() ||
		sc.TraceID() != parent.TraceID() || !sc.IsSampled() || sc.SpanID() == parent.SpanID() || sc.TraceState().Get("k") != "v" {
		t.Fatalf("span %q kind %v context %v parent %v", s.Name(), s.SpanKind(), sc, s.Parent())
	}
	if st := s.Status(); st.Code != otelcodes.Error || st.Description != "boom" {
		t.Errorf("status %+v, want Error boom", st)
	}
	want := map[string]string{AttrDBSystem: "state", AttrDBName: "statestore", AttrDBOperation: "set"}
	for _, kv := range s.Attributes() {
		if want[string(kv.Key)] != kv.Value.AsString() {
			t.Errorf("attribute %s = %q", kv.Key, kv.Value.AsString())
		}
		delete(want, string(kv.Key))
	}
	if len(want) != 0 || s.EndTime().Before(s.StartTime()) || !s.Resource().Equal(res) || s.InstrumentationScope().Name != TracerName {
		t.Errorf("missing attributes %v, times %v..%v, resource %v, scope %v", want, s.StartTime(), s.EndTime(), s.Resource(), s.InstrumentationScope())
	}

	unsampled, _ := ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "")
	_, span = StartState(trace.ContextWithRemoteSpanContext(p.ContextWith(context.Background()), unsampled), "statestore", "get")
	if span.IsRecording() {
		t.Fatal("a store span under an unsampled parent records")
	}
	span.End()
	if len(rec.Ended()) != 1 {
		t.Fatal("a span of an unsampled trace reached the processors")
	}
}

// TestStoreCallOfAnAPISpan: a store operation made straight from an API
// request's server span is that span's db.operation, not a span of its
// own; under a span of another kind it is a store span.
func TestStoreCallOfAnAPISpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	p := &Provider{tp: tp, tracer: tp.Tracer(TracerName)}
	ctx := p.ContextWith(context.Background())

	sctx, api := p.start(ctx, "POST /v1.0/state/{store}", trace.SpanKindServer)
	if _, span := StartState(sctx, "statestore", "set"); span.IsRecording() {
		t.Fatal("the store call of an API span is a span of its own")
	}
	api.End()
	cctx, consumer := p.start(ctx, "pubsub/orders", trace.SpanKindConsumer)
	_, store := StartState(cctx, "statestore", "get")
	store.End()
	consumer.End()

	ended := rec.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans ended, want 3 (API, store, consumer)", len(ended))
	}
	if ended[0].Name() != "POST /v1.0/state/{store}" || attr(ended[0], AttrDBOperation) != "set" {
		t.Errorf("API span %q has db.operation %q, want set", ended[0].Name(), attr(ended[0], AttrDBOperation))
	}
	if ended[1].Name() != "state.get statestore" || ended[1].Parent().SpanID() != consumer.SpanContext().SpanID() {
		t.Errorf("span %q under %v, want the store span under the consumer span", ended[1].Name(), ended[1].Parent().SpanID())
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.AsString()
		}
	}
	return ""
}
