package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/syncbuf"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics/metricstest"
)

// metricConfig turns the endpoint on (withMetrics) with a Configuration
// whose spec.metric is spec (YAML indented under "metric:").
func metricConfig(t *testing.T, spec string) func(*runtime.Options) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  metric:\n" + spec
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(o *runtime.Options) {
		withMetrics(o)
		o.ConfigFiles = []string{f}
	}
}

// perPath is spec.metric.http.increasedCardinality: true: path labels.
const perPath = "    http:\n      increasedCardinality: true\n"

// withMetrics turns the endpoint on, on a free loopback port.
func withMetrics(o *runtime.Options) {
	o.Metrics = runtime.MetricsOptions{Enabled: true, ListenAddresses: []string{"127.0.0.1"}}
}

// families is one scrape, by metric name.
type families = metricstest.Families

// expect is one sample a test wants (metricstest.Expect, short to write).
type expect struct {
	name   string
	labels map[string]string
	want   float64
}

func expects(cases []expect) []metricstest.Expect {
	out := make([]metricstest.Expect, len(cases))
	for i, c := range cases {
		out[i] = metricstest.Expect{Name: c.name, Labels: c.labels, Want: c.want}
	}
	return out
}

// scrape GETs and parses the sidecar's /metrics.
func scrape(t *testing.T, s *mechatest.Sidecar) families {
	t.Helper()
	return metricstest.Scrape(t, s.RT.MetricsAddr())
}

// eventually scrapes s until every case holds: a gRPC server records a
// call once it has sent the status, which the client may see first.
func eventually(t *testing.T, s *mechatest.Sidecar, cases []expect) families {
	t.Helper()
	return metricstest.Wait(t, s.RT.MetricsAddr(), 5*time.Second, expects(cases))
}

// labels is a label set from name, value pairs.
var labels = metricstest.Labels

// shopApp is the app behind the "shop" sidecar: it subscribes to
// pubsub/orders and echoes invocations.
type shopApp struct {
	mu     sync.Mutex
	orders int
}

func (a *shopApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/dapr/subscribe":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"pubsubname":"pubsub","topic":"orders","route":"/orders"}]`)
	case "/orders":
		_, _ = io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		a.orders++
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"SUCCESS"}`)
	case "/echo":
		_, _ = io.Copy(w, r.Body)
	default:
		http.NotFound(w, r)
	}
}

// TestSidecarMetrics drives a sidecar's HTTP and gRPC APIs, a service
// invocation from a second sidecar, and a publish delivered to the app,
// then scrapes both endpoints and checks the Dapr-named series and their
// exact counts, and that no state key reached a label.
func TestSidecarMetrics(t *testing.T) {
	app := &shopApp{}
	withPaths := metricConfig(t, perPath)
	shop := mechatest.Start(t, func(o *runtime.Options) {
		mechatest.App("shop", mechatest.HTTPApp(t, app), "")(o)
		withPaths(o)
	},
		mechatest.InMemory,
		mechatest.Component("pubsub", "pubsub.in-memory"),
		mechatest.Component("broken", "state.no-such-store"),
	)
	client := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "client"; withPaths(o) })
	mechatest.Eventually(t, 10*time.Second, func() error {
		if r := shop.Do(t, "GET", "/v1.0/healthz", nil); r.Status != http.StatusNoContent {
			return fmt.Errorf("healthz %d", r.Status)
		}
		return nil
	})

	// HTTP state API: a save, a get that finds the key, one that does not.
	if r := shop.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"secret-key-1","value":"v1"}]`); r.Status != http.StatusNoContent {
		t.Fatalf("save: %d %s", r.Status, r.Body)
	}
	if r := shop.Do(t, "GET", "/v1.0/state/statestore/secret-key-1", nil); r.Status != http.StatusOK {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}
	if r := shop.Do(t, "GET", "/v1.0/state/statestore/secret-key-2", nil); r.Status != http.StatusNoContent {
		t.Fatalf("get missing: %d %s", r.Status, r.Body)
	}
	// gRPC state API.
	ctx := context.Background()
	if _, err := shop.Dapr.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "grpc-key-1", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.Dapr.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "grpc-key-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.Dapr.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "nostore", Key: "grpc-key-2"}); err == nil {
		t.Fatal("GetState on an unknown store succeeded")
	}
	// Service invocation client → shop.
	if r := client.Do(t, "POST", "/v1.0/invoke/shop/method/echo", "hello"); r.Status != http.StatusOK || string(r.Body) != "hello" {
		t.Fatalf("invoke: %d %q", r.Status, r.Body)
	}
	// A publish, delivered to the app's subscription.
	mechatest.Eventually(t, 10*time.Second, func() error {
		if n := len(shop.Do(t, "GET", "/v1.0/metadata", nil).Body); n == 0 {
			return fmt.Errorf("no metadata")
		}
		var md struct {
			Subscriptions []any `json:"subscriptions"`
		}
		_ = json.Unmarshal(shop.Do(t, "GET", "/v1.0/metadata", nil).Body, &md)
		if len(md.Subscriptions) == 0 {
			return fmt.Errorf("the app's subscription is not active yet")
		}
		return nil
	})
	if r := shop.Do(t, "POST", "/v1.0/publish/pubsub/orders", `{"id":1}`, "Content-Type", "application/json"); r.Status != http.StatusNoContent {
		t.Fatalf("publish: %d %s", r.Status, r.Body)
	}
	ingress := labels("app_id", "shop", "component", "pubsub", "namespace", "default", "process_status", "success", "status", "success", "topic", "orders")
	var f families
	mechatest.Eventually(t, 10*time.Second, func() error {
		f = scrape(t, shop)
		if _, ok := f.Value("dapr_component_pubsub_ingress_count", ingress); !ok {
			return fmt.Errorf("no ingress yet: %s", f.Series("dapr_component_pubsub_ingress_count"))
		}
		return nil
	})

	state := func(method, status string) map[string]string {
		return labels("app_id", "shop", "method", method, "path", "/v1.0/state/statestore", "status", status)
	}
	grpcServer := func(method, status string) map[string]string {
		return labels("app_id", "shop", "grpc_server_method", method, "grpc_server_status", status)
	}
	f = eventually(t, shop, []expect{
		{"dapr_http_server_request_count", state("POST", "204"), 1},
		{"dapr_http_server_request_count", state("GET", "200"), 1},
		{"dapr_http_server_request_count", state("GET", "204"), 1},
		{"dapr_http_server_latency", state("POST", "204"), 1},
		{"dapr_http_server_latency", state("GET", "204"), 1},
		{"dapr_http_server_response_count", state("GET", "200"), 1},
		{"dapr_http_server_request_count", labels("app_id", "shop", "method", "POST", "path", "/v1.0/publish/pubsub/orders", "status", "204"), 1},
		{"dapr_grpc_io_server_completed_rpcs", grpcServer("/dapr.proto.runtime.v1.Dapr/SaveState", "OK"), 1},
		{"dapr_grpc_io_server_completed_rpcs", grpcServer("/dapr.proto.runtime.v1.Dapr/GetState", "OK"), 1},
		{"dapr_grpc_io_server_completed_rpcs", grpcServer("/dapr.proto.runtime.v1.Dapr/GetState", "InvalidArgument"), 1},
		{"dapr_grpc_io_server_server_latency", grpcServer("/dapr.proto.runtime.v1.Dapr/SaveState", "OK"), 1},
		{"dapr_grpc_io_server_received_bytes_per_rpc", labels("app_id", "shop", "grpc_server_method", "/dapr.proto.runtime.v1.Dapr/SaveState"), 1},
		// The callee side of the invocation: the internal server, the
		// invocation counters and the call to the app.
		{"dapr_grpc_io_server_completed_rpcs", grpcServer("/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream", "OK"), 1},
		{"dapr_runtime_service_invocation_req_recv_total", labels("app_id", "shop", "src_app_id", "client"), 1},
		{"dapr_runtime_service_invocation_res_sent_total", labels("app_id", "shop", "dst_app_id", "client", "status", "200"), 1},
		{"dapr_http_client_completed_count", labels("app_id", "shop", "method", "POST", "path", "/echo", "status", "200"), 1},
		{"dapr_http_client_roundtrip_latency", labels("app_id", "shop", "method", "POST", "path", "/echo", "status", "200"), 1},
		{"dapr_http_client_completed_count", labels("app_id", "shop", "method", "POST", "path", "/orders", "status", "200"), 1},
		// Pub/sub.
		{"dapr_component_pubsub_egress_count", labels("app_id", "shop", "component", "pubsub", "namespace", "default", "success", "true", "topic", "orders"), 1},
		{"dapr_component_pubsub_egress_latencies", labels("app_id", "shop", "component", "pubsub", "namespace", "default", "success", "true", "topic", "orders"), 1},
		{"dapr_component_pubsub_ingress_count", ingress, 1},
		{"dapr_component_pubsub_ingress_latencies", ingress, 1},
		// Components: two loaded, one that does not exist.
		{"dapr_runtime_component_loaded", labels("app_id", "shop"), 2},
		{"dapr_runtime_component_init_total", labels("app_id", "shop", "component", "state.in-memory"), 1},
		{"dapr_runtime_component_init_total", labels("app_id", "shop", "component", "pubsub.in-memory"), 1},
		{"dapr_runtime_component_init_fail_total", labels("app_id", "shop", "component", "state.no-such-store", "reason", "creation", "componentName", "broken"), 1},
	})
	if _, ok := f["go_goroutines"]; !ok {
		t.Error("no go_goroutines: the Go collector is missing")
	}
	if _, ok := f["dapr_http_server_request_bytes"]; !ok {
		t.Error("no dapr_http_server_request_bytes")
	}

	c := eventually(t, client, []expect{
		{"dapr_http_server_request_count", labels("app_id", "client", "method", "POST", "path", "/v1.0/invoke/shop/method/echo", "status", "200"), 1},
		{"dapr_runtime_service_invocation_req_sent_total", labels("app_id", "client", "dst_app_id", "shop", "type", "unary"), 1},
		{"dapr_runtime_service_invocation_res_recv_total", labels("app_id", "client", "src_app_id", "shop", "status", "200", "type", "unary"), 1},
		{"dapr_runtime_service_invocation_res_recv_latency_ms", labels("app_id", "client", "src_app_id", "shop", "status", "200"), 1},
		{"dapr_runtime_component_loaded", labels("app_id", "client"), 0},
	})

	// No state key (HTTP or gRPC) may reach a label value.
	for _, fs := range []families{f, c} {
		for name, fam := range fs {
			for _, m := range fam.GetMetric() {
				for _, l := range m.GetLabel() {
					if strings.Contains(l.GetValue(), "secret-key") || strings.Contains(l.GetValue(), "grpc-key") {
						t.Errorf("%s has label %s=%q: a state key", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
}

// TestMetricsPortInUse: a metrics port another process holds does not stop
// the sidecar; it serves its APIs and logs a warning that names the fix.
func TestMetricsPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	var logs syncbuf.Buffer
	s := mechatest.Start(t, func(o *runtime.Options) {
		withMetrics(o)
		o.Metrics.Port = port
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	}, mechatest.InMemory)
	if addr := s.RT.MetricsAddr(); addr != "" {
		t.Fatalf("MetricsAddr = %q on a port in use", addr)
	}
	if r := s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"k","value":1}]`); r.Status != http.StatusNoContent {
		t.Fatalf("the sidecar does not serve: %d %s", r.Status, r.Body)
	}
	var warned bool
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["level"] == "WARN" && strings.Contains(fmt.Sprint(m["msg"]), "--metrics-port") &&
			strings.Contains(fmt.Sprint(m["error"]), "address already in use") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning about the metrics port; logs:\n%s", logs.String())
	}
}

// TestMetricsOff: the zero Options serve no endpoint.
func TestMetricsOff(t *testing.T) {
	s := mechatest.Start(t, nil, mechatest.InMemory)
	if addr := s.RT.MetricsAddr(); addr != "" {
		t.Fatalf("MetricsAddr = %q with metrics off", addr)
	}
}

// TestConfigurationMetricSpec: a Configuration's spec.metric turns metrics
// off whatever the options say; without spec.metric.http the path label is
// low-cardinality (Mecha's default: "" and no response count), and custom
// buckets apply.
func TestConfigurationMetricSpec(t *testing.T) {
	off := mechatest.Start(t, metricConfig(t, "    enabled: false\n"), mechatest.InMemory)
	if addr := off.RT.MetricsAddr(); addr != "" {
		t.Fatalf("metrics served at %s with spec.metric.enabled: false", addr)
	}

	// No spec.metric.http: low cardinality, Mecha's default.
	low := mechatest.Start(t, metricConfig(t, "    latencyDistributionBuckets: [7, 70]\n"), mechatest.InMemory)
	low.Do(t, "GET", "/v1.0/state/statestore/k", nil)
	f := scrape(t, low)
	f.Check(t, expects([]expect{
		{"dapr_http_server_request_count", labels("app_id", "myapp", "method", "GET", "path", "", "status", "204"), 1},
	}))
	if _, ok := f["dapr_http_server_response_count"]; ok {
		t.Error("dapr_http_server_response_count kept without increasedCardinality: true")
	}
	var bounds []float64
	for _, m := range f["dapr_http_server_latency"].GetMetric() {
		for _, b := range m.GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
	}
	if len(bounds) != 3 || bounds[0] != 7 || bounds[1] != 70 || !math.IsInf(bounds[2], 1) {
		t.Errorf("latency buckets %v, want [7 70 +Inf]", bounds)
	}
}

// echoCallback is a gRPC app that answers OnInvoke with the request data.
type echoCallback struct {
	runtimev1.UnimplementedAppCallbackServer
}

func (echoCallback) OnInvoke(_ context.Context, in *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	return &commonv1.InvokeResponse{Data: in.GetData(), ContentType: in.GetContentType()}, nil
}

// TestGRPCAppClientMetrics: calls to a gRPC app count in
// dapr_grpc_io_client_* by method and status.
func TestGRPCAppClientMetrics(t *testing.T) {
	s := mechatest.Start(t, func(o *runtime.Options) {
		mechatest.App("grpcapp", mechatest.GRPCApp(t, echoCallback{}), "grpc")(o)
		withMetrics(o)
	})
	mechatest.Eventually(t, 10*time.Second, func() error { return s.RT.Ready() })
	for range 2 {
		if r := s.Do(t, "POST", "/v1.0/invoke/grpcapp/method/echo", "hi"); r.Status != http.StatusOK || string(r.Body) != "hi" {
			t.Fatalf("invoke: %d %q", r.Status, r.Body)
		}
	}
	method := labels("app_id", "grpcapp", "grpc_client_method", "/dapr.proto.runtime.v1.AppCallback/OnInvoke", "grpc_client_status", "OK")
	eventually(t, s, []expect{
		{"dapr_grpc_io_client_completed_rpcs", method, 2},
		{"dapr_grpc_io_client_roundtrip_latency", method, 2},
		{"dapr_grpc_io_client_sent_bytes_per_rpc", labels("app_id", "grpcapp", "grpc_client_method", "/dapr.proto.runtime.v1.AppCallback/OnInvoke"), 2},
	})
}

// TestProxiedGRPCMetrics: a gRPC call proxied by dapr-app-id counts on the
// caller's API server (method and status) and as a streaming invocation
// sent to the target app, and on the target's internal server.
func TestProxiedGRPCMetrics(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(l) }()
	t.Cleanup(func() { gs.Stop(); <-done })

	target := mechatest.Start(t, func(o *runtime.Options) {
		mechatest.App("greeter", l.Addr().(*net.TCPAddr).Port, "grpc")(o)
		withMetrics(o)
	})
	caller := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "caller"; withMetrics(o) })
	mechatest.Eventually(t, 10*time.Second, func() error { return target.RT.Ready() })

	ctx := metadata.AppendToOutgoingContext(context.Background(), "dapr-app-id", "greeter")
	for range 3 {
		res, err := healthpb.NewHealthClient(caller.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("proxied Check = %v, %v", res, err)
		}
	}
	const method = "/grpc.health.v1.Health/Check"
	eventually(t, caller, []expect{
		{"dapr_grpc_io_server_completed_rpcs", labels("app_id", "caller", "grpc_server_method", method, "grpc_server_status", "OK"), 3},
		{"dapr_runtime_service_invocation_req_sent_total", labels("app_id", "caller", "dst_app_id", "greeter", "type", "streaming"), 3},
		{"dapr_runtime_service_invocation_res_recv_total", labels("app_id", "caller", "src_app_id", "greeter", "status", "0", "type", "streaming"), 3},
	})
	eventually(t, target, []expect{
		{"dapr_grpc_io_server_completed_rpcs", labels("app_id", "greeter", "grpc_server_method", method, "grpc_server_status", "OK"), 3},
	})
}
