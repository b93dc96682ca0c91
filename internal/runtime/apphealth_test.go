package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// flakyApp is an HTTP app whose /healthz answers 200 or 500 as the test
// says; it counts the other requests it serves.
type flakyApp struct {
	healthy atomic.Bool
	probes  atomic.Int32
	hits    atomic.Int32
	ticks   atomic.Int32 // POSTs of the "tick" input binding
}

func (a *flakyApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz":
		a.probes.Add(1)
		if !a.healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	case r.URL.Path == "/tick" && r.Method == http.MethodOptions:
	case r.URL.Path == "/tick":
		a.ticks.Add(1)
	default:
		a.hits.Add(1)
		io.WriteString(w, "hi from "+r.URL.Path)
	}
}

// healthChecked turns health checks on with short intervals.
func healthChecked(id string, port int, protocol string) func(*runtime.Options) {
	return func(o *runtime.Options) {
		mechatest.App(id, port, protocol)(o)
		o.AppHealthCheck = true
		o.AppHealthProbeInterval = 100 * time.Millisecond
		o.AppHealthProbeTimeout = 50 * time.Millisecond
		o.AppHealthThreshold = 2
	}
}

// metadataHealth reads what the metadata API says about app health.
type metadataHealth struct {
	Extended                map[string]string `json:"extended"`
	AppConnectionProperties struct {
		Health *struct {
			HealthCheckPath     string `json:"healthCheckPath"`
			HealthProbeInterval string `json:"healthProbeInterval"`
			HealthProbeTimeout  string `json:"healthProbeTimeout"`
			HealthThreshold     int    `json:"healthThreshold"`
		} `json:"health"`
	} `json:"appConnectionProperties"`
}

func readHealth(t *testing.T, s *mechatest.Sidecar) metadataHealth {
	t.Helper()
	var md metadataHealth
	s.Do(t, "GET", "/v1.0/metadata", nil).JSON(t, &md)
	return md
}

// waitHealth waits until the sidecar's metadata reports want
// ("healthy"/"unhealthy").
func waitHealth(t *testing.T, s *mechatest.Sidecar, want string) {
	t.Helper()
	mechatest.Eventually(t, 10*time.Second, func() error {
		if got := readHealth(t, s).Extended[runtime.AppHealthKey]; got != want {
			return fmt.Errorf("%s = %q, want %q", runtime.AppHealthKey, got, want)
		}
		return nil
	})
}

// TestAppHealthInvoke: while the app fails its health checks, calls to it
// fail at once with daprd's error, from another sidecar and from its own,
// over HTTP and gRPC; once it passes again, calls reach it. The sidecar's
// own /v1.0/healthz does not depend on the app's health, as in daprd.
func TestAppHealthInvoke(t *testing.T) {
	app := &flakyApp{}
	app.healthy.Store(true)
	b := mechatest.Start(t, healthChecked("hc-b", mechatest.HTTPApp(t, app), ""))
	a := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "hc-a" })

	mechatest.Eventually(t, 10*time.Second, func() error {
		if r := a.Do(t, "GET", "/v1.0/invoke/hc-b/method/hello", nil); r.Status != 200 || string(r.Body) != "hi from /hello" {
			return fmt.Errorf("invoke: %d %s", r.Status, r.Body)
		}
		return nil
	})
	md := readHealth(t, b)
	h := md.AppConnectionProperties.Health
	if h == nil || h.HealthCheckPath != "/healthz" || h.HealthProbeInterval != "100ms" || h.HealthProbeTimeout != "50ms" || h.HealthThreshold != 2 {
		t.Fatalf("metadata health properties = %+v, want /healthz, 100ms, 50ms, 2", h)
	}
	if md.Extended[runtime.AppHealthKey] != "healthy" {
		t.Fatalf("extended %s = %q, want healthy", runtime.AppHealthKey, md.Extended[runtime.AppHealthKey])
	}

	app.healthy.Store(false)
	waitHealth(t, b, "unhealthy")
	before := app.hits.Load()
	const msg = "app is not in a healthy state"
	for _, c := range []struct {
		name string
		from *mechatest.Sidecar
	}{{"from another sidecar", a}, {"from its own sidecar", b}} {
		start := time.Now()
		r := c.from.Do(t, "POST", "/v1.0/invoke/hc-b/method/hello", "body")
		if r.Status != 500 || r.ErrorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(r.Body), msg) || !strings.Contains(string(r.Body), "failed to invoke, id: hc-b") {
			t.Fatalf("%s while unhealthy: %d %s; want 500 ERR_DIRECT_INVOKE %q", c.name, r.Status, r.Body, msg)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: the failure took %v, want it at once", c.name, d)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.Dapr.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "hc-b", Message: &commonv1.InvokeRequest{
		Method: "hello", HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_GET},
	}})
	if st, _ := status.FromError(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), msg) {
		t.Fatalf("gRPC InvokeService while unhealthy = %v, want Internal %q", err, msg)
	}
	if n := app.hits.Load() - before; n != 0 {
		t.Fatalf("the unhealthy app got %d calls, want 0", n)
	}
	if r := b.Do(t, "GET", "/v1.0/healthz", nil); r.Status != http.StatusNoContent {
		t.Fatalf("/v1.0/healthz while the app is unhealthy = %d %s, want 204 (as daprd)", r.Status, r.Body)
	}

	app.healthy.Store(true)
	mechatest.Eventually(t, 10*time.Second, func() error {
		if r := a.Do(t, "GET", "/v1.0/invoke/hc-b/method/again", nil); r.Status != 200 || string(r.Body) != "hi from /again" {
			return fmt.Errorf("invoke after recovery: %d %s", r.Status, r.Body)
		}
		return nil
	})
	if got := readHealth(t, b).Extended[runtime.AppHealthKey]; got != "healthy" {
		t.Fatalf("after recovery %s = %q", runtime.AppHealthKey, got)
	}
}

// TestAppHealthCustomPath: --app-health-check-path is what is probed.
func TestAppHealthCustomPath(t *testing.T) {
	var probed atomic.Value
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			probed.Store(r.Method + " " + r.URL.Path)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	s := mechatest.Start(t, func(o *runtime.Options) {
		healthChecked("hc-path", port, "")(o)
		o.AppHealthCheckPath = "/ready"
	})
	waitHealth(t, s, "healthy")
	if got := probed.Load(); got != "GET /ready" {
		t.Fatalf("probe = %v, want GET /ready", got)
	}
	if h := readHealth(t, s).AppConnectionProperties.Health; h == nil || h.HealthCheckPath != "/ready" {
		t.Fatalf("metadata health = %+v, want path /ready", h)
	}
}

// TestWithoutAppHealthChecks: no probes, no health properties, calls flow.
func TestWithoutAppHealthChecks(t *testing.T) {
	app := &flakyApp{} // /healthz would answer 500
	s := mechatest.Start(t, mechatest.App("nohc", mechatest.HTTPApp(t, app), ""))
	mechatest.Eventually(t, 10*time.Second, func() error {
		if r := s.Do(t, "GET", "/v1.0/invoke/nohc/method/x", nil); r.Status != 200 {
			return fmt.Errorf("invoke: %d %s", r.Status, r.Body)
		}
		return nil
	})
	md := readHealth(t, s)
	if md.AppConnectionProperties.Health != nil {
		t.Fatalf("health properties %+v without health checks", md.AppConnectionProperties.Health)
	}
	if v, ok := md.Extended[runtime.AppHealthKey]; ok {
		t.Fatalf("extended %s = %q without health checks", runtime.AppHealthKey, v)
	}
	if n := app.probes.Load(); n != 0 {
		t.Fatalf("the app was probed %d times without health checks", n)
	}
}

// grpcHealthApp is a gRPC app with AppCallback and AppCallbackHealthCheck.
type grpcHealthApp struct {
	runtimev1.UnimplementedAppCallbackServer
	runtimev1.UnimplementedAppCallbackHealthCheckServer
	healthy atomic.Bool
	calls   atomic.Int32
}

func (g *grpcHealthApp) HealthCheck(context.Context, *emptypb.Empty) (*runtimev1.HealthCheckResponse, error) {
	if !g.healthy.Load() {
		return nil, status.Error(codes.Unavailable, "draining")
	}
	return &runtimev1.HealthCheckResponse{}, nil
}

func (g *grpcHealthApp) OnInvoke(_ context.Context, in *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	g.calls.Add(1)
	return &commonv1.InvokeResponse{ContentType: "text/plain", Data: nil}, nil
}

func serveGRPCApp(t *testing.T, register func(*grpc.Server)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(l)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

// TestAppHealthGRPC: a gRPC app is probed with AppCallbackHealthCheck;
// one that does not implement it never becomes healthy (as in daprd).
func TestAppHealthGRPC(t *testing.T) {
	app := &grpcHealthApp{}
	app.healthy.Store(true)
	port := serveGRPCApp(t, func(gs *grpc.Server) {
		runtimev1.RegisterAppCallbackServer(gs, app)
		runtimev1.RegisterAppCallbackHealthCheckServer(gs, app)
	})
	b := mechatest.Start(t, healthChecked("hc-grpc", port, "grpc"))
	a := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "hc-grpc-caller" })
	waitHealth(t, b, "healthy")
	call := func() *mechatest.Response { return a.Do(t, "POST", "/v1.0/invoke/hc-grpc/method/m", "x") }
	if r := call(); r.Status != 200 {
		t.Fatalf("invoke a healthy gRPC app: %d %s", r.Status, r.Body)
	}

	app.healthy.Store(false)
	waitHealth(t, b, "unhealthy")
	before := app.calls.Load()
	if r := call(); r.Status != 500 || r.ErrorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(r.Body), "app is not in a healthy state") {
		t.Fatalf("invoke an unhealthy gRPC app: %d %s", r.Status, r.Body)
	}
	if n := app.calls.Load() - before; n != 0 {
		t.Fatalf("the unhealthy gRPC app got %d calls", n)
	}
	app.healthy.Store(true)
	waitHealth(t, b, "healthy")
	if r := call(); r.Status != 200 {
		t.Fatalf("invoke after recovery: %d %s", r.Status, r.Body)
	}

	// An app that does not implement AppCallbackHealthCheck never passes.
	bare := serveGRPCApp(t, func(gs *grpc.Server) { runtimev1.RegisterAppCallbackServer(gs, &grpcHealthApp{}) })
	s := mechatest.Start(t, healthChecked("hc-grpc-bare", bare, "grpc"))
	mechatest.Eventually(t, 10*time.Second, func() error {
		// Ready (the port is open) but never healthy.
		return s.RT.Ready()
	})
	time.Sleep(300 * time.Millisecond) // absence check: three probe intervals
	if got := readHealth(t, s).Extended[runtime.AppHealthKey]; got != "unhealthy" {
		t.Fatalf("an app without HealthCheck is %q, want unhealthy", got)
	}
}

// TestAppHealthPausesInputBindings: a cron input binding delivers nothing
// while the app is unhealthy and resumes once it is healthy again.
func TestAppHealthPausesInputBindings(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for cron ticks")
	}
	app := &flakyApp{}
	app.healthy.Store(true)
	s := mechatest.Start(t, healthChecked("hc-cron", mechatest.HTTPApp(t, app), ""),
		mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s"))
	mechatest.Eventually(t, 10*time.Second, func() error {
		if n := app.ticks.Load(); n < 1 {
			return fmt.Errorf("%d ticks delivered", n)
		}
		return nil
	})

	app.healthy.Store(false)
	waitHealth(t, s, "unhealthy")
	// A delivery that passed the gate just before may still land.
	time.Sleep(200 * time.Millisecond)
	paused := app.ticks.Load()
	time.Sleep(2500 * time.Millisecond) // absence check: two cron periods and more
	if n := app.ticks.Load(); n != paused {
		t.Fatalf("%d ticks delivered while the app was unhealthy, want 0", n-paused)
	}

	app.healthy.Store(true)
	mechatest.Eventually(t, 10*time.Second, func() error {
		if n := app.ticks.Load(); n < paused+2 {
			return fmt.Errorf("%d ticks since recovery, want 2", n-paused)
		}
		return nil
	})
}

// TestAppHealthOptions: defaults, daprd's fallbacks and the timeout rule.
func TestAppHealthOptions(t *testing.T) {
	o := runtime.Options{AppID: "x", AppHealthProbeTimeout: 6 * time.Second}
	err := o.Validate()
	if err == nil || !strings.Contains(err.Error(), "--app-health-probe-timeout (6s) must not be longer than --app-health-probe-interval (5s)") {
		t.Fatalf("Validate = %v, want the timeout rule", err)
	}
	o = runtime.Options{AppID: "x", AppHealthProbeInterval: time.Second, AppHealthProbeTimeout: time.Second}
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate with timeout = interval: %v", err)
	}

	// Values below 1 take the defaults; the metadata API shows them.
	app := &flakyApp{}
	app.healthy.Store(true)
	s := mechatest.Start(t, func(o *runtime.Options) {
		mechatest.App("hc-defaults", mechatest.HTTPApp(t, app), "")(o)
		o.AppHealthCheck, o.AppHealthThreshold, o.AppHealthProbeInterval = true, -1, 0
	})
	h := readHealth(t, s).AppConnectionProperties.Health
	b, _ := json.Marshal(h)
	if h == nil || h.HealthCheckPath != "/healthz" || h.HealthProbeInterval != "5s" || h.HealthProbeTimeout != "500ms" || h.HealthThreshold != 3 {
		t.Fatalf("metadata health = %s, want daprd's defaults", b)
	}
	// The first probe comes at once, not after the interval.
	waitHealth(t, s, "healthy")
}
