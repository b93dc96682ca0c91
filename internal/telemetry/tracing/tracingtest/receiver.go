// Package tracingtest is an in-process OTLP trace receiver for tests and
// benchmarks: the collector's TraceService on a 127.0.0.1:0 gRPC server,
// keeping every span it is sent.
package tracingtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, with ids in hex.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Name                          string
	// Kind is server, client, producer, consumer or internal.
	Kind string
	// Service is the resource's service.name.
	Service    string
	Attributes map[string]string
	// Error is the status message of a span whose status is Error.
	Error   string
	IsError bool
}

func (s Span) String() string {
	return fmt.Sprintf("%s %q kind=%s trace=%s span=%s parent=%s", s.Service, s.Name, s.Kind, s.TraceID, s.SpanID, s.ParentSpanID)
}

// Receiver collects spans exported to it over OTLP/gRPC.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	addr string
	// keep, when false, counts spans without keeping them.
	keep atomic.Bool

	mu      sync.Mutex
	spans   []Span
	count   int
	exports int
}

// Start serves a receiver on 127.0.0.1:0 until the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}
	r.keep.Store(true)
	r.serve(t)
	return r
}

// StartCounter serves a receiver that only counts spans, by scanning the
// requests' wire format instead of decoding them: a benchmark's receiver,
// whose own cost must not weigh on the sidecar it shares the CPUs with.
// Spans returns nothing; Count works.
func StartCounter(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}
	r.serve(t, grpc.ForceServerCodec(countingCodec{r}))
	return r
}

func (r *Receiver) serve(t testing.TB, opts ...grpc.ServerOption) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	gs := grpc.NewServer(opts...)
	collectortrace.RegisterTraceServiceServer(gs, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := gs.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("OTLP receiver: %v", err)
		}
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
}

// countingCodec counts the spans of an export request as it "decodes" it,
// leaving the message empty; responses are encoded as usual.
type countingCodec struct{ r *Receiver }

func (countingCodec) Name() string { return "proto" }

func (countingCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }

func (c countingCodec) Unmarshal(data []byte, v any) error {
	if _, ok := v.(*collectortrace.ExportTraceServiceRequest); !ok {
		return proto.Unmarshal(data, v.(proto.Message))
	}
	n, err := countNested(data, 1, 2, 2) // resource_spans / scope_spans / spans
	if err != nil {
		return err
	}
	c.r.mu.Lock()
	c.r.count += n
	c.r.mu.Unlock()
	return nil
}

// countNested counts the occurrences of the last field of path, each
// field of path but the last being an embedded message.
func countNested(b []byte, path ...protowire.Number) (int, error) {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		b = b[l:]
		if num == path[0] && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return 0, protowire.ParseError(l)
			}
			if len(path) == 1 {
				n++
			} else {
				m, err := countNested(v, path[1:]...)
				if err != nil {
					return 0, err
				}
				n += m
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		b = b[l:]
	}
	return n, nil
}

// Addr is the receiver's host:port, for spec.tracing.otel.endpointAddress
// (protocol grpc, isSecure false).
func (r *Receiver) Addr() string { return r.addr }

// KeepSpans chooses whether spans are kept (default) or only counted.
func (r *Receiver) KeepSpans(keep bool) { r.keep.Store(keep) }

// Export implements the collector's TraceService.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	keep := r.keep.Load()
	var got []Span
	n := 0
	for _, rs := range req.GetResourceSpans() {
		service := attrMap(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
			if !keep {
				continue
			}
			for _, s := range ss.GetSpans() {
				got = append(got, Span{
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Name:         s.GetName(),
					Kind:         kindName(s.GetKind()),
					Service:      service,
					Attributes:   attrMap(s.GetAttributes()),
					IsError:      s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
					Error:        s.GetStatus().GetMessage(),
				})
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.count += n
	r.exports++
	r.mu.Unlock()
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func kindName(k tracepb.Span_SpanKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "SPAN_KIND_"))
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = strconv.FormatBool(v.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
		default:
			m[kv.GetKey()] = fmt.Sprint(kv.GetValue())
		}
	}
	return m
}

// Spans returns a copy of the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Count is how many spans were received (kept or not).
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Wait polls the received spans until check accepts them (returns nil)
// or timeout passes, which fails the test with check's last error and the
// spans received.
func (r *Receiver) Wait(t testing.TB, timeout time.Duration, check func([]Span) error) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		err := check(spans)
		if err == nil {
			return spans
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, s := range spans {
				b.WriteString("\n  " + s.String())
			}
			t.Fatalf("spans not as expected after %v: %v; received:%s", timeout, err, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Find returns the first span for which match is true.
func Find(spans []Span, match func(Span) bool) (Span, bool) {
	for _, s := range spans {
		if match(s) {
			return s, true
		}
	}
	return Span{}, false
}
