package sdk

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bindingStatus digs the gRPC status out of an SDK error (the SDK wraps
// them).
func bindingStatus(err error) *status.Status {
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		return gs.GRPCStatus()
	}
	return status.Convert(err)
}

// TestSDKOutputBindings drives output bindings through the SDK's
// InvokeBinding and InvokeOutputBinding: bindings.http against a local
// server and bindings.localstorage in a temporary directory.
func TestSDKOutputBindings(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Echo-Method", r.Method)
		w.Header().Set("Echo-Path", r.URL.Path)
		w.Header().Set("Echo-Custom", r.Header.Get("X-Custom"))
		if strings.HasSuffix(r.URL.Path, "/teapot") {
			w.WriteHeader(http.StatusTeapot)
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(up.Close)
	parent := t.TempDir()
	root := filepath.Join(parent, "files")
	s := startSidecar(t, sidecarConfig{Resources: map[string]string{
		"web.yaml":   componentYAML("web", "bindings.http", map[string]string{"url": up.URL}),
		"files.yaml": componentYAML("files", "bindings.localstorage", map[string]string{"rootPath": root}),
	}})
	c := s.sdkClient(t)
	ctx := ctxT(t)

	t.Run("InvokeBinding returns data and metadata", func(t *testing.T) {
		out, err := c.InvokeBinding(ctx, &client.InvokeBindingRequest{
			Name: "web", Operation: "post", Data: []byte("hello"),
			Metadata: map[string]string{"path": "/greet", "X-Custom": "sdk"},
		})
		must(t, "InvokeBinding(web, post)", err)
		if string(out.Data) != "hello" {
			t.Errorf("data = %q, want hello", out.Data)
		}
		for k, v := range map[string]string{"statusCode": "200", "Echo-Method": "POST", "Echo-Path": "/greet", "Echo-Custom": "sdk"} {
			if out.Metadata[k] != v {
				t.Errorf("metadata %s = %q, want %q (all: %v)", k, out.Metadata[k], v, out.Metadata)
			}
		}
	})

	t.Run("a failing upstream is Internal", func(t *testing.T) {
		_, err := c.InvokeBinding(ctx, &client.InvokeBindingRequest{Name: "web", Operation: "get", Metadata: map[string]string{"path": "teapot"}})
		expectCode(t, "InvokeBinding(web, teapot)", err, codes.Internal)
		if msg := bindingStatus(err).Message(); !strings.Contains(msg, "received status code 418") {
			t.Errorf("message %q, want the upstream status", msg)
		}
	})

	t.Run("InvokeOutputBinding and a read back", func(t *testing.T) {
		err := c.InvokeOutputBinding(ctx, &client.InvokeBindingRequest{
			Name: "files", Operation: "create", Data: []byte("stored by the SDK"), Metadata: map[string]string{"fileName": "sdk/note.txt"},
		})
		must(t, "InvokeOutputBinding(files, create)", err)
		if b, err := os.ReadFile(filepath.Join(root, "sdk", "note.txt")); err != nil || string(b) != "stored by the SDK" {
			t.Fatalf("file = %q, %v", b, err)
		}
		out, err := c.InvokeBinding(ctx, &client.InvokeBindingRequest{Name: "files", Operation: "get", Metadata: map[string]string{"fileName": "sdk/note.txt"}})
		must(t, "InvokeBinding(files, get)", err)
		if string(out.Data) != "stored by the SDK" {
			t.Fatalf("get = %q", out.Data)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		tests := []struct {
			name string
			req  *client.InvokeBindingRequest
			msg  string
		}{
			{"unknown binding", &client.InvokeBindingRequest{Name: "nope", Operation: "create"}, "couldn't find output binding nope"},
			{"unsupported operation", &client.InvokeBindingRequest{Name: "files", Operation: "exec"}, "does not support operation exec"},
			{"path traversal", &client.InvokeBindingRequest{Name: "files", Operation: "create", Data: []byte("x"), Metadata: map[string]string{"fileName": "../escape.txt"}}, "escapes rootPath"},
		}
		for _, tt := range tests {
			_, err := c.InvokeBinding(ctx, tt.req)
			expectCode(t, tt.name, err, codes.Internal)
			if msg := bindingStatus(err).Message(); !strings.Contains(msg, tt.msg) {
				t.Errorf("%s: message %q, want it to contain %q", tt.name, msg, tt.msg)
			}
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 1 {
			t.Errorf("the root's parent holds %d entries, want only the root", len(entries))
		}
	})

	t.Run("the same over HTTP", func(t *testing.T) {
		r := s.doJSON(t, http.MethodPost, "/v1.0/bindings/web", map[string]any{"operation": "post", "data": "hi", "metadata": map[string]string{"path": "/x"}})
		expectStatus(t, "POST /v1.0/bindings/web", r, http.StatusOK)
		if string(r.Body) != `"hi"` || r.Header.Get("metadata.statusCode") != "200" {
			t.Errorf("POST /v1.0/bindings/web = %s, headers %v; want the JSON string with its quotes", r, r.Header)
		}
		expectError(t, "unknown binding over HTTP", s.doJSON(t, http.MethodPost, "/v1.0/bindings/nope", map[string]any{"operation": "create"}), http.StatusInternalServerError, "ERR_INVOKE_OUTPUT_BINDING")
	})
}

// TestSDKInputBindingCron delivers a cron binding's events to an app
// written with the SDK's HTTP service.
func TestSDKInputBindingCron(t *testing.T) {
	t.Parallel()
	appPort := freePort(t)
	svc := daprhttp.NewService("127.0.0.1:" + strconv.Itoa(appPort))
	var mu sync.Mutex
	var events []*common.BindingEvent
	err := svc.AddBindingInvocationHandler("/tick", func(_ context.Context, in *common.BindingEvent) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, in)
		return nil, nil
	})
	must(t, "AddBindingInvocationHandler", err)
	served := make(chan error, 1)
	go func() { served <- svc.Start() }()
	t.Cleanup(func() {
		_ = svc.GracefulStop()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("SDK service: %v", err)
		}
	})

	startSidecar(t, sidecarConfig{
		Args:      []string{"--app-port", strconv.Itoa(appPort)},
		Resources: map[string]string{"tick.yaml": componentYAML("tick", "bindings.cron", map[string]string{"schedule": "@every 1s"})},
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(events)
	}
	eventually(t, 15*time.Second, "two cron events at the SDK app", func() bool { return count() >= 2 })
	mu.Lock()
	e := events[0]
	mu.Unlock()
	if len(e.Data) != 0 || e.Metadata["Readtimeutc"] == "" || e.Metadata["Timezone"] == "" {
		t.Errorf("event = data %q metadata %v, want no data and the cron metadata", e.Data, e.Metadata)
	}
}
