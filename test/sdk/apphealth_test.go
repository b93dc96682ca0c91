package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// retry calls f until it returns nil or timeout passes.
func retry(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAppHealthCheck: `mecha sidecar --enable-app-health-check` in front of
// an app written with the SDK's service/http, whose health check handler
// starts failing: SDK invocations of the app fail at once with daprd's
// error, /v1.0/healthz stays 204, the metadata API shows the probe
// settings; once the handler passes again, invocations reach the app.
func TestAppHealthCheck(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	healthy.Store(true)
	var calls atomic.Int32
	appPort := freePort(t)
	app := daprhttp.NewService("127.0.0.1:" + strconv.Itoa(appPort))
	if err := app.AddHealthCheckHandler("/ready", func(context.Context) error {
		if !healthy.Load() {
			return errors.New("draining")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := app.AddServiceInvocationHandler("/hello", func(ctx context.Context, in *common.InvocationEvent) (*common.Content, error) {
		calls.Add(1)
		return &common.Content{ContentType: "text/plain", Data: []byte("hello from the app")}, nil
	}); err != nil {
		t.Fatal(err)
	}
	go app.Start()
	t.Cleanup(func() { app.Stop() })

	s := startSidecar(t, sidecarConfig{Args: []string{
		"--app-port", strconv.Itoa(appPort),
		"--enable-app-health-check", "--app-health-check-path", "/ready",
		"--app-health-probe-interval", "1", "--app-health-probe-timeout", "500", "--app-health-threshold", "1",
	}})
	c := s.sdkClient(t)
	invoke := func() ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.InvokeMethod(ctx, s.AppID, "hello", http.MethodGet)
	}
	retry(t, 20*time.Second, func() error {
		out, err := invoke()
		if err != nil || string(out) != "hello from the app" {
			return fmt.Errorf("InvokeMethod = %q, %v", out, err)
		}
		return nil
	})

	var md struct {
		AppConnectionProperties struct {
			Health map[string]any `json:"health"`
		} `json:"appConnectionProperties"`
		Extended map[string]string `json:"extended"`
	}
	if err := json.Unmarshal(s.do(t, http.MethodGet, "/v1.0/metadata", nil).Body, &md); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"healthCheckPath": "/ready", "healthProbeInterval": "1s", "healthProbeTimeout": "500ms", "healthThreshold": float64(1)}
	if got := md.AppConnectionProperties.Health; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("appConnectionProperties.health = %v, want %v", got, want)
	}

	healthy.Store(false)
	retry(t, 20*time.Second, func() error {
		_, err := invoke()
		if st, _ := status.FromError(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "app is not in a healthy state") {
			return fmt.Errorf("InvokeMethod while unhealthy = %v, want Internal \"app is not in a healthy state\"", err)
		}
		return nil
	})
	before := calls.Load()
	start := time.Now()
	if _, err := invoke(); err == nil {
		t.Fatal("InvokeMethod succeeded while the app is unhealthy")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a call to the unhealthy app took %v, want it refused at once", d)
	}
	r := s.do(t, http.MethodPost, "/v1.0/invoke/"+s.AppID+"/method/hello", []byte(`{}`))
	if e := expectError(t, "HTTP invoke while unhealthy", r, http.StatusInternalServerError, "ERR_DIRECT_INVOKE"); !strings.Contains(e.Message, "app is not in a healthy state") {
		t.Fatalf("HTTP invoke while unhealthy: message %q", e.Message)
	}
	if n := calls.Load() - before; n != 0 {
		t.Fatalf("the unhealthy app got %d calls, want 0", n)
	}
	expectStatus(t, "GET /v1.0/healthz while the app is unhealthy", s.do(t, http.MethodGet, "/v1.0/healthz", nil), http.StatusNoContent)

	healthy.Store(true)
	retry(t, 20*time.Second, func() error {
		out, err := invoke()
		if err != nil || string(out) != "hello from the app" {
			return fmt.Errorf("InvokeMethod after recovery = %q, %v", out, err)
		}
		return nil
	})
	if out := s.out.String(); !strings.Contains(out, "app entered unhealthy status") || !strings.Contains(out, "app entered healthy status") {
		t.Errorf("the sidecar did not log the transitions:\n%s", out)
	}
}
