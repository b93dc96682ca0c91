package runtime

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/channel"
)

// TestFirstProbeMarksReady: with health checks, a passed probe makes the
// app ready even when the port waiter has not seen the port open (here it
// never will: it watches a closed port), and both goroutines stop with
// their context.
func TestFirstProbeMarksReady(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	r := &Runtime{
		opts: Options{
			AppID: "x", AppPort: closedPort(t), AppChannelAddress: "127.0.0.1",
			AppHealthCheck: true, AppHealthProbeInterval: time.Hour, AppHealthProbeTimeout: time.Second, AppHealthThreshold: 1,
		},
		log:      slog.New(slog.DiscardHandler),
		health:   newHealth(),
		appReady: make(chan struct{}),
		meta:     metadata.New("x", "v", metadata.AppConnection{}),
	}
	r.health.set(func(h *health) { h.outbound = true })
	app, err := channel.New(channel.Options{Port: srv.Listener.Addr().(*net.TCPAddr).Port, HealthCheck: true}, r.appReady)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	r.app = app
	ctx, cancel := context.WithCancel(context.Background())
	r.watchApp(ctx)
	select {
	case <-r.appReady:
	case <-time.After(10 * time.Second):
		t.Fatal("the app passed its probe but is not ready")
	}
	if err := r.health.Ready(); err != nil || !app.Healthy() {
		t.Fatalf("Ready() = %v, Healthy() = %v; want nil, true", err, app.Healthy())
	}
	if got := r.meta.Snapshot().Extended[AppHealthKey]; got != "healthy" {
		t.Fatalf("%s = %q, want healthy", AppHealthKey, got)
	}
	cancel()
	done := make(chan struct{})
	go func() {
		r.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the prober or the port waiter did not stop with its context")
	}
}

func TestAppHealthDefaults(t *testing.T) {
	cases := []struct {
		name string
		in   Options
		want Options
	}{
		{"empty", Options{}, Options{AppHealthCheckPath: "/healthz", AppHealthProbeInterval: 5 * time.Second, AppHealthProbeTimeout: 500 * time.Millisecond, AppHealthThreshold: 3}},
		{"below 1", Options{AppHealthProbeInterval: -time.Second, AppHealthProbeTimeout: -1, AppHealthThreshold: -4},
			Options{AppHealthCheckPath: "/healthz", AppHealthProbeInterval: 5 * time.Second, AppHealthProbeTimeout: 500 * time.Millisecond, AppHealthThreshold: 3}},
		{"set", Options{AppHealthCheckPath: "ready", AppHealthProbeInterval: time.Second, AppHealthProbeTimeout: 20 * time.Millisecond, AppHealthThreshold: 1},
			Options{AppHealthCheckPath: "/ready", AppHealthProbeInterval: time.Second, AppHealthProbeTimeout: 20 * time.Millisecond, AppHealthThreshold: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.in
			o.setAppHealthDefaults()
			got := []any{o.AppHealthCheckPath, o.AppHealthProbeInterval, o.AppHealthProbeTimeout, o.AppHealthThreshold}
			want := []any{c.want.AppHealthCheckPath, c.want.AppHealthProbeInterval, c.want.AppHealthProbeTimeout, c.want.AppHealthThreshold}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
		})
	}
}

func TestAppHealthMetadata(t *testing.T) {
	o := Options{AppHealthCheck: true, AppProtocol: "grpc"}
	o.setAppHealthDefaults()
	var app metadata.AppConnection
	appHealthMetadata(o, &app)
	if app.HealthCheckPath != "" || app.HealthProbeInterval != "5s" || app.HealthProbeTimeout != "500ms" || app.HealthThreshold != 3 {
		t.Fatalf("gRPC app: %+v, want no path, 5s, 500ms, 3", app)
	}
	o.AppProtocol = "h2c"
	appHealthMetadata(o, &app)
	if app.HealthCheckPath != "/healthz" {
		t.Fatalf("h2c app: path %q, want /healthz", app.HealthCheckPath)
	}
	off := metadata.AppConnection{}
	appHealthMetadata(Options{AppProtocol: "http"}, &off)
	if off != (metadata.AppConnection{}) {
		t.Fatalf("without health checks: %+v, want nothing", off)
	}
}
