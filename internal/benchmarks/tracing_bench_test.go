package benchmarks

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/api/httpapi"
	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing/tracingtest"
)

// tracingCase is one tracing setting of the sidecar under
// BenchmarkStateHTTPTracing.
type tracingCase struct {
	name string
	// rate is spec.tracing.samplingRate; "" leaves spec.tracing out.
	rate string
}

var tracingCases = []tracingCase{{"off", ""}, {"rate0", "0"}, {"rate0.1", "0.1"}, {"rate1", "1"}}

// BenchmarkStateHandlersTracing is BenchmarkStateHandlers' http/save+get
// (the HTTP API handler called directly: no sockets, no client) behind the
// tracing middleware, for the same tracing settings. Without a network or
// a client in the same process it shows the sidecar's own CPU per pair,
// the exporting goroutine's included (cpu-µs/op), with less noise.
func BenchmarkStateHandlersTracing(b *testing.B) {
	for _, c := range tracingCases {
		b.Run(c.name, func(b *testing.B) {
			var p *tracing.Provider
			var rcv *tracingtest.Receiver
			if c.rate != "" {
				rcv = tracingtest.StartCounter(b)
				f := false
				var err error
				p, err = tracing.New(b.Context(), &config.TracingSpec{SamplingRate: c.rate, Otel: &config.OtelSpec{
					EndpointAddress: rcv.Addr(), IsSecure: &f, Protocol: "grpc",
				}}, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			h := p.HTTPMiddleware(httpapi.Handler(httpapi.Deps{AppID: "bench", State: newBlock(b), Health: ready{}, MaxBodySize: 4 << 20}))
			body := bytes.NewReader(saveBody)
			w := &responseWriter{h: http.Header{}}
			pair := func() {
				body.Reset(saveBody)
				save, _ := http.NewRequest(http.MethodPost, "/v1.0/state/statestore", io.NopCloser(body))
				save.Header.Set("Content-Type", "application/json")
				save.ContentLength = int64(len(saveBody))
				w.reset()
				h.ServeHTTP(w, save)
				if w.status != http.StatusNoContent {
					b.Fatalf("save: %d", w.status)
				}
				get, _ := http.NewRequest(http.MethodGet, "/v1.0/state/statestore/k", nil)
				w.reset()
				h.ServeHTTP(w, get)
				if w.status != http.StatusOK || w.n != valueSize {
					b.Fatalf("get: %d, %d bytes", w.status, w.n)
				}
			}
			pair()
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				pair()
			}
			reportCPU(b, cpu)
			b.StopTimer()
			if p != nil {
				_ = p.Shutdown(b.Context())
				b.ReportMetric(float64(rcv.Count())/float64(b.N), "spans/op")
			}
		})
	}
}

// tracedSidecar starts a sidecar with state.in-memory and the tracing of
// c; at a rate above 0 it exports over OTLP/gRPC to an in-process receiver
// that counts the spans (so the sidecar's export path, batching, OTLP
// conversion, protobuf encoding and gRPC, is part of the cost, while the
// receiver only scans the bytes instead of decoding them, as a collector
// on another machine would cost the sidecar nothing).
func tracedSidecar(b *testing.B, c tracingCase) (*mechatest.Sidecar, *tracingtest.Receiver) {
	configure, rcv := tracingConfig(b, c)
	return mechatest.Start(b, configure, mechatest.InMemory), rcv
}

// tracingConfig is the sidecar options of c (quiet, and at a rate the
// Configuration file exporting to a new counting receiver, returned; nil
// when tracing is off), for any number of sidecars sharing that receiver.
func tracingConfig(b *testing.B, c tracingCase) (func(*runtime.Options), *tracingtest.Receiver) {
	if c.rate == "" {
		return quiet, nil
	}
	rcv := tracingtest.StartCounter(b)
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n  tracing:\n    samplingRate: \"" + c.rate + "\"\n" +
		"    otel:\n      endpointAddress: \"" + rcv.Addr() + "\"\n      isSecure: false\n      protocol: grpc\n"
	f := filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		b.Fatal(err)
	}
	return func(o *runtime.Options) {
		quiet(o)
		o.ConfigFiles = []string{f}
	}, rcv
}

// BenchmarkStateHTTPTracing is BenchmarkStateHTTP's save+get pair with
// tracing off (no spec.tracing), at samplingRate 0 (trace context
// propagated, nothing recorded), 0.1 and 1 (every pair is two spans, the
// API server spans, each with its store call as db.operation, all
// exported).
// seq is one client in a loop (latency); par is 16 concurrent clients
// (throughput on the machine's cores, shared with the client). spans/op
// is what the receiver got per pair, for the rate-1 case.
func BenchmarkStateHTTPTracing(b *testing.B) {
	benchTraced(b, func(b *testing.B, c tracingCase) (tracedOp, *tracingtest.Receiver, []*mechatest.Sidecar) {
		s, rcv := tracedSidecar(b, c)
		return func(b *testing.B, cl *http.Client, buf *bytes.Buffer) { httpSaveGet(b, cl, s.URL, buf) }, rcv, []*mechatest.Sidecar{s}
	})
}

// tracedOp is one operation of a tracing benchmark, by one client.
type tracedOp func(b *testing.B, cl *http.Client, buf *bytes.Buffer)

// benchTraced runs, for each tracing case, the operation start sets up
// (with the receiver and the sidecars exporting to it): /seq one client in
// a loop after a warm-up call, /par 8 clients per GOMAXPROCS, each with
// its own connection; it reports cpu-µs/op and spans/op.
func benchTraced(b *testing.B, start func(*testing.B, tracingCase) (tracedOp, *tracingtest.Receiver, []*mechatest.Sidecar)) {
	for _, c := range tracingCases {
		b.Run(c.name+"/seq", func(b *testing.B) {
			op, rcv, sidecars := start(b, c)
			cl := newHTTPClient()
			defer cl.CloseIdleConnections()
			var buf bytes.Buffer
			op(b, cl, &buf)
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				op(b, cl, &buf)
			}
			reportCPU(b, cpu)
			reportSpans(b, rcv, sidecars...)
		})
		b.Run(c.name+"/par", func(b *testing.B) {
			op, rcv, sidecars := start(b, c)
			b.SetParallelism(8) // 16 clients on 2 cores
			b.ReportAllocs()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				cl := newHTTPClient()
				defer cl.CloseIdleConnections()
				var buf bytes.Buffer
				for pb.Next() {
					op(b, cl, &buf)
				}
			})
			reportCPU(b, cpu)
			reportSpans(b, rcv, sidecars...)
		})
	}
}

// cpuTime is the CPU time the process (client, sidecar and receiver
// together) has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per pair since start: on a
// machine other work shares, a steadier measure of cost than wall time
// (throughput on N idle cores is about N / cpu-µs).
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// reportSpans stops the timer, closes the sidecars (which flushes their
// exporters) and reports the spans received per iteration.
func reportSpans(b *testing.B, rcv *tracingtest.Receiver, sidecars ...*mechatest.Sidecar) {
	b.StopTimer()
	if rcv == nil {
		return
	}
	for _, s := range sidecars {
		_ = s.RT.Close(b.Context())
	}
	b.ReportMetric(float64(rcv.Count())/float64(b.N), "spans/op")
}
