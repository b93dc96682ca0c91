package runtime_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/sqlite"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

func listRegistry(t *testing.T, file string) []nameresolution.Instance {
	t.Helper()
	r := sqlite.New(components.Deps{})
	if err := r.Init(context.Background(), components.Metadata{Properties: map[string]string{"connectionString": file}}); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all, err := r.(nameresolution.Lister).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestRegistration: a sidecar announces itself once its APIs serve, with
// what `mecha list` needs, updates the app process, and withdraws on Close.
func TestRegistration(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "reg.db")
	appPort := mechatest.HTTPApp(t, http.NotFoundHandler())
	s := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID, o.AppPort, o.RegistryFile, o.AppCommand = "listed", appPort, reg, "python app.py"
	})
	all := listRegistry(t, reg)
	if len(all) != 1 {
		t.Fatalf("registry holds %d entries, want 1: %+v", len(all), all)
	}
	in := all[0]
	if in.AppID != "listed" || in.Namespace != "default" || in.Address != s.InternalAddr || in.AppPort != appPort || in.AppProtocol != "http" ||
		in.PID != os.Getpid() || in.Command != "python app.py" || in.HTTPPort == 0 || in.GRPCPort == 0 || in.InternalPort == 0 ||
		time.Since(in.StartedAt) > time.Minute || in.InstanceID == "" {
		t.Fatalf("entry %+v", in)
	}
	if !strings.HasSuffix(s.URL, ":"+strconv.Itoa(in.HTTPPort)) || !strings.HasPrefix(s.InternalAddr, "127.0.0.1:") {
		t.Fatalf("ports %+v do not match %s / %s", in, s.URL, s.InternalAddr)
	}
	s.RT.SetAppProcess(context.Background(), 4321, "python app.py --port 1")
	all = listRegistry(t, reg)
	if len(all) != 1 || all[0].AppPID != 4321 || all[0].Command != "python app.py --port 1" || all[0].InstanceID != in.InstanceID {
		t.Fatalf("after SetAppProcess: %+v", all)
	}
	md := s.Do(t, "GET", "/v1.0/metadata", nil)
	if !strings.Contains(string(md.Body), `"appPID":"4321"`) {
		t.Fatalf("metadata lacks appPID: %s", md.Body)
	}
	if err := s.RT.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if all := listRegistry(t, reg); len(all) != 0 {
		t.Fatalf("after Close the registry holds %+v", all)
	}
}

func writeConfig(t *testing.T, spec string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: cfg\nspec:\n" + spec
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNameResolutionFromConfiguration: spec.nameResolution picks the
// resolver and configures it; a resolver that cannot start leaves the
// sidecar up, the reason visible in the metadata API and in errors.
func TestNameResolutionFromConfiguration(t *testing.T) {
	reg := filepath.Join(t.TempDir(), "custom", "nr.db")
	cfg := writeConfig(t, "  nameResolution:\n    component: sqlite\n    configuration:\n      connectionString: "+reg+"\n      updateInterval: 1s\n")
	mechatest.Start(t, func(o *runtime.Options) { o.AppID = "cfgd"; o.ConfigFiles = []string{cfg} })
	if all := listRegistry(t, reg); len(all) != 1 || all[0].AppID != "cfgd" {
		t.Fatalf("the configured registry holds %+v", all)
	}

	cfg = writeConfig(t, "  nameResolution:\n    component: nosuch\n")
	s := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "nonr"; o.ConfigFiles = []string{cfg} })
	md := s.Do(t, "GET", "/v1.0/metadata", nil)
	if !strings.Contains(string(md.Body), "nameResolution") || !strings.Contains(string(md.Body), "nameresolution.nosuch") {
		t.Fatalf("metadata does not report the resolver error: %s", md.Body)
	}
	r := s.Do(t, "GET", "/v1.0/invoke/other/method/x", nil)
	if r.Status != 500 || r.ErrorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(r.Body), "name resolution is not available") {
		t.Fatalf("invoke without a resolver: %d %s", r.Status, r.Body)
	}
}

// recordingResolver is an injected resolver.
type recordingResolver struct {
	mu         sync.Mutex
	registered []nameresolution.Instance
	closed     bool
}

func (r *recordingResolver) Init(context.Context, components.Metadata) error { return nil }
func (r *recordingResolver) Register(_ context.Context, in nameresolution.Instance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered = append(r.registered, in)
	return nil
}

func (r *recordingResolver) Resolve(_ context.Context, req nameresolution.ResolveRequest) ([]string, error) {
	return nil, errors.Join(nameresolution.ErrNotFound, errors.New("fake: "+req.ID))
}

func (r *recordingResolver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func TestInjectedResolver(t *testing.T) {
	fr := &recordingResolver{}
	s := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "inj"; o.Resolver = fr })
	r := s.Do(t, "GET", "/v1.0/invoke/x/method/y", nil)
	if r.Status != 500 || !strings.Contains(string(r.Body), "fake: x") {
		t.Fatalf("invoke: %d %s", r.Status, r.Body)
	}
	s.RT.Close(context.Background())
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if len(fr.registered) != 1 || fr.registered[0].AppID != "inj" || fr.registered[0].Address != s.InternalAddr || !fr.closed {
		t.Fatalf("registered %+v closed %v", fr.registered, fr.closed)
	}
}

// TestCloseDrainsInvocations: Close waits for a call in flight through
// the internal server, and the caller gets the app's full answer.
func TestCloseDrainsInvocations(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	// On failure, let the handler finish so the app server can close.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	started := make(chan struct{})
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The sidecar also asks the app for /dapr/subscribe at start.
		if r.URL.Path != "/slow" {
			http.NotFound(w, r)
			return
		}
		close(started)
		<-release
		io.WriteString(w, "finished")
	}))
	b := mechatest.Start(t, mechatest.App("drain-b", port, ""))
	a := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "drain-a" })
	got := make(chan *mechatest.Response, 1)
	go func() { got <- a.Do(t, "GET", "/v1.0/invoke/drain-b/method/slow", nil) }()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- b.RT.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a call in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	releaseOnce.Do(func() { close(release) })
	if r := <-got; r.Status != 200 || string(r.Body) != "finished" {
		t.Fatalf("drained call: %d %s", r.Status, r.Body)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
