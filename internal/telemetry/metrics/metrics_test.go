package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/mecha-dev/mecha/internal/telemetry/metrics"
)

// TestNormalizePath: daprd's path labels (increasedCardinality: true), on
// daprd's own examples and Mecha's routes.
func TestNormalizePath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/v1.0/state/statestore/order-17", "/v1.0/state/statestore"},
		{"/v1.0/state/statestore", "/v1.0/state/statestore"},
		{"/v1.0/state/statestore/bulk", "/v1.0/state/statestore"},
		{"/v1.0/state/statestore/a/b/c/d/e", "/v1.0/state/statestore"},
		{"/v1.0-alpha1/state/store/key", "/v1.0-alpha1/state/store"},
		{"/v1.0/secrets/vault/db-password", "/v1.0/secrets/vault"},
		{"/v1.0/secrets/vault/bulk", "/v1.0/secrets/vault"},
		{"//v1.0//state/statestore/k", "/v1.0/state/statestore"},
		{"v1.0/state/statestore/k", "/v1.0/state/statestore"},
		{"/v1.0/actors/DemoActor/1/method/method1", "/v1.0/actors/DemoActor/{id}/method"},
		{"/v1.0/actors/DemoActor/1/timer/name", "/v1.0/actors/DemoActor/{id}/timer"},
		{"/v1.0/actors/DemoActor/1", "/v1.0/actors/DemoActor/1"},
		{"/actors/DemoActor/1/method/method1", "actors/DemoActor/{id}/method/method1"},
		{"/v1.0-alpha1/workflows/dapr/instance-9", "/v1.0-alpha1/workflows/dapr/{instanceId}"},
		{"/v1.0-alpha1/workflows/dapr/MyWorkflow/start", "/v1.0-alpha1/workflows/dapr/MyWorkflow/start"},
		{"/v1.0-alpha1/workflows/dapr/instance-9/terminate", "/v1.0-alpha1/workflows/dapr/{instanceId}/terminate"},
		{"/v1.0-alpha1/workflows/dapr/instance-9/raiseEvent/ev", "/v1.0-alpha1/workflows/dapr/{instanceId}/raiseEvent/{eventName}"},
		{"/v1.0/invoke/shop/method/echo", "/v1.0/invoke/shop/method/echo"},
		{"/v1.0/publish/pubsub/orders", "/v1.0/publish/pubsub/orders"},
		{"/v1.0/healthz", "/v1.0/healthz"},
		{"/healthz", "/healthz"},
		{"/", "/"},
		{"", ""},
	}
	for _, c := range cases {
		if got := metrics.NormalizePath(c.in); got != c.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// counters gathers name from m's registry as label-value string → value.
func counters(t *testing.T, m *metrics.Metrics, name string, label string) map[string]float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			out[labelValue(s, label)] += s.GetCounter().GetValue()
		}
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return "<none>"
}

// TestPathLabelsBounded: made-up paths cannot grow the registry without
// bound: past MaxPaths distinct values new paths share the "" label, while
// paths already seen keep theirs; invalid UTF-8 and huge paths are made
// valid and short.
func TestPathLabelsBounded(t *testing.T) {
	m := metrics.New(metrics.Options{AppID: "a", MaxPaths: 3})
	h := m.HTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	get := func(path string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = path
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e", "/a", "/v1.0/state/s/k1", "/v1.0/state/s/k2"} {
		get(p)
	}
	got := counters(t, m, "dapr_http_server_request_count", "path")
	want := map[string]float64{"/a": 2, "/b": 1, "/c": 1, "": 4}
	if len(got) != len(want) {
		t.Fatalf("path labels = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("path labels = %v, want %v", got, want)
		}
	}

	m = metrics.New(metrics.Options{AppID: "a"})
	h = m.HTTPServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("GET", "/", nil)
	r.URL.Path = "/bad\xff/" + strings.Repeat("x", 5000)
	h.ServeHTTP(httptest.NewRecorder(), r)
	for p := range counters(t, m, "dapr_http_server_request_count", "path") {
		if len(p) > 256 || !strings.HasPrefix(p, "/bad\uFFFD/xxx") {
			t.Fatalf("path label %q (len %d): want valid UTF-8 of at most 256 bytes", p, len(p))
		}
	}
}

// TestLowCardinality: with increasedCardinality false the path label is
// "" except daprd's static paths, there is no response_count, and with
// excludeVerbs the method is "".
func TestLowCardinality(t *testing.T) {
	m := metrics.New(metrics.Options{AppID: "a", LowCardinality: true, ExcludeVerbs: true})
	h := m.HTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	for _, p := range []string{"/v1.0/state/s/k", "/v1.0/invoke/x/method/y", "/healthz"} {
		r := httptest.NewRequest("POST", p, nil)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	paths := counters(t, m, "dapr_http_server_request_count", "path")
	if len(paths) != 2 || paths[""] != 2 || paths["/healthz"] != 1 {
		t.Fatalf("path labels = %v, want {\"\": 2, /healthz: 1}", paths)
	}
	if methods := counters(t, m, "dapr_http_server_request_count", "method"); methods[""] != 3 {
		t.Fatalf("method labels = %v, want all \"\"", methods)
	}
	if rc := counters(t, m, "dapr_http_server_response_count", "path"); len(rc) != 0 {
		t.Fatalf("response_count kept in low-cardinality mode: %v", rc)
	}
}

// TestNilMetrics: every hook of a nil *Metrics is a no-op that leaves the
// wrapped value as it is.
func TestNilMetrics(t *testing.T) {
	var m *metrics.Metrics
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := m.HTTPServer(h); got == nil {
		t.Fatal("HTTPServer(nil metrics) = nil")
	}
	if rt := m.HTTPTransport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Fatal("HTTPTransport wrapped with nil metrics")
	}
	m.ComponentInitialized("state.x")
	m.ComponentInitFailed("state.x", metrics.ReasonInit, "x")
	m.PubsubPublished("p", "t", true, 0)
	m.PubsubDelivered("p", "t", metrics.DeliverySuccess, 0)
	_ = m.ServerOption(metrics.APIServer)
	_ = m.ClientDialOption()
}
