// Package tracing is the sidecar's distributed tracing: W3C Trace Context
// taken from the app (HTTP traceparent/tracestate headers; gRPC metadata,
// also in Dapr's binary grpc-trace-bin form), continued across every hop
// the sidecar makes (other sidecars, the app, CloudEvents, output
// bindings), and spans recorded with the OpenTelemetry SDK and exported
// over OTLP (gRPC or HTTP), Zipkin or the log, as the Configuration's
// spec.tracing says.
//
// A Provider is one sidecar's tracing. Three modes follow from the
// Configuration:
//
//   - no spec.tracing: off. Nothing is recorded and no span ids are
//     made, but the app always gets a trace context, as from daprd
//     (which samples at 1e-4 then): the API entry points (HTTPMiddleware,
//     the gRPC interceptors) give a request without a valid traceparent
//     a new one, not sampled, in place of a malformed one (dropping its
//     tracestate), and leave a valid one as it is; past the entry the
//     Provider acts as a nil one, so the caller's headers, with that
//     traceparent, travel on as they are (pub/sub events get a child of
//     it, as without tracing). A nil *Provider, which tests and
//     benchmarks use, is a no-op that leaves trace headers as they are.
//   - samplingRate "0": propagation only. No SDK and no exporter: every
//     hop gets a new span id under the incoming trace (a new trace when
//     there is none or it is malformed), with the caller's sampled flag.
//   - samplingRate > 0: the SDK with parent-based sampling at that rate
//     (a sampled parent is always followed, as in daprd) and one batch span
//     processor per exporter. Exports run in the processor's goroutine with
//     a bounded queue: when an endpoint is slow or down, spans are dropped,
//     requests never wait.
//
// Spans reach the code that makes them through the context: the API
// middleware (HTTPMiddleware, UnaryServerInterceptor, ...) puts the
// Provider and the API span in the request context, and the building
// blocks call StartState, StartPublish, StartBinding, StartDelivery and
// StartInvoke with that context. Without a Provider in the context these
// return at once with a no-op span.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mecha-dev/mecha/internal/config"
)

// TracerName is the instrumentation scope of the sidecar's spans.
const TracerName = "github.com/mecha-dev/mecha"

// DefaultSamplingRate is daprd's rate when spec.tracing has none (or one
// that is not a number).
const DefaultSamplingRate = 1e-4

// Bounds of the batch span processors: at most QueueSize spans wait per
// exporter (more are dropped), sent BatchSize at a time every BatchTimeout
// (OTEL_BSP_SCHEDULE_DELAY, in milliseconds, overrides it) or when a batch
// is full; one export gives up after ExportTimeout.
const (
	QueueSize     = 2048
	BatchSize     = 512
	BatchTimeout  = 2 * time.Second
	ExportTimeout = 10 * time.Second
)

// Provider is one sidecar's tracing. A nil *Provider is tracing off.
type Provider struct {
	appID string
	rate  float64
	// off: no spec.tracing; the trace context is created when absent and
	// otherwise passed on as it came, with no span ids of the sidecar's.
	off bool
	// tp is nil in propagation-only mode (samplingRate 0).
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	log    *slog.Logger
}

// New builds the tracing spec describes for the app appID; nil spec (no
// spec.tracing) returns the Provider of tracing off, which only passes
// the trace context on (creating it when absent). OTEL_EXPORTER_OTLP_* variables
// fill in an OTLP exporter when the spec names none, as daprd does, and
// turn tracing on (at rate 1) when there is no spec. Exporters connect
// lazily: an unreachable endpoint is not an error here.
func New(ctx context.Context, spec *config.TracingSpec, appID string, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec = withEnv(spec, os.Getenv)
	if spec == nil {
		return &Provider{appID: appID, off: true, tracer: propagator{}, log: log}, nil
	}
	rate := parseRate(spec.SamplingRate, log)
	p := &Provider{appID: appID, rate: rate, log: log}
	if rate <= 0 {
		p.tracer = propagator{}
		log.Info("tracing: propagating trace context only (samplingRate 0)")
		return p, nil
	}
	exps, names, err := exporters(ctx, spec, log)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", appID)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		log.Warn("tracing: resource attributes from the environment ignored", "error", err)
		res = resource.NewSchemaless(attribute.String("service.name", appID))
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(rate))),
		sdktrace.WithResource(res),
	}
	bsp := []sdktrace.BatchSpanProcessorOption{
		sdktrace.WithMaxQueueSize(QueueSize),
		sdktrace.WithMaxExportBatchSize(BatchSize),
		sdktrace.WithExportTimeout(ExportTimeout),
	}
	if os.Getenv("OTEL_BSP_SCHEDULE_DELAY") == "" { // the SDK reads it, in ms
		bsp = append(bsp, sdktrace.WithBatchTimeout(BatchTimeout))
	}
	for _, e := range exps {
		opts = append(opts, sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(e, bsp...)))
	}
	p.tp = sdktrace.NewTracerProvider(opts...)
	p.tracer = p.tp.Tracer(TracerName)
	if len(names) == 0 {
		names = []string{"none"}
	}
	log.Info("tracing on", "samplingRate", rate, "exporters", strings.Join(names, ","))
	return p, nil
}

// Shutdown exports what is queued and stops the exporters, giving up when
// ctx ends (an unreachable endpoint must not hold up shutdown).
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.tp == nil {
		return nil
	}
	err := p.tp.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		p.log.Warn("tracing: spans still queued at shutdown were dropped", "error", err)
		return nil
	}
	return err
}

// SamplingRate is the rate in force (0 when off or propagating only).
func (p *Provider) SamplingRate() float64 {
	if p == nil {
		return 0
	}
	return p.rate
}

// parseRate reads samplingRate as daprd does: a number, clamped to [0, 1];
// empty or not a number is DefaultSamplingRate.
func parseRate(s string, log *slog.Logger) float64 {
	if strings.TrimSpace(s) == "" {
		return DefaultSamplingRate
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		log.Warn("tracing: samplingRate is not a number; using daprd's default", "samplingRate", s, "default", DefaultSamplingRate)
		return DefaultSamplingRate
	}
	switch {
	case f < 0:
		log.Warn("tracing: samplingRate below 0; using 0", "samplingRate", s)
		return 0
	case f > 1:
		log.Warn("tracing: samplingRate above 1; using 1", "samplingRate", s)
		return 1
	}
	return f
}

// withEnv applies OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _PROTOCOL and
// _INSECURE when the spec has no OTLP endpoint, like daprd: the endpoint
// loses its http(s):// scheme, the protocol is http for http/protobuf and
// http/json and grpc otherwise, and the rate defaults to 1.
func withEnv(spec *config.TracingSpec, getenv func(string) string) *config.TracingSpec {
	if spec != nil && spec.Otel != nil && spec.Otel.EndpointAddress != "" {
		return spec
	}
	ep := cmpOr(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if ep == "" {
		return spec
	}
	out := config.TracingSpec{}
	if spec != nil {
		out = *spec
	}
	o := &config.OtelSpec{Protocol: "grpc"}
	if out.Otel != nil {
		c := *out.Otel
		o = &c
	}
	o.EndpointAddress = strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://")
	if strings.HasPrefix(cmpOr(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL")), "http") {
		o.Protocol = "http"
	} else {
		o.Protocol = "grpc"
	}
	if getenv("OTEL_EXPORTER_OTLP_INSECURE") == "true" {
		f := false
		o.IsSecure = &f
	}
	out.Otel = o
	if out.SamplingRate == "" {
		out.SamplingRate = "1"
	}
	return &out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// start starts a span as a child of the span (or remote span context) in
// ctx. In propagation-only mode the span does not record: it only carries a
// new span id under the parent's trace, with the parent's flags. The child
// of a parent that is not sampled is not sampled either (parent-based
// sampling), so it takes the same cheap path instead of the SDK's: only
// the root of a trace costs a sampling decision.
func (p *Provider) start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if p.tp != nil {
		if psc := trace.SpanContextFromContext(ctx); !psc.IsValid() || psc.IsSampled() {
			return p.tracer.Start(ctx, name, kindOptions[kind]...)
		}
	}
	return propagator{}.Start(ctx, name)
}

// kindOptions are the start options of each span kind, made once: a span
// start then allocates no option.
var kindOptions = func() (o [trace.SpanKindConsumer + 1][]trace.SpanStartOption) {
	for k := range o {
		o[k] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKind(k))}
	}
	return o
}()

// ctxKey finds the Provider in a context.
type ctxKey struct{}

// ContextWith returns ctx carrying p, for the spans started under it by
// background work (pub/sub deliveries); a nil p, or tracing off, returns
// ctx unchanged.
func (p *Provider) ContextWith(ctx context.Context) context.Context {
	if p == nil || p.off {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the Provider ctx carries, or nil.
func FromContext(ctx context.Context) *Provider {
	p, _ := ctx.Value(ctxKey{}).(*Provider)
	return p
}

// End ends span, marking it failed when err is not nil.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

// noopSpan is what the Start functions return when tracing is off.
var noopSpan = trace.SpanFromContext(context.Background())

// propagator is the tracer of propagation-only mode: its spans record
// nothing and carry a new span id under the parent's trace id and flags,
// or a new, unsampled trace when there is no valid parent.
type propagator struct {
	trace.Tracer // nil: only Start is called
}

func (propagator) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx = trace.ContextWithSpanContext(ctx, childOf(trace.SpanContextFromContext(ctx)))
	return ctx, trace.SpanFromContext(ctx)
}

// childOf returns a span context with a new span id: in parent's trace,
// with its flags and trace state, when parent is valid; else in a new
// trace, not sampled.
func childOf(parent trace.SpanContext) trace.SpanContext {
	cfg := trace.SpanContextConfig{SpanID: newSpanID()}
	if parent.IsValid() {
		cfg.TraceID, cfg.TraceFlags, cfg.TraceState = parent.TraceID(), parent.TraceFlags(), parent.TraceState()
	} else {
		cfg.TraceID = newTraceID()
	}
	return trace.NewSpanContext(cfg)
}

// Random ids need no cryptographic strength (the SDK uses math/rand too),
// only uniqueness; math/rand/v2's global generator is safe for concurrent
// use and never all zero twice in a row in practice (retried anyway).
func newSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		putUint64(id[:], rand.Uint64())
	}
	return id
}

func newTraceID() (id trace.TraceID) {
	for !id.IsValid() {
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64())
	}
	return id
}

func putUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// exportErrors logs failed exports without flooding the log: the first
// failure, then at most one line a minute with the count in between.
type exportErrors struct {
	log  *slog.Logger
	name string

	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (e *exportErrors) report(err error, spans int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < time.Minute {
		e.skipped++
		return
	}
	e.log.Warn("tracing: export failed; spans dropped", "exporter", e.name, "spans", spans, "error", err, "failures_not_logged", e.skipped)
	e.last, e.skipped = now, 0
}

// quietExporter reports export errors to the sidecar's log instead of
// OpenTelemetry's global error handler (which prints to stderr and is one
// for the whole process, when tests run several sidecars).
type quietExporter struct {
	sdktrace.SpanExporter
	errs *exportErrors
}

func (q quietExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := q.SpanExporter.ExportSpans(ctx, spans); err != nil {
		q.errs.report(err, len(spans))
	}
	return nil
}

func (q quietExporter) Shutdown(ctx context.Context) error {
	if err := q.SpanExporter.Shutdown(ctx); err != nil {
		return fmt.Errorf("%s: %w", q.errs.name, err)
	}
	return nil
}
