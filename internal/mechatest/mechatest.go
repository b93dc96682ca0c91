// Package mechatest starts real sidecars in-process for tests: the runtime
// binds 127.0.0.1:0, loads resources given as inline YAML, and is talked to
// through real HTTP and gRPC clients. Everything is torn down by t.Cleanup.
package mechatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// Sidecar is a running in-process sidecar with clients attached.
type Sidecar struct {
	RT *runtime.Runtime
	// URL is the HTTP API base, e.g. "http://127.0.0.1:41234".
	URL string
	// Dapr is a gRPC client of the Dapr API.
	Dapr runtimev1.DaprClient
	Conn *grpc.ClientConn
	// ResourcesDir holds the resource files.
	ResourcesDir string
	// InternalAddr is the sidecar-to-sidecar (internal gRPC) address.
	InternalAddr string
}

// Component returns Component YAML for name of type typ with the given
// metadata pairs.
func Component(name, typ string, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n", name, typ)
	if len(kv) < 2 {
		b.WriteString("  metadata: []\n")
		return b.String()
	}
	b.WriteString("  metadata:\n")
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "  - name: %s\n    value: %q\n", kv[i], kv[i+1])
	}
	return b.String()
}

// InMemory is a state.in-memory store named statestore that is the actor
// state store.
var InMemory = Component("statestore", "state.in-memory", "actorStateStore", "true")

// Start runs a sidecar with app id "myapp" (change it in configure) and the
// given resource documents, one file each. Every sidecar a test starts
// shares one name resolution registry (Registry), so they can call each
// other.
func Start(t testing.TB, configure func(*runtime.Options), resources ...string) *Sidecar {
	t.Helper()
	dir := t.TempDir()
	for i, r := range resources {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("r%02d.yaml", i)), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	regs := kinds.New()
	all.Register(regs)
	opts := runtime.Options{
		AppID:          "myapp",
		ResourcesPaths: []string{dir},
		DataDir:        t.TempDir(),
		RegistryFile:   Registry(t),
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registries:     regs,
	}
	if configure != nil {
		configure(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := runtime.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting sidecar: %v", err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	conn, err := grpc.NewClient(rt.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Sidecar{RT: rt, URL: "http://" + rt.HTTPAddr(), Dapr: runtimev1.NewDaprClient(conn), Conn: conn, ResourcesDir: dir, InternalAddr: rt.InternalAddr()}
}

// testWriter sends logs to t.Log, and drops them once the test is over.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // logging after the test ended panics in t.Log
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Response is an HTTP response with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %q: %v", r.Body, err)
	}
}

// ErrorCode returns the errorCode of a Dapr error body ("" if none).
func (r *Response) ErrorCode() string {
	var e struct {
		ErrorCode string `json:"errorCode"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.ErrorCode
}

// Do sends an HTTP request to the sidecar; body may be nil, a string, []byte
// or a value to encode as JSON.
func (s *Sidecar) Do(t testing.TB, method, path string, body any, headers ...string) *Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Eventually retries f until it returns nil or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
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
		time.Sleep(20 * time.Millisecond)
	}
}
