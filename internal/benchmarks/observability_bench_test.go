package benchmarks

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/mecha-dev/mecha/internal/api/httpapi"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics"
)

// BenchmarkMetricsOverhead is BenchmarkStateHTTP's save+get pair with the
// Prometheus instrumentation off and on (the endpoint on a free loopback
// port, as `mecha sidecar` runs by default), one caller and, in
// /parallel, GOMAXPROCS×4 callers for throughput. The ratio of on to off
// is what metrics cost on the hot path; cpu-µs/op (reportCPU) is the
// steadier figure on a busy machine. BENCHMARKS.md has the figures.
func BenchmarkMetricsOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		start := func(b *testing.B) *mechatest.Sidecar {
			s := mechatest.Start(b, func(o *runtime.Options) {
				quiet(o)
				o.Metrics = runtime.MetricsOptions{Enabled: on, ListenAddresses: []string{"127.0.0.1"}}
			}, mechatest.InMemory)
			if (s.RT.MetricsAddr() != "") != on {
				b.Fatalf("metrics endpoint %q with metrics %v", s.RT.MetricsAddr(), on)
			}
			return s
		}
		b.Run(name, func(b *testing.B) {
			s := start(b)
			c := newHTTPClient()
			defer c.CloseIdleConnections()
			var buf bytes.Buffer
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				httpSaveGet(b, c, s.URL, &buf)
			}
			reportCPU(b, cpu)
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			s := start(b)
			c := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}}
			defer c.CloseIdleConnections()
			b.ReportAllocs()
			b.SetParallelism(4)
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				var buf bytes.Buffer
				for pb.Next() {
					httpSaveGet(b, c, s.URL, &buf)
				}
			})
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkMetricsMiddleware is BenchmarkStateHandlers' HTTP save+get
// with and without the metrics middleware: the instrumentation's own CPU
// and allocations, without sockets or a client to hide them.
func BenchmarkMetricsMiddleware(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			var h http.Handler = httpapi.Handler(httpapi.Deps{AppID: "bench", State: newBlock(b), Health: ready{}, MaxBodySize: 4 << 20})
			if on {
				h = metrics.New(metrics.Options{AppID: "bench"}).HTTPServer(h)
			}
			body := bytes.NewReader(saveBody)
			save, _ := http.NewRequest(http.MethodPost, "/v1.0/state/statestore", nil)
			save.Header.Set("Content-Type", "application/json")
			save.ContentLength = int64(len(saveBody))
			get, _ := http.NewRequest(http.MethodGet, "/v1.0/state/statestore/k", nil)
			w := &responseWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(saveBody)
				save.Body = io.NopCloser(body)
				w.reset()
				h.ServeHTTP(w, save)
				if w.status != http.StatusNoContent {
					b.Fatalf("save: %d", w.status)
				}
				w.reset()
				h.ServeHTTP(w, get)
				if w.status != http.StatusOK || w.n != valueSize {
					b.Fatalf("get: %d, %d bytes", w.status, w.n)
				}
			}
		})
	}
}
