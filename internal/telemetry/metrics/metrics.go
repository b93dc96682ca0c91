package metrics

import (
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric, as daprd's exporter does.
const Namespace = "dapr"

// DefaultLatencyBuckets are daprd's latency histogram bounds, in
// milliseconds (spec.metric.latencyDistributionBuckets replaces them).
var DefaultLatencyBuckets = []float64{1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400, 500, 650, 800, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000}

// sizeBuckets are daprd's byte-size histogram bounds (1 KiB … 4 GiB).
var sizeBuckets = []float64{1 << 10, 2 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30, 4 << 30}

// Defaults of the cardinality bounds.
const (
	// DefaultMaxPaths is how many distinct HTTP path labels (and, apart,
	// gRPC method and topic labels) a sidecar keeps before it labels new
	// ones "".
	DefaultMaxPaths = 500
	// maxLabelLen truncates a label value: paths come from clients.
	maxLabelLen = 256
)

// Options configure the instrumentation of one sidecar.
type Options struct {
	AppID     string
	Namespace string // the app's namespace (component metrics' namespace label)
	// LatencyBuckets are the latency histogram bounds in milliseconds
	// (default DefaultLatencyBuckets).
	LatencyBuckets []float64
	// LowCardinality is spec.metric.http.increasedCardinality: false (the
	// sidecar's default; the zero value here is per-path series): the
	// path label is "" except for a few static paths, and
	// dapr_http_server_response_count is not kept, as in daprd.
	LowCardinality bool
	// ExcludeVerbs is spec.metric.http.excludeVerbs: the method label of
	// HTTP metrics is "".
	ExcludeVerbs bool
	// MaxPaths bounds distinct path (and method, topic) label values
	// (default DefaultMaxPaths).
	MaxPaths int
}

// Metrics is one sidecar's registry and collectors. A nil *Metrics records
// nothing.
type Metrics struct {
	o   Options
	reg *prometheus.Registry

	httpServer *httpServerMetrics
	httpClient httpClientMetrics
	grpcServer grpcMetrics
	grpcClient grpcMetrics
	invoke     invokeMetrics
	component  componentMetrics
	pubsub     pubsubMetrics
	ops        componentOps
	actors     actorMetrics

	// Bounded label values: client-chosen paths, gRPC methods, topics,
	// app ids and actor types.
	paths, methods, topics, apps, actorTypes bounded
}

// New creates the registry with every collector, and Go and process
// collectors like daprd's endpoint.
func New(o Options) *Metrics {
	if len(o.LatencyBuckets) == 0 {
		o.LatencyBuckets = DefaultLatencyBuckets
	}
	if o.MaxPaths <= 0 {
		o.MaxPaths = DefaultMaxPaths
	}
	m := &Metrics{o: o, reg: prometheus.NewRegistry()}
	for _, b := range []*bounded{&m.paths, &m.methods, &m.topics, &m.apps, &m.actorTypes} {
		b.max = o.MaxPaths
	}
	f := factory{reg: m.reg, appID: o.AppID, latency: o.LatencyBuckets}
	m.httpServer = newHTTPServerMetrics(f, !o.LowCardinality)
	m.httpClient = newHTTPClientMetrics(f)
	m.grpcServer = newGRPCMetrics(f, "server")
	m.grpcClient = newGRPCMetrics(f, "client")
	m.invoke = newInvokeMetrics(f)
	m.component = newComponentMetrics(f)
	m.pubsub = newPubsubMetrics(f, o.Namespace)
	m.ops = newComponentOps(f, o.Namespace)
	m.actors = newActorMetrics(f)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the sidecar's registry (tests gather it directly).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler(errLog promhttp.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: errLog})
}

// factory creates collectors registered on reg whose first label is
// app_id, curried with the sidecar's app id.
type factory struct {
	reg     *prometheus.Registry
	appID   string
	latency []float64
}

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, append([]string{"app_id"}, labels...))
	f.reg.MustRegister(v)
	return v.MustCurryWith(prometheus.Labels{"app_id": f.appID})
}

func (f factory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, append([]string{"app_id"}, labels...))
	f.reg.MustRegister(v)
	return v.MustCurryWith(prometheus.Labels{"app_id": f.appID}).(*prometheus.HistogramVec)
}

// seriesCache holds the collectors of each label set seen, so that a hot
// path finds its series with one map read under a read lock, where
// WithLabelValues would hash the labels (and allocate their slice) on
// every call.
type seriesCache[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

// get returns the series of k, if made before.
func (c *seriesCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[k]
	return v, ok
}

// getOrMake returns the series of k, made by make (once) if need be; make
// also returns the key to keep it under (k, or a copy of it that no longer
// points into a request).
func (c *seriesCache[K, V]) getOrMake(k K, make func(K) (K, V)) V {
	if v, ok := c.get(k); ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[k]; ok {
		return v
	}
	k, v := make(k)
	if c.m == nil {
		c.m = map[K]V{}
	}
	c.m[k] = v
	return v
}

// bounded admits at most max distinct label values; later new values
// become "". Values already seen stay: a bounded set of series that a
// client cannot grow. (A map under a RWMutex rather than a sync.Map: a
// string key in an interface would cost an allocation per lookup.)
type bounded struct {
	mu   sync.RWMutex
	seen map[string]struct{}
	max  int
}

func (b *bounded) get(v string) string {
	b.mu.RLock()
	_, ok := b.seen[v]
	full := len(b.seen) >= b.max
	b.mu.RUnlock()
	if ok {
		return v
	}
	if c := clean(v); c != v {
		return b.get(c) // admitted under its clean form, or not at all
	}
	if full {
		return "" // no write lock for every made-up value past the bound
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.max {
		return ""
	}
	if b.seen == nil {
		b.seen = map[string]struct{}{}
	}
	v = strings.Clone(v) // v may be a slice of a request's path
	b.seen[v] = struct{}{}
	return v
}

// clean makes v a valid, short label value: Prometheus requires UTF-8, and
// paths and topics come from clients.
func clean(v string) string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	if len(v) > maxLabelLen {
		cut := maxLabelLen
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	return v
}
