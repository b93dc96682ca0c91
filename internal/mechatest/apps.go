package mechatest

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"

	"github.com/mecha-dev/mecha/internal/runtime"
)

// registries maps a top-level test name to its registry file.
var registries sync.Map

// Registry returns the name resolution registry (a nameresolution.sqlite
// file) shared by every sidecar of the top-level test t belongs to.
func Registry(t testing.TB) string {
	t.Helper()
	root, _, _ := strings.Cut(t.Name(), "/")
	if f, ok := registries.Load(root); ok {
		return f.(string)
	}
	dir, err := os.MkdirTemp("", "mecha-registry-")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "nameresolution.db")
	if actual, loaded := registries.LoadOrStore(root, f); loaded {
		os.RemoveAll(dir)
		return actual.(string)
	}
	t.Cleanup(func() {
		registries.Delete(root)
		os.RemoveAll(dir)
	})
	return f
}

// HTTPApp serves h on 127.0.0.1:0 until the test ends and returns the
// port, for Options.AppPort.
func HTTPApp(t testing.TB, h http.Handler) int {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// GRPCApp serves the AppCallback service on 127.0.0.1:0 until the test
// ends and returns the port (use it with AppProtocol "grpc").
func GRPCApp(t testing.TB, cb runtimev1.AppCallbackServer) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	runtimev1.RegisterAppCallbackServer(gs, cb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := gs.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("gRPC app: %v", err)
		}
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

// App configures a sidecar for the app id with the app on port (protocol
// "http" when empty).
func App(id string, port int, protocol string) func(*runtime.Options) {
	return func(o *runtime.Options) {
		o.AppID, o.AppPort, o.AppProtocol = id, port, protocol
	}
}
