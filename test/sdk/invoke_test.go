package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// invokeCluster is three `mecha sidecar` processes that share one name
// resolution registry (given through a Configuration resource, as a user
// would): "caller" without an app, one in front of an HTTP app written
// with net/http, one in front of a gRPC app written with the SDK's
// service/grpc.
type invokeCluster struct {
	caller           *sidecar
	httpApp, grpcApp string // their app ids
	// slowCancelled receives when the HTTP app's /slow request context
	// ends before it answered.
	slowCancelled chan struct{}
}

// echoed is what the HTTP app answers /echo with.
type echoed struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	Body   string `json:"body"`
	Type   string `json:"contentType"`
	Caller string `json:"caller"`
}

func startInvokeCluster(t *testing.T) *invokeCluster {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	registry := filepath.Join(dir, "registry", "nameresolution.db")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: invoke
spec:
  nameResolution:
    component: sqlite
    configuration:
      connectionString: %q
      updateInterval: 1s
`, registry)), 0o644); err != nil {
		t.Fatal(err)
	}
	base := appIDFor(t)
	c := &invokeCluster{httpApp: "http-" + base, grpcApp: "grpc-" + base, slowCancelled: make(chan struct{}, 1)}

	// The HTTP app.
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
				c.slowCancelled <- struct{}{}
			case <-time.After(20 * time.Second):
			}
			return
		}
		if code, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
			n, _ := strconv.Atoi(code)
			w.Header().Set("X-App-Error", code)
			w.WriteHeader(n)
			fmt.Fprintf(w, "app says %s", code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{r.Method, r.URL.Path, r.URL.RawQuery, string(body), r.Header.Get("Content-Type"), r.Header.Get("dapr-caller-app-id")})
	})}
	go srv.Serve(hl)
	t.Cleanup(func() { srv.Close() })

	// The gRPC app, with the SDK.
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := daprgrpc.NewServiceWithListener(gl)
	if err := gs.AddServiceInvocationHandler("echo", func(ctx context.Context, in *common.InvocationEvent) (*common.Content, error) {
		return &common.Content{ContentType: "text/plain", Data: []byte(fmt.Sprintf("grpc app got %q (%s, %s)", in.Data, in.ContentType, in.Verb))}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := gs.AddServiceInvocationHandler("fail", func(ctx context.Context, in *common.InvocationEvent) (*common.Content, error) {
		return nil, status.Error(codes.FailedPrecondition, "not now")
	}); err != nil {
		t.Fatal(err)
	}
	go gs.Start()
	t.Cleanup(func() { gs.Stop() })

	port := func(l net.Listener) string { return strconv.Itoa(l.Addr().(*net.TCPAddr).Port) }
	startSidecar(t, sidecarConfig{AppID: c.httpApp, Args: []string{"--config", cfg, "--app-port", port(hl)}})
	startSidecar(t, sidecarConfig{AppID: c.grpcApp, Args: []string{"--config", cfg, "--app-port", port(gl), "--app-protocol", "grpc"}})
	c.caller = startSidecar(t, sidecarConfig{AppID: "caller-" + base, Args: []string{"--config", cfg}})
	return c
}

func TestInvokeSDK(t *testing.T) {
	c := startInvokeCluster(t)
	cl := c.caller.sdkClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("InvokeMethod to an HTTP app", func(t *testing.T) {
		out, err := cl.InvokeMethod(ctx, c.httpApp, "echo/deep?x=1&y=2", "get")
		if err != nil {
			t.Fatal(err)
		}
		var e echoed
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if e.Method != "GET" || e.Path != "/echo/deep" || e.Query != "x=1&y=2" || e.Caller != c.caller.AppID {
			t.Fatalf("the app saw %+v", e)
		}
	})
	t.Run("InvokeMethodWithContent to an HTTP app", func(t *testing.T) {
		out, err := cl.InvokeMethodWithContent(ctx, c.httpApp, "echo", "post", &client.DataContent{Data: []byte(`{"order":1}`), ContentType: "application/json"})
		if err != nil {
			t.Fatal(err)
		}
		var e echoed
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if e.Method != "POST" || e.Body != `{"order":1}` || e.Type != "application/json" {
			t.Fatalf("the app saw %+v", e)
		}
	})
	t.Run("HTTP app errors reach the caller", func(t *testing.T) {
		for code, want := range map[int]codes.Code{404: codes.NotFound, 500: codes.Unknown, 503: codes.Unavailable, 401: codes.Unauthenticated} {
			_, err := cl.InvokeMethod(ctx, c.httpApp, fmt.Sprintf("status/%d", code), "get")
			if st := status.Convert(err); st.Code() != want {
				t.Errorf("app status %d: got %v, want %v", code, err, want)
			}
		}
	})
	t.Run("InvokeMethodWithContent to a gRPC app", func(t *testing.T) {
		out, err := cl.InvokeMethodWithContent(ctx, c.grpcApp, "echo", "post", &client.DataContent{Data: []byte("hi"), ContentType: "text/plain"})
		if err != nil {
			t.Fatal(err)
		}
		if want := `grpc app got "hi" (text/plain, POST)`; string(out) != want {
			t.Fatalf("got %q, want %q", out, want)
		}
		_, err = cl.InvokeMethod(ctx, c.grpcApp, "fail", "get")
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "not now" {
			t.Fatalf("gRPC app error: %v", err)
		}
	})
	t.Run("unknown app id", func(t *testing.T) {
		_, err := cl.InvokeMethod(ctx, "nobody-"+uniqueID(), "x", "get")
		if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "failed to invoke") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("deadline reaches the app", func(t *testing.T) {
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := cl.InvokeMethod(short, c.httpApp, "slow", "get")
		if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v, want a deadline error", err)
		}
		select {
		case <-c.slowCancelled:
		case <-time.After(10 * time.Second):
			t.Fatal("the app's request was not cancelled when the caller's deadline passed")
		}
	})
}

// TestInvokeHTTPAPI exercises the HTTP API of the same cluster: status,
// headers and bodies pass through, the app id can be in a header, and Dapr
// errors have Dapr's shape.
func TestInvokeHTTPAPI(t *testing.T) {
	c := startInvokeCluster(t)
	s := c.caller
	r := s.do(t, "PUT", "/v1.0/invoke/"+c.httpApp+"/method/echo/a?k=v", []byte(`{"a":1}`))
	expectStatus(t, "invoke echo", r, 200)
	var e echoed
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Method != "PUT" || e.Path != "/echo/a" || e.Query != "k=v" || e.Body != `{"a":1}` || e.Caller != s.AppID {
		t.Fatalf("the app saw %+v (%v)", e, err)
	}
	r = s.do(t, "GET", "/v1.0/invoke/"+c.httpApp+"/method/status/404", nil)
	if r.Status != 404 || string(r.Body) != "app says 404" || r.Header.Get("X-App-Error") != "404" {
		t.Fatalf("app 404: %s %v", r, r.Header)
	}
	r = s.do(t, "GET", "/status/500", nil, "dapr-app-id", c.httpApp)
	if r.Status != 500 || string(r.Body) != "app says 500" {
		t.Fatalf("app 500 by header: %s", r)
	}
	r = s.do(t, "POST", "/v1.0/invoke/"+c.grpcApp+"/method/echo", []byte("from http"))
	if r.Status != 200 || string(r.Body) != `grpc app got "from http" (application/json, POST)` {
		t.Fatalf("HTTP → gRPC app: %s", r)
	}
	r = s.do(t, "GET", "/v1.0/invoke/"+c.grpcApp+"/method/fail", nil)
	if r.Status != 400 || !strings.Contains(string(r.Body), `"message":"not now"`) {
		t.Fatalf("HTTP → failing gRPC app: %s, want 400 with the JSON status", r)
	}
	expectError(t, "unknown app", s.do(t, "GET", "/v1.0/invoke/nobody-"+uniqueID()+"/method/x", nil), 500, "ERR_DIRECT_INVOKE")
	expectError(t, "no app id", s.do(t, "GET", "/some/path", nil), 404, "ERR_DIRECT_INVOKE")
}
