package channel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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

	"github.com/mecha-dev/mecha/internal/channel"
	"github.com/mecha-dev/mecha/internal/invokemsg"
)

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func newApp(t *testing.T, o channel.Options, ready <-chan struct{}) *channel.App {
	t.Helper()
	a, err := channel.New(o, ready)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestWithoutHealthChecksAlwaysHealthy(t *testing.T) {
	a := newApp(t, channel.Options{Port: 1}, closedChan())
	if !a.Healthy() || a.HealthChecked() {
		t.Fatalf("Healthy() = %v, HealthChecked() = %v; want true, false without health checks", a.Healthy(), a.HealthChecked())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady = %v", err)
	}
}

func TestHealthGate(t *testing.T) {
	ready := make(chan struct{})
	a := newApp(t, channel.Options{Port: 1, HealthCheck: true}, ready)
	if a.Healthy() || !a.HealthChecked() {
		t.Fatal("with health checks the app must start unhealthy")
	}
	short := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		return a.WaitReady(ctx)
	}
	// Healthy but not ready, then ready but not healthy: both wait.
	a.SetHealthy(true)
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady before the app is ready = %v, want DeadlineExceeded", err)
	}
	close(ready)
	a.SetHealthy(false)
	a.SetHealthy(false) // idempotent
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady while unhealthy = %v, want DeadlineExceeded", err)
	}

	// A waiter blocked while unhealthy is released by SetHealthy(true).
	released := make(chan error, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { released <- a.WaitReady(ctx) }()
	go func() { released <- a.WaitHealthy(ctx) }()
	select {
	case err := <-released:
		t.Fatalf("a waiter returned (%v) while the app is unhealthy", err)
	case <-time.After(50 * time.Millisecond): // absence check
	}
	a.SetHealthy(true)
	a.SetHealthy(true) // idempotent: closing twice would panic
	for range 2 {
		if err := <-released; err != nil {
			t.Fatalf("waiter = %v after the app turned healthy", err)
		}
	}
	if !a.Healthy() {
		t.Fatal("Healthy() = false after SetHealthy(true)")
	}
	a.SetHealthy(false)
	if a.Healthy() {
		t.Fatal("Healthy() = true after SetHealthy(false)")
	}
}

func getRequest(method string) *invokemsg.Request {
	return &invokemsg.Request{Message: &commonv1.InvokeRequest{Method: method, HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_GET}}}
}

// TestInvokeFailsFastWhileUnhealthy: Invoke answers daprd's error without
// calling the app, and reaches the app again once it is healthy.
func TestInvokeFailsFastWhileUnhealthy(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "hi")
	}))
	defer srv.Close()
	a := newApp(t, channel.Options{Port: port(t, srv.Listener.Addr().String()), HealthCheck: true}, closedChan())
	_, err := a.Invoke(context.Background(), getRequest("hello"))
	st, _ := status.FromError(err)
	if st.Code() != codes.Internal || st.Message() != "app is not in a healthy state" {
		t.Fatalf("Invoke while unhealthy = %v, want Internal %q", err, "app is not in a healthy state")
	}
	if !errors.Is(err, channel.ErrAppUnhealthy) {
		t.Fatalf("error %v is not ErrAppUnhealthy", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the app got %d requests while unhealthy, want 0", n)
	}
	a.SetHealthy(true)
	resp, err := a.Invoke(context.Background(), getRequest("hello"))
	if err != nil {
		t.Fatalf("Invoke once healthy = %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Status.GetCode() != 200 || string(body) != "hi" || hits.Load() != 1 {
		t.Fatalf("Invoke once healthy = %d %q (hits %d), want 200 \"hi\" (1)", resp.Status.GetCode(), body, hits.Load())
	}
}

func TestHTTPHealthProbe(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	block := make(chan struct{})
	busy := make(chan struct{})
	var paths atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			close(busy)
			<-block
			return
		}
		paths.Store(r.Method + " " + r.URL.Path)
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()
	defer close(block)
	// MaxConcurrency 1, held by a request that does not end: the probe
	// must not wait for the slot.
	a := newApp(t, channel.Options{Port: port(t, srv.Listener.Addr().String()), HealthCheckPath: "ready", MaxConcurrency: 1, HealthCheck: true}, closedChan())
	a.SetHealthy(true)
	go func() {
		if resp, err := a.HTTP.Do(context.Background(), "GET", "/busy", nil, nil); err == nil {
			resp.Body.Close()
		}
	}()
	<-busy

	probe := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return a.HealthProbe(ctx)
	}
	for _, c := range []struct {
		code int
		want string
	}{{200, ""}, {204, ""}, {500, "status code: 500"}, {404, "status code: 404"}, {503, "status code: 503"}} {
		code.Store(int32(c.code))
		err := probe()
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("app answering %d: HealthProbe = %v, want %q", c.code, err, c.want)
		}
	}
	if got := paths.Load(); got != "GET /ready" {
		t.Fatalf("probe sent %v, want GET /ready (path given without its slash)", got)
	}

	// Nobody listening: a network error.
	dead := newApp(t, channel.Options{Port: closedPort(t), HealthCheck: true}, closedChan())
	if err := dead.HealthProbe(context.Background()); err == nil || !strings.Contains(err.Error(), "network error") {
		t.Fatalf("HealthProbe of a closed port = %v, want a network error", err)
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// grpcApp is a gRPC app whose HealthCheck answer the test sets and whose
// OnInvoke blocks until release is closed.
type grpcApp struct {
	runtimev1.UnimplementedAppCallbackServer
	runtimev1.UnimplementedAppCallbackHealthCheckServer
	healthy atomic.Bool
	release chan struct{}
	entered chan struct{}
}

func (g *grpcApp) HealthCheck(context.Context, *emptypb.Empty) (*runtimev1.HealthCheckResponse, error) {
	if g.healthy.Load() {
		return &runtimev1.HealthCheckResponse{}, nil
	}
	return nil, status.Error(codes.Unavailable, "not yet")
}

func (g *grpcApp) OnInvoke(ctx context.Context, _ *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return &commonv1.InvokeResponse{}, nil
}

func serveGRPC(t *testing.T, register func(*grpc.Server)) int {
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

func TestGRPCHealthProbe(t *testing.T) {
	app := &grpcApp{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	defer close(app.release)
	p := serveGRPC(t, func(gs *grpc.Server) {
		runtimev1.RegisterAppCallbackServer(gs, app)
		runtimev1.RegisterAppCallbackHealthCheckServer(gs, app)
	})
	a := newApp(t, channel.Options{Port: p, Protocol: "grpc", MaxConcurrency: 1, HealthCheck: true}, closedChan())
	a.SetHealthy(true)
	// Hold the only concurrency slot.
	go a.Invoke(context.Background(), getRequest("hold"))
	<-app.entered

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.HealthProbe(ctx); status.Code(errors.Unwrap(err)) != codes.Unavailable || !strings.Contains(err.Error(), "health check failed") {
		t.Fatalf("HealthProbe of an unhealthy app = %v, want Unavailable", err)
	}
	app.healthy.Store(true)
	if err := a.HealthProbe(ctx); err != nil {
		t.Fatalf("HealthProbe of a healthy app = %v", err)
	}

	// An app without AppCallbackHealthCheck fails its probes.
	bare := serveGRPC(t, func(gs *grpc.Server) {
		runtimev1.RegisterAppCallbackServer(gs, &runtimev1.UnimplementedAppCallbackServer{})
	})
	b := newApp(t, channel.Options{Port: bare, Protocol: "grpc", HealthCheck: true}, closedChan())
	if err := b.HealthProbe(ctx); status.Code(errors.Unwrap(err)) != codes.Unimplemented {
		t.Fatalf("HealthProbe of an app without the service = %v, want Unimplemented", err)
	}
}
