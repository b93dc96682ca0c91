package grpcapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

func bindCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantBindingFailure checks daprd's failure shape: Internal, the message,
// and an ErrorInfo with reason ERR_INVOKE_OUTPUT_BINDING.
func wantBindingFailure(t *testing.T, err error, msg string) {
	t.Helper()
	st := wantCode(t, err, codes.Internal)
	if !strings.Contains(st.Message(), msg) {
		t.Fatalf("message %q, want it to contain %q", st.Message(), msg)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "ERR_INVOKE_OUTPUT_BINDING" {
			return
		}
	}
	t.Errorf("details %v lack ErrorInfo ERR_INVOKE_OUTPUT_BINDING", st.Details())
}

func TestInvokeBindingHTTPComponent(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Echo-Method", r.Method)
		w.Header().Set("Echo-Uri", r.URL.RequestURI())
		w.Header().Set("Echo-Custom", r.Header.Get("X-Custom"))
		w.Header().Set("Echo-Traceparent", r.Header.Get("traceparent"))
		if strings.HasSuffix(r.URL.Path, "/missing") {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(up.Close)
	s := mechatest.Start(t, nil, mechatest.Component("web", "bindings.http", "url", up.URL))
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ctx := metadata.AppendToOutgoingContext(bindCtx(t), "traceparent", tp)

	var hdr metadata.MD
	resp, err := s.Dapr.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{
		Name: "web", Operation: "post", Data: []byte("raw \x00 bytes"), Metadata: map[string]string{"path": "/things", "X-Custom": "c1"},
	}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetData()) != "raw \x00 bytes" {
		t.Errorf("data = %q, want the bytes sent, unchanged", resp.GetData())
	}
	for k, v := range map[string]string{"statusCode": "200", "Echo-Method": "POST", "Echo-Uri": "/things", "Echo-Custom": "c1", "Echo-Traceparent": tp} {
		if got := resp.GetMetadata()[k]; got != v {
			t.Errorf("metadata %s = %q, want %q", k, got, v)
		}
	}
	if got := hdr.Get("metadata.statuscode"); len(got) != 1 || got[0] != "200" {
		t.Errorf("response header metadata.statuscode = %v, want 200", got)
	}

	hdr = nil
	_, err = s.Dapr.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "web", Operation: "get", Metadata: map[string]string{"path": "missing"}}, grpc.Header(&hdr))
	wantBindingFailure(t, err, "error invoking output binding web: received status code 404")
	if got := hdr.Get("metadata.statuscode"); len(got) != 1 || got[0] != "404" {
		t.Errorf("failed call header metadata.statuscode = %v, want 404", got)
	}
}

func TestInvokeBindingBadRequests(t *testing.T) {
	s := mechatest.Start(t, nil, mechatest.Component("files", "bindings.localstorage", "rootPath", t.TempDir()))
	tests := []struct {
		name string
		req  *runtimev1.InvokeBindingRequest
		msg  string
	}{
		{"unknown binding", &runtimev1.InvokeBindingRequest{Name: "nope", Operation: "create"}, "couldn't find output binding nope"},
		{"no name", &runtimev1.InvokeBindingRequest{Operation: "create"}, "couldn't find output binding"},
		{"missing operation", &runtimev1.InvokeBindingRequest{Name: "files"}, "operation field is missing from request"},
		{"unsupported operation", &runtimev1.InvokeBindingRequest{Name: "files", Operation: "query"}, "does not support operation query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Dapr.InvokeBinding(bindCtx(t), tt.req)
			wantBindingFailure(t, err, tt.msg)
		})
	}
}

func TestInvokeBindingLocalStorage(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	s := mechatest.Start(t, nil, mechatest.Component("files", "bindings.localstorage", "rootPath", root))
	ctx := bindCtx(t)
	call := func(op, name string, data []byte) (*runtimev1.InvokeBindingResponse, error) {
		md := map[string]string{}
		if name != "" {
			md["fileName"] = name
		}
		return s.Dapr.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "files", Operation: op, Data: data, Metadata: md})
	}
	bin := []byte{0xff, 0, 'b', 'i', 'n'}
	if resp, err := call("create", "a.bin", bin); err != nil || string(resp.GetData()) != `{"fileName":"a.bin"}` {
		t.Fatalf("create = %v, %v", resp, err)
	}
	if resp, err := call("get", "a.bin", nil); err != nil || string(resp.GetData()) != string(bin) {
		t.Fatalf("get = %q, %v; want the raw bytes", resp.GetData(), err)
	}
	if resp, err := call("list", "", nil); err != nil || string(resp.GetData()) != `["`+filepath.Join(root, "a.bin")+`"]` {
		t.Fatalf("list = %s, %v", resp.GetData(), err)
	}
	if resp, err := call("delete", "a.bin", nil); err != nil || resp.GetData() != nil {
		t.Fatalf("delete = %v, %v; want no data", resp, err)
	}
	for name, want := range map[string]string{"../x": "escapes rootPath", "/etc/passwd": "absolute path", "a/../../x": "escapes rootPath"} {
		_, err := call("create", name, []byte("x"))
		wantBindingFailure(t, err, want)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("the root's parent holds %d entries, want only the root", len(entries))
	}
}

func TestInvokeBindingRedisAndPostgres(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		addr := mechatest.ServiceEnv(t, "REDIS_ADDR")
		s := mechatest.Start(t, nil, mechatest.Component("cache", "bindings.redis", "redisHost", addr))
		key := fmt.Sprintf("mecha-grpcapi-binding-%d", time.Now().UnixNano())
		ctx := bindCtx(t)
		inv := func(op string) (*runtimev1.InvokeBindingResponse, error) {
			return s.Dapr.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "cache", Operation: op, Data: []byte("v1"), Metadata: map[string]string{"key": key}})
		}
		t.Cleanup(func() { inv("delete") })
		if _, err := inv("create"); err != nil {
			t.Fatalf("create: %v", err)
		}
		_, err := inv("increment")
		wantBindingFailure(t, err, "not an integer")
		if resp, err := inv("get"); err != nil || string(resp.GetData()) != "v1" {
			t.Fatalf("get = %v, %v", resp, err)
		}
	})
	t.Run("postgresql", func(t *testing.T) {
		dsn := mechatest.ServiceEnv(t, "PG_DSN")
		s := mechatest.Start(t, nil, mechatest.Component("db", "bindings.postgresql", "connectionString", dsn))
		ctx := bindCtx(t)
		resp, err := s.Dapr.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "db", Operation: "query", Metadata: map[string]string{"sql": "SELECT $1::int + 1, $2::text", "params": `[41, "x"]`}})
		if err != nil || string(resp.GetData()) != `[[42,"x"]]` || resp.GetMetadata()["operation"] != "query" {
			t.Fatalf("query = %v, %v", resp, err)
		}
		_, err = s.Dapr.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "db", Operation: "exec", Metadata: map[string]string{"sql": "SELEC nonsense"}})
		wantBindingFailure(t, err, "error executing")
	})
}

// grpcApp is an app serving AppCallback: it subscribes to the bindings in
// subs and answers every event with answer.
type grpcApp struct {
	runtimev1.UnimplementedAppCallbackServer
	subs   []string
	answer *runtimev1.BindingEventResponse

	mu     sync.Mutex
	events []*runtimev1.BindingEventRequest
	lists  int
}

func (a *grpcApp) ListInputBindings(context.Context, *emptypb.Empty) (*runtimev1.ListInputBindingsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lists++
	return &runtimev1.ListInputBindingsResponse{Bindings: a.subs}, nil
}

func (a *grpcApp) OnBindingEvent(_ context.Context, in *runtimev1.BindingEventRequest) (*runtimev1.BindingEventResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, in)
	return a.answer, nil
}

func (a *grpcApp) eventsFor(name string) []*runtimev1.BindingEventRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*runtimev1.BindingEventRequest
	for _, e := range a.events {
		if e.GetName() == name {
			out = append(out, e)
		}
	}
	return out
}

// serve starts the app on 127.0.0.1 and returns the sidecar options for it.
func (a *grpcApp) serve(t *testing.T) func(*runtime.Options) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimev1.RegisterAppCallbackServer(srv, a)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	port := ln.Addr().(*net.TCPAddr).Port
	return func(o *runtime.Options) { o.AppPort, o.AppProtocol = port, "grpc" }
}

func TestInputBindingToGRPCApp(t *testing.T) {
	root := t.TempDir()
	app := &grpcApp{
		subs:   []string{"tick"},
		answer: &runtimev1.BindingEventResponse{To: []string{"files"}, Data: []byte(`{"via":"grpc"}`), Concurrency: runtimev1.BindingEventResponse_PARALLEL},
	}
	mechatest.Start(t, app.serve(t),
		mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s"),
		mechatest.Component("ignored", "bindings.cron", "schedule", "@every 1s"),
		mechatest.Component("files", "bindings.localstorage", "rootPath", root),
	)
	mechatest.Eventually(t, 10*time.Second, func() error {
		if n := len(app.eventsFor("tick")); n < 2 {
			return fmt.Errorf("%d events, want 2", n)
		}
		return nil
	})
	e := app.eventsFor("tick")[0]
	if e.GetData() != nil || e.GetMetadata()["readTimeUTC"] == "" {
		t.Errorf("event = %v, want no data and the readTimeUTC metadata", e)
	}
	if n := len(app.eventsFor("ignored")); n != 0 {
		t.Errorf("the binding the app does not list got %d events", n)
	}
	app.mu.Lock()
	lists := app.lists
	app.mu.Unlock()
	if lists != 1 {
		t.Errorf("ListInputBindings called %d times, want once", lists)
	}
	// The answer's "to" wrote the answer's data through the output binding.
	mechatest.Eventually(t, 10*time.Second, func() error {
		entries, err := os.ReadDir(root)
		if err != nil || len(entries) == 0 {
			return fmt.Errorf("no file yet (%v)", err)
		}
		b, err := os.ReadFile(filepath.Join(root, entries[0].Name()))
		if err != nil || string(b) != `{"via":"grpc"}` {
			return fmt.Errorf("file = %q, %v", b, err)
		}
		return nil
	})
}
