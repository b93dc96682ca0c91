package metrics

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type httpServerMetrics struct {
	requestCount  *prometheus.CounterVec
	responseCount *prometheus.CounterVec // nil in low-cardinality mode
	latency       *prometheus.HistogramVec
	requestBytes  prometheus.Observer
	responseBytes prometheus.Observer
	// series caches the collectors of one method/path/status, so a request
	// costs one map lookup instead of three label hashes.
	series seriesCache[seriesKey, *httpSeries]
}

type seriesKey struct{ method, path, status string }

type httpSeries struct {
	count, responses prometheus.Counter
	latency          prometheus.Observer
}

func newHTTPServerMetrics(f factory, responseCount bool) *httpServerMetrics {
	h := &httpServerMetrics{
		requestCount: f.counter("http_server_request_count", "Number of HTTP requests the sidecar's HTTP API served.", "method", "path", "status"),
		latency:      f.histogram("http_server_latency", "HTTP API request latency in milliseconds, from the request's arrival to the end of the response.", f.latency, "method", "path", "status"),
	}
	if responseCount {
		h.responseCount = f.counter("http_server_response_count", "Number of HTTP responses the sidecar's HTTP API sent.", "method", "path", "status")
	}
	h.requestBytes = f.histogram("http_server_request_bytes", "HTTP API request body sizes in bytes, as the Content-Length header gives them.", sizeBuckets).WithLabelValues()
	h.responseBytes = f.histogram("http_server_response_bytes", "HTTP API response body sizes in bytes.", sizeBuckets).WithLabelValues()
	return h
}

// get returns the collectors of k, whose path is rawPath's: the path
// label before bounding. A series seen before is found at once (its path
// was admitted then); a new one has its path bounded first.
func (h *httpServerMetrics) get(m *Metrics, k seriesKey) *httpSeries {
	if s, ok := h.series.get(k); ok {
		return s
	}
	k.path = m.paths.get(k.path)
	return h.series.getOrMake(k, h.create)
}

// create makes the collectors of k (its path is bounded, a copy).
func (h *httpServerMetrics) create(k seriesKey) (seriesKey, *httpSeries) {
	s := &httpSeries{
		count:   h.requestCount.WithLabelValues(k.method, k.path, k.status),
		latency: h.latency.WithLabelValues(k.method, k.path, k.status),
	}
	if h.responseCount != nil {
		s.responses = h.responseCount.WithLabelValues(k.method, k.path, k.status)
	}
	return k, s
}

// HTTPServer wraps the HTTP API handler with the dapr_http_server_*
// metrics; with a nil *Metrics it returns next unchanged.
func (m *Metrics) HTTPServer(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := writers.Get().(*responseWriter)
		*rw = responseWriter{ResponseWriter: w}
		// Deferred, so that a handler that aborts the response
		// (http.ErrAbortHandler) is counted with what it sent.
		defer func() {
			defer func() {
				*rw = responseWriter{}
				writers.Put(rw)
			}()
			ms := msSince(start)
			status := rw.status
			if status == 0 {
				status = http.StatusOK
			}
			s := m.httpServer.get(m, seriesKey{m.method(r.Method), m.rawPath(r.URL.Path), statusText(status)})
			s.count.Inc()
			s.latency.Observe(ms)
			if s.responses != nil {
				s.responses.Inc()
			}
			m.httpServer.requestBytes.Observe(float64(max(r.ContentLength, 0)))
			m.httpServer.responseBytes.Observe(float64(rw.size))
		}()
		next.ServeHTTP(rw, r)
	})
}

// method is daprd's method label: the verb, UNKNOWN for a non-standard
// one, "" with excludeVerbs.
func (m *Metrics) method(v string) string {
	if m.o.ExcludeVerbs {
		return ""
	}
	switch v {
	case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete,
		http.MethodHead, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return v
	}
	return "UNKNOWN"
}

// path is the path label of an HTTP request path: NormalizePath, or ""
// in low-cardinality mode (static paths excepted), bounded in number.
func (m *Metrics) path(p string) string {
	return m.paths.get(m.rawPath(p))
}

// rawPath is path before bounding.
func (m *Metrics) rawPath(p string) string {
	if staticPath(p) {
		return p
	}
	if m.o.LowCardinality {
		return ""
	}
	return NormalizePath(p)
}

// staticPath reports the paths daprd always labels as they are.
func staticPath(p string) bool {
	switch p {
	case "/dapr/config", "/dapr/metrics", "/dapr/subscribe", "/healthz":
		return true
	}
	return false
}

// statusTexts avoids formatting the statuses on every request.
var statusTexts = func() (t [600]string) {
	for s := range t {
		t[s] = strconv.Itoa(s)
	}
	return t
}()

func statusText(s int) string {
	if s >= 0 && s < len(statusTexts) {
		return statusTexts[s]
	}
	return strconv.Itoa(s)
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }

// NormalizePath removes the variable parts of an API path the way daprd's
// HTTP metrics do with spec.metric.http.increasedCardinality: true (daprd's
// default, not Mecha's): state keys and secret names go (/v1.0/state/store/key →
// /v1.0/state/store), actor ids become {id}, workflow instance ids
// {instanceId}; other paths only lose repeated slashes.
func NormalizePath(p string) string {
	if p == "" {
		return p
	}
	if strings.Contains(p, "//") || p[0] != '/' {
		for strings.Contains(p, "//") {
			p = strings.ReplaceAll(p, "//", "/")
		}
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
	}
	rest := p[1:]
	// The first five segments and the remainder, like daprd's SplitN(6).
	var seg [6]string
	n := 0
	for n < 5 {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			break
		}
		seg[n] = rest[:i]
		rest = rest[i+1:]
		n++
	}
	seg[n] = rest
	n++
	if n < 3 {
		return p
	}
	if seg[0] == "actors" {
		// An actor call on the app channel: actors/Type/{id}/method/m
		// (daprd drops the leading slash here).
		seg[2] = "{id}"
		return strings.Join(seg[:n], "/")
	}
	switch seg[1] {
	case "state", "secrets":
		// /v1.0/state/store: a prefix of p, no allocation.
		return p[:1+len(seg[0])+1+len(seg[1])+1+len(seg[2])]
	case "actors":
		if n < 5 {
			return p
		}
		return "/" + seg[0] + "/actors/" + seg[2] + "/{id}/" + seg[4]
	case "workflows":
		if n < 4 {
			return p
		}
		if n == 4 {
			return "/" + seg[0] + "/workflows/" + seg[2] + "/{instanceId}"
		}
		if n == 5 && strings.HasPrefix(seg[4], "start") {
			return "/" + seg[0] + "/workflows/" + seg[2] + "/" + seg[3] + "/start"
		}
		if n == 6 && seg[4] == "raiseEvent" && seg[5] != "" {
			return "/" + seg[0] + "/workflows/" + seg[2] + "/{instanceId}/raiseEvent/{eventName}"
		}
		return "/" + seg[0] + "/workflows/" + seg[2] + "/{instanceId}/" + seg[4]
	}
	return p
}

// writers recycles responseWriters: one per request otherwise.
var writers = sync.Pool{New: func() any { return new(responseWriter) }}

// responseWriter records the status and the body size. It forwards
// Flush (streamed invocation responses) and unwraps for
// http.ResponseController.
type responseWriter struct {
	http.ResponseWriter
	status int
	size   int64
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type httpClientMetrics struct {
	sentBytes     *prometheus.HistogramVec
	receivedBytes prometheus.Observer
	latency       *prometheus.HistogramVec
	completed     *prometheus.CounterVec
}

func newHTTPClientMetrics(f factory) httpClientMetrics {
	return httpClientMetrics{
		sentBytes:     f.histogram("http_client_sent_bytes", "Request body sizes in bytes of the sidecar's calls to its HTTP app.", sizeBuckets, "method", "path", "status"),
		receivedBytes: f.histogram("http_client_received_bytes", "Response body sizes in bytes of the sidecar's calls to its HTTP app, error responses included.", sizeBuckets).WithLabelValues(),
		latency:       f.histogram("http_client_roundtrip_latency", "Round-trip latency in milliseconds of the sidecar's calls to its HTTP app, to the end of the response body.", f.latency, "method", "path", "status"),
		completed:     f.counter("http_client_completed_count", "Number of completed calls from the sidecar to its HTTP app.", "method", "path", "status"),
	}
}

// HTTPTransport wraps the app channel's transport with the
// dapr_http_client_* metrics (service invocation, pub/sub and binding
// deliveries to an HTTP app). A call counts once its response body is
// closed, so the latency includes the body; a transport error counts as
// status 500, as in daprd.
func (m *Metrics) HTTPTransport(next http.RoundTripper) http.RoundTripper {
	if m == nil {
		return next
	}
	return &transport{m: m, next: next}
}

type transport struct {
	m    *Metrics
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	method, path := t.m.method(req.Method), t.m.path(req.URL.Path)
	t.m.httpClient.sentBytes.WithLabelValues(method, path, "").Observe(float64(max(req.ContentLength, 0)))
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.m.httpClientDone(method, path, http.StatusInternalServerError, 0, start)
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, done: func(n int64) {
		t.m.httpClientDone(method, path, resp.StatusCode, n, start)
	}}
	return resp, nil
}

func (m *Metrics) httpClientDone(method, path string, status int, size int64, start time.Time) {
	st := statusText(status)
	m.httpClient.completed.WithLabelValues(method, path, st).Inc()
	m.httpClient.latency.WithLabelValues(method, path, st).Observe(msSince(start))
	m.httpClient.receivedBytes.Observe(float64(size))
}

// countingBody counts the bytes read and reports them once, on Close.
type countingBody struct {
	io.ReadCloser
	n    int64
	once sync.Once
	done func(n int64)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.done(b.n) })
	return err
}
