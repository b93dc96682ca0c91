package tracing

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/invokemsg"
)

const (
	validTP  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	validTID = "4bf92f3577b34da6a3ce929d0e0e4736"
	validSID = "00f067aa0ba902b7"
)

func TestParseTraceParent(t *testing.T) {
	good := []struct {
		in      string
		sampled bool
	}{
		{validTP, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", false},
		// A later version may add fields: the first four are read.
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever", true},
	}
	for _, c := range good {
		sc, ok := ParseTraceParent(c.in, "vendor=x")
		if !ok || sc.TraceID().String() != validTID || sc.SpanID().String() != validSID || sc.IsSampled() != c.sampled || !sc.IsRemote() {
			t.Errorf("ParseTraceParent(%q) = %v, %v", c.in, sc, ok)
		}
		if sc.TraceState().Get("vendor") != "x" {
			t.Errorf("tracestate of %q lost: %q", c.in, sc.TraceState())
		}
	}
	bad := []string{
		"",
		"garbage",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper case
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    // no flags
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", // not hex
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
	}
	for _, in := range bad {
		if sc, ok := ParseTraceParent(in, ""); ok || sc.IsValid() {
			t.Errorf("ParseTraceParent(%q) accepted: %v", in, sc)
		}
	}
	// A tracestate that does not parse is dropped, the traceparent kept.
	if sc, ok := ParseTraceParent(validTP, "=nokey,,,bad value"); !ok || sc.TraceState().Len() != 0 {
		t.Errorf("bad tracestate: %v %v", sc, ok)
	}
}

func TestFormatTraceParentRoundTrip(t *testing.T) {
	sc, _ := ParseTraceParent(validTP, "")
	if got := FormatTraceParent(sc); got != validTP {
		t.Fatalf("FormatTraceParent = %q, want %q", got, validTP)
	}
	if got := FormatTraceParent(trace.SpanContext{}); got != "" {
		t.Fatalf("FormatTraceParent(invalid) = %q", got)
	}
}

func TestGRPCTraceBinFormat(t *testing.T) {
	sc, _ := ParseTraceParent(validTP, "")
	b := BinaryFromSpanContext(sc)
	// version 0 | 0 traceid(16) | 1 spanid(8) | 2 options(1)
	want := append(append(append(append([]byte{0, 0}, mustHex(validTID)...), 1), mustHex(validSID)...), 2, 1)
	if !bytes.Equal(b, want) {
		t.Fatalf("BinaryFromSpanContext = %x, want %x", b, want)
	}
	back, ok := SpanContextFromBinary(b)
	if !ok || back.TraceID() != sc.TraceID() || back.SpanID() != sc.SpanID() || !back.IsSampled() {
		t.Fatalf("SpanContextFromBinary = %v, %v", back, ok)
	}
	for name, bad := range map[string][]byte{
		"empty":        nil,
		"version 1":    append([]byte{1}, b[1:]...),
		"short":        b[:10],
		"no span id":   b[:18],
		"zero trace":   append(append([]byte{0, 0}, make([]byte, 16)...), b[18:]...),
		"wrong field0": append([]byte{0, 1}, b[2:]...),
	} {
		if sc, ok := SpanContextFromBinary(bad); ok {
			t.Errorf("%s: accepted %x as %v", name, bad, sc)
		}
	}
	md := metadata.MD{"grpc-trace-bin": {string(b)}, "traceparent": {"00-11111111111111111111111111111111-2222222222222222-01"}}
	if got, ok := fromGRPC(md); !ok || got.TraceID() != sc.TraceID() {
		t.Errorf("grpc-trace-bin must win over traceparent: %v", got)
	}
	md = metadata.MD{"grpc-trace-bin": {"junk"}, "traceparent": {validTP}}
	if got, ok := fromGRPC(md); !ok || got.SpanID() != sc.SpanID() {
		t.Errorf("a bad grpc-trace-bin must fall back to traceparent: %v", got)
	}
	// Internal metadata holds binary values base64-encoded.
	imd := invokemsg.MD{"grpc-trace-bin": &internalv1.ListStringValue{Values: []string{base64.StdEncoding.EncodeToString(b)}}}
	if got, ok := fromMD(imd); !ok || got.SpanID() != sc.SpanID() {
		t.Errorf("fromMD(grpc-trace-bin) = %v, %v", got, ok)
	}
}

func mustHex(s string) []byte {
	var out []byte
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'a') + 10
			}
		}
		out = append(out, v)
	}
	return out
}

// TestInjectReplacesEverySpelling: the caller's headers reach internal
// metadata with HTTP's canonical case; injecting must not leave a second,
// stale traceparent next to the new one.
func TestInjectReplacesEverySpelling(t *testing.T) {
	sc, _ := ParseTraceParent(validTP, "")
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	md := invokemsg.FromHTTPHeader(http.Header{"Traceparent": {"00-bad"}, "Tracestate": {"a=b"}, "Other": {"x"}})
	InjectMD(ctx, md)
	n := 0
	for k := range md {
		if k == "Traceparent" || k == "Tracestate" {
			t.Errorf("stale key %s left", k)
		}
		if k == "traceparent" {
			n++
		}
	}
	if n != 1 || invokemsg.Get(md, "traceparent") != validTP || invokemsg.Get(md, "Other") != "x" {
		t.Errorf("after InjectMD: %v", md)
	}
	h := http.Header{"Traceparent": {"00-bad"}, "Tracestate": {"a=b"}}
	InjectHTTP(ctx, h)
	if h.Get("traceparent") != validTP || h.Get("tracestate") != "" {
		t.Errorf("after InjectHTTP: %v", h)
	}
	// Without a span (tracing off) nothing changes.
	h = http.Header{"Traceparent": {"00-bad"}}
	InjectHTTP(context.Background(), h)
	if h.Get("traceparent") != "00-bad" {
		t.Errorf("InjectHTTP without a span changed %v", h)
	}
}

func TestParseRate(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for in, want := range map[string]float64{"": DefaultSamplingRate, "1": 1, "0": 0, "0.25": 0.25, " 0.5 ": 0.5, "abc": DefaultSamplingRate, "2": 1, "-1": 0} {
		if got := parseRate(in, log); got != want {
			t.Errorf("parseRate(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestOTLPEnvironment(t *testing.T) {
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
	got := withEnv(nil, func(k string) string { return env[k] })
	if got == nil || got.SamplingRate != "1" || got.Otel == nil || got.Otel.EndpointAddress != "collector:4318" || got.Otel.Protocol != "http" || got.Otel.IsSecure == nil || *got.Otel.IsSecure {
		t.Fatalf("withEnv = %+v %+v", got, got.Otel)
	}
	spec := &config.TracingSpec{SamplingRate: "0.5", Otel: &config.OtelSpec{EndpointAddress: "mine:4317", Protocol: "grpc"}}
	if withEnv(spec, func(k string) string { return env[k] }) != spec {
		t.Fatal("the environment must not override a configured endpoint")
	}
	if withEnv(nil, func(string) string { return "" }) != nil {
		t.Fatal("no spec and no environment must leave tracing off")
	}
}

// TestConfigurationTracing reads spec.tracing from a Dapr Configuration
// and checks that New honours it: the mode, and a bad protocol refused.
func TestConfigurationTracing(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	cfg, err := config.LoadConfiguration([]string{write("a.yaml", "  tracing:\n    samplingRate: \"0.5\"\n    stdout: true\n    otel:\n      endpointAddress: 127.0.0.1:1\n      isSecure: false\n      protocol: http\n      timeout: 2s\n      headers:\n      - name: x-key\n        value: v\n    zipkin:\n      endpointAddress: http://127.0.0.1:1/api/v2/spans\n")})
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Spec.Tracing
	if tr == nil || tr.SamplingRate != "0.5" || !tr.Stdout || tr.Otel.Protocol != "http" || *tr.Otel.IsSecure || tr.Otel.Headers[0].Value != "v" || tr.Zipkin.EndpointAddress == "" {
		t.Fatalf("spec.tracing = %+v", tr)
	}
	p, err := New(context.Background(), tr, "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.SamplingRate() != 0.5 || p.tp == nil {
		t.Fatalf("provider rate %v, sdk %v", p.SamplingRate(), p.tp != nil)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Logf("shutdown: %v", err)
	}

	if _, err := config.LoadConfiguration([]string{write("b.yaml", "  tracing:\n    otel:\n      protocol: udp\n")}); err == nil {
		t.Fatal("protocol udp was accepted")
	}
	cfg, err = config.LoadConfiguration([]string{write("c.yaml", "  secrets: {}\n")})
	if err != nil {
		t.Fatal(err)
	}
	off, _ := New(context.Background(), cfg.Spec.Tracing, "app", nil)
	if off == nil || !off.off || off.tp != nil || off.SamplingRate() != 0 {
		t.Fatalf("no spec.tracing must be tracing off, got %+v", off)
	}
}

// TestValidTraceParent: the quick check of tracing off agrees with the
// W3C parser on valid, malformed and future-version traceparents.
func TestValidTraceParent(t *testing.T) {
	for _, tp := range []string{
		validTP, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
		"", "garbage",
	} {
		_, want := ParseTraceParent(tp, "")
		if got := validTraceParent(tp); got != want {
			t.Errorf("validTraceParent(%q) = %v, the W3C parser says %v", tp, got, want)
		}
	}
}

// TestPropagationOnlyIDs: at rate 0 each span is a new span id under the
// parent's trace and flags, or a new unsampled trace.
func TestPropagationOnlyIDs(t *testing.T) {
	p, err := New(context.Background(), &config.TracingSpec{SamplingRate: "0"}, "app", nil)
	if err != nil || p == nil || p.tp != nil {
		t.Fatalf("New(rate 0) = %v, %v", p, err)
	}
	parent, _ := ParseTraceParent(validTP, "k=v")
	ctx, span := p.start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "x", trace.SpanKindServer)
	sc := span.SpanContext()
	if span.IsRecording() || sc.TraceID() != parent.TraceID() || sc.SpanID() == parent.SpanID() || !sc.IsSampled() || sc.TraceState().Get("k") != "v" {
		t.Fatalf("child of %v = %v", parent, sc)
	}
	if !trace.SpanContextFromContext(ctx).Equal(sc) {
		t.Fatal("the context does not carry the span")
	}
	_, root := p.start(context.Background(), "x", trace.SpanKindServer)
	if rs := root.SpanContext(); !rs.IsValid() || rs.IsSampled() || rs.TraceID() == parent.TraceID() {
		t.Fatalf("root = %v", rs)
	}
}
