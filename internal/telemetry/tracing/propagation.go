package tracing

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// Trace context keys: W3C headers (HTTP, gRPC metadata, CloudEvents,
// binding metadata) and Dapr's binary gRPC form (OpenCensus's).
const (
	TraceParentKey  = "traceparent"
	TraceStateKey   = "tracestate"
	GRPCTraceBinKey = "grpc-trace-bin"
)

// maxTraceStateLen is the longest tracestate sent on, as daprd's limit.
const maxTraceStateLen = 512

var w3c = propagation.TraceContext{}

// pair is a TextMapCarrier over one traceparent and tracestate.
type pair struct{ parent, state string }

func (p *pair) Get(k string) string {
	switch k {
	case TraceParentKey:
		return p.parent
	case TraceStateKey:
		return p.state
	}
	return ""
}

func (p *pair) Set(k, v string) {
	switch k {
	case TraceParentKey:
		p.parent = v
	case TraceStateKey:
		p.state = v
	}
}

func (p *pair) Keys() []string { return []string{TraceParentKey, TraceStateKey} }

// ParseTraceParent parses a W3C traceparent (and its tracestate): the span
// context is remote and valid, or ok is false for an empty or malformed
// traceparent (wrong length, upper-case or non-hex digits, version ff,
// all-zero ids, extra fields in version 00). A tracestate that does not
// parse is dropped, as the W3C spec asks.
func ParseTraceParent(parent, state string) (sc trace.SpanContext, ok bool) {
	if parent == "" {
		return trace.SpanContext{}, false
	}
	sc = trace.SpanContextFromContext(w3c.Extract(context.Background(), &pair{parent: parent, state: state}))
	return sc, sc.IsValid()
}

// validTraceParent reports whether s is a traceparent ParseTraceParent
// accepts, without building a span context: lower-case hex version (not
// ff), trace id, span id and flags, ids not all zero, and in version 00
// nothing after the flags.
func validTraceParent(s string) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && (s[55] != '-' || s[:2] == "00")) {
		return false
	}
	if s[:2] == "ff" || !isLowerHex(s[:2]) || !isLowerHex(s[3:35]) || !isLowerHex(s[36:52]) || !isLowerHex(s[53:55]) {
		return false
	}
	return strings.Trim(s[3:35], "0") != "" && strings.Trim(s[36:52], "0") != ""
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// FormatTraceParent is sc as a version-00 traceparent, or "" when sc is not
// valid.
func FormatTraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
	return string(b[:])
}

// formatTraceState is sc's tracestate, "" when empty or too long to pass on.
func formatTraceState(sc trace.SpanContext) string {
	if sc.TraceState().Len() == 0 {
		return ""
	}
	s := sc.TraceState().String()
	if len(s) > maxTraceStateLen {
		return ""
	}
	return s
}

// BinaryFromSpanContext encodes sc in Dapr's grpc-trace-bin format
// (OpenCensus binary: version 0, then field 0 the trace id, field 1 the
// span id, field 2 the trace options); nil when sc is not valid.
func BinaryFromSpanContext(sc trace.SpanContext) []byte {
	if !sc.IsValid() {
		return nil
	}
	b := make([]byte, 29)
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1] = 0, 0
	copy(b[2:18], tid[:])
	b[18] = 1
	copy(b[19:27], sid[:])
	b[27] = 2
	b[28] = byte(sc.TraceFlags() & trace.FlagsSampled)
	return b
}

// SpanContextFromBinary decodes grpc-trace-bin. It needs version 0 and a
// trace id; the span id and options fields are optional, as in the format,
// but a span context without a span id is not valid and ok is false.
func SpanContextFromBinary(b []byte) (sc trace.SpanContext, ok bool) {
	if len(b) == 0 || b[0] != 0 {
		return trace.SpanContext{}, false
	}
	b = b[1:]
	var cfg trace.SpanContextConfig
	if len(b) < 17 || b[0] != 0 {
		return trace.SpanContext{}, false
	}
	copy(cfg.TraceID[:], b[1:17])
	b = b[17:]
	if len(b) >= 9 && b[0] == 1 {
		copy(cfg.SpanID[:], b[1:9])
		b = b[9:]
	}
	if len(b) >= 2 && b[0] == 2 {
		cfg.TraceFlags = trace.TraceFlags(b[1]) & trace.FlagsSampled
	}
	cfg.Remote = true
	sc = trace.NewSpanContext(cfg)
	return sc, sc.IsValid()
}

// fromGRPC is the caller's span context in incoming gRPC metadata:
// grpc-trace-bin first, as daprd, then traceparent/tracestate.
func fromGRPC(md metadata.MD) (trace.SpanContext, bool) {
	if v := md.Get(GRPCTraceBinKey); len(v) > 0 {
		if sc, ok := SpanContextFromBinary([]byte(v[0])); ok {
			if ts := md.Get(TraceStateKey); len(ts) > 0 {
				if state, err := trace.ParseTraceState(strings.Join(ts, ",")); err == nil {
					sc = sc.WithTraceState(state)
				}
			}
			return sc, true
		}
	}
	tp := md.Get(TraceParentKey)
	if len(tp) == 0 {
		return trace.SpanContext{}, false
	}
	return ParseTraceParent(tp[0], strings.Join(md.Get(TraceStateKey), ","))
}

// fromMD is the span context carried in Dapr's internal invocation
// metadata: traceparent/tracestate (any case), else grpc-trace-bin (which
// the metadata holds base64-encoded).
func fromMD(md invokemsg.MD) (trace.SpanContext, bool) {
	if tp := invokemsg.Get(md, TraceParentKey); tp != "" {
		if sc, ok := ParseTraceParent(tp, invokemsg.Get(md, TraceStateKey)); ok {
			return sc, true
		}
	}
	if v := invokemsg.Get(md, GRPCTraceBinKey); v != "" {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			return SpanContextFromBinary(b)
		}
	}
	return trace.SpanContext{}, false
}

// InjectHTTP sets the traceparent (and tracestate) of the span in ctx on
// h, replacing what was there; without a valid span h is left alone.
func InjectHTTP(ctx context.Context, h http.Header) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	h["Traceparent"] = []string{FormatTraceParent(sc)}
	if ts := formatTraceState(sc); ts != "" {
		h["Tracestate"] = []string{ts}
	} else {
		delete(h, "Tracestate")
	}
}

// injectGRPC sets sc on outgoing gRPC metadata as traceparent, tracestate
// and grpc-trace-bin (daprd sends both forms).
func injectGRPC(sc trace.SpanContext, md metadata.MD) {
	md[TraceParentKey] = []string{FormatTraceParent(sc)}
	if ts := formatTraceState(sc); ts != "" {
		md[TraceStateKey] = []string{ts}
	} else {
		delete(md, TraceStateKey)
	}
	md[GRPCTraceBinKey] = []string{string(BinaryFromSpanContext(sc))}
}

// InjectMD sets the span context of ctx in internal invocation metadata,
// replacing every spelling of the trace keys the caller's headers had.
func InjectMD(ctx context.Context, md invokemsg.MD) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || md == nil {
		return
	}
	for k := range md {
		switch strings.ToLower(k) {
		case TraceParentKey, TraceStateKey, GRPCTraceBinKey:
			delete(md, k)
		}
	}
	invokemsg.Set(md, TraceParentKey, FormatTraceParent(sc))
	if ts := formatTraceState(sc); ts != "" {
		invokemsg.Set(md, TraceStateKey, ts)
	}
}

// InjectMap sets traceparent and tracestate of the span in ctx in md
// (binding metadata), replacing the caller's; md must not be nil.
func InjectMap(ctx context.Context, md map[string]string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	md[TraceParentKey] = FormatTraceParent(sc)
	if ts := formatTraceState(sc); ts != "" {
		md[TraceStateKey] = ts
	} else {
		delete(md, TraceStateKey)
	}
}

// TraceContext returns the W3C traceparent and tracestate of the span in
// ctx; ok is false when ctx has no valid span (tracing off).
func TraceContext(ctx context.Context) (parent, state string, ok bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", "", false
	}
	return FormatTraceParent(sc), formatTraceState(sc), true
}

// OutgoingGRPC returns ctx with the span context of ctx set in its outgoing
// gRPC metadata, replacing trace keys already there.
func OutgoingGRPC(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ctx
	}
	md, ok := metadata.FromOutgoingContext(ctx)
	if ok {
		md = md.Copy()
	} else {
		md = make(metadata.MD, 3)
	}
	injectGRPC(sc, md)
	return metadata.NewOutgoingContext(ctx, md)
}

// UnaryClientInterceptor sends the span context of each call's context to
// the server (the app channel): every call then carries the trace of the
// span that made it, whatever metadata the caller attached.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(OutgoingGRPC(ctx), method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor is UnaryClientInterceptor for streams.
func StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(OutgoingGRPC(ctx), desc, cc, method, opts...)
	}
}
