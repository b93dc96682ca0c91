package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/zipkin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mecha-dev/mecha/internal/config"
)

// exporters creates the exporters spec names, each wrapped so that its
// failures go to log: stdout (the log itself), zipkin and OTLP.
func exporters(ctx context.Context, spec *config.TracingSpec, log *slog.Logger) ([]sdktrace.SpanExporter, []string, error) {
	var out []sdktrace.SpanExporter
	var names []string
	add := func(name string, e sdktrace.SpanExporter) {
		out = append(out, quietExporter{SpanExporter: e, errs: &exportErrors{log: log, name: name}})
		names = append(names, name)
	}
	if spec.Stdout {
		add("stdout", logExporter{log: log})
	}
	if z := spec.Zipkin; z != nil && z.EndpointAddress != "" {
		e, err := zipkin.New(z.EndpointAddress, zipkin.WithLogger(slog.NewLogLogger(log.Handler(), slog.LevelDebug)))
		if err != nil {
			return nil, nil, fmt.Errorf("spec.tracing.zipkin: %w", err)
		}
		add("zipkin", e)
	}
	if o := spec.Otel; o != nil && o.EndpointAddress != "" {
		e, err := otlpExporter(ctx, o)
		if err != nil {
			return nil, nil, fmt.Errorf("spec.tracing.otel: %w", err)
		}
		add("otlp-"+protocol(o), e)
	}
	return out, names, nil
}

func protocol(o *config.OtelSpec) string {
	if o.Protocol == "" {
		return "grpc"
	}
	return o.Protocol
}

// otlpExporter is an OTLP exporter for spec.tracing.otel. The endpoint is
// host:port (a URL with a scheme is taken as it is); isSecure (default
// true, as daprd) chooses TLS. Retries stay within one export's timeout.
func otlpExporter(ctx context.Context, o *config.OtelSpec) (sdktrace.SpanExporter, error) {
	secure := o.IsSecure == nil || *o.IsSecure
	headers := map[string]string{}
	for _, h := range o.Headers {
		v := h.Value
		if h.EnvRef != "" {
			v = os.Getenv(h.EnvRef)
		}
		headers[h.Name] = v
	}
	timeout := ExportTimeout
	if o.Timeout != "" {
		d, err := time.ParseDuration(o.Timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout %q is not a positive duration", o.Timeout)
		}
		timeout = d
	}
	hasScheme := strings.Contains(o.EndpointAddress, "://")
	switch protocol(o) {
	case "grpc":
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithTimeout(timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second, MaxElapsedTime: timeout}),
		}
		if hasScheme {
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.EndpointAddress))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(o.EndpointAddress))
		}
		if !secure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http":
		opts := []otlptracehttp.Option{
			otlptracehttp.WithTimeout(timeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond, MaxInterval: 2 * time.Second, MaxElapsedTime: timeout}),
		}
		if hasScheme {
			opts = append(opts, otlptracehttp.WithEndpointURL(o.EndpointAddress))
		} else {
			opts = append(opts, otlptracehttp.WithEndpoint(o.EndpointAddress))
		}
		if !secure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(headers))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("protocol %q is not grpc or http", o.Protocol)
}

// logExporter is spec.tracing.stdout: one log line per span, at info
// level, as daprd's stdout exporter.
type logExporter struct{ log *slog.Logger }

func (e logExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	for _, s := range spans {
		var parent string
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		attrs := make([]any, 0, 2*len(s.Attributes()))
		for _, kv := range s.Attributes() {
			attrs = append(attrs, string(kv.Key), kv.Value.Emit())
		}
		e.log.LogAttrs(ctx, slog.LevelInfo, "trace span",
			slog.String("span", s.Name()),
			slog.String("kind", spanKind(s.SpanKind())),
			slog.String("trace_id", s.SpanContext().TraceID().String()),
			slog.String("span_id", s.SpanContext().SpanID().String()),
			slog.String("parent_span_id", parent),
			slog.Time("start", s.StartTime()),
			slog.Duration("duration", s.EndTime().Sub(s.StartTime())),
			slog.String("status", s.Status().Code.String()),
			slog.Group("attributes", attrs...),
		)
	}
	return nil
}

func (logExporter) Shutdown(context.Context) error { return nil }

func spanKind(k trace.SpanKind) string { return k.String() }

// attrs is a small helper to build attribute lists without the caller
// importing the attribute package.
func attrs(kv ...string) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			out = append(out, attribute.String(kv[i], kv[i+1]))
		}
	}
	return out
}
