package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/inmemory"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// fakes registers test store types on top of the built-ins:
//
//	state.counting  an in-memory store that counts Init and Close calls
//	state.blocking  Init waits for its context to end
//	state.stuck     Init ignores its context until release is closed
//	state.capture   records the metadata it was initialised with
type fakes struct {
	regs    *kinds.Registries
	inits   atomic.Int32 // successful counting Inits
	closes  atomic.Int32 // Close calls, all fake types
	release chan struct{}
	once    sync.Once

	mu       sync.Mutex
	captured map[string]map[string]string // component name -> properties
	initDone chan string                  // component names, as counting Inits finish
}

func newFakes(t *testing.T) *fakes {
	f := &fakes{regs: kinds.New(), release: make(chan struct{}), captured: map[string]map[string]string{}, initDone: make(chan string, 16)}
	all.Register(f.regs)
	f.regs.State.Register("state.counting", func(d components.Deps) cstate.Store {
		return &fakeStore{Store: inmemory.New(d), f: f, init: func(ctx context.Context, md components.Metadata) error {
			f.inits.Add(1)
			f.initDone <- md.Name
			return nil
		}}
	})
	f.regs.State.Register("state.blocking", func(d components.Deps) cstate.Store {
		return &fakeStore{Store: inmemory.New(d), f: f, init: func(ctx context.Context, _ components.Metadata) error {
			<-ctx.Done()
			return ctx.Err()
		}}
	})
	f.regs.State.Register("state.stuck", func(d components.Deps) cstate.Store {
		return &fakeStore{Store: inmemory.New(d), f: f, init: func(context.Context, components.Metadata) error {
			<-f.release
			return errors.New("released")
		}}
	})
	f.regs.State.Register("state.capture", func(d components.Deps) cstate.Store {
		return &fakeStore{Store: inmemory.New(d), f: f, init: func(_ context.Context, md components.Metadata) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.captured[md.Name] = md.Properties
			return nil
		}}
	})
	t.Cleanup(f.unblock)
	return f
}

// unblock lets every stuck Init return.
func (f *fakes) unblock() { f.once.Do(func() { close(f.release) }) }

type fakeStore struct {
	cstate.Store
	f    *fakes
	init func(context.Context, components.Metadata) error
}

func (s *fakeStore) Init(ctx context.Context, md components.Metadata) error {
	if err := s.init(ctx, md); err != nil {
		return err
	}
	return s.Store.Init(ctx, md)
}

func (s *fakeStore) Close() error {
	s.f.closes.Add(1)
	return s.Store.Close()
}

// comp returns Component YAML with an optional initTimeout.
func comp(name, typ, initTimeout string, kv ...string) string {
	y := mechatest.Component(name, typ, kv...)
	if initTimeout != "" {
		y = strings.Replace(y, "  version: v1\n", "  version: v1\n  initTimeout: "+initTimeout+"\n", 1)
	}
	return y
}

func resourcesDir(t *testing.T, docs ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i, d := range docs {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("r%02d.yaml", i)), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func opts(t *testing.T, regs *kinds.Registries, docs ...string) runtime.Options {
	return runtime.Options{
		AppID:          "myapp",
		ResourcesPaths: []string{resourcesDir(t, docs...)},
		DataDir:        t.TempDir(),
		Registries:     regs,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startRT(t *testing.T, o runtime.Options) *runtime.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rt, err := runtime.Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type metadataJSON struct {
	Components []struct {
		Name         string   `json:"name"`
		Type         string   `json:"type"`
		Capabilities []string `json:"capabilities"`
	} `json:"components"`
	ResourceErrors []struct {
		File  string `json:"file"`
		Kind  string `json:"kind"`
		Name  string `json:"name"`
		Error string `json:"error"`
	} `json:"resourceErrors"`
}

func metadata(t *testing.T, rt *runtime.Runtime) metadataJSON {
	t.Helper()
	status, body := get(t, "http://"+rt.HTTPAddr()+"/v1.0/metadata")
	if status != 200 {
		t.Fatalf("GET metadata = %d %s", status, body)
	}
	var m metadataJSON
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("metadata %s: %v", body, err)
	}
	return m
}

func TestStartInvalidOptions(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(o *runtime.Options)
		wantErr []string
	}{
		{"no app id", func(o *runtime.Options) { o.AppID = "" }, []string{"--app-id is required"}},
		{"app id with ||", func(o *runtime.Options) { o.AppID = "a||b" }, []string{`--app-id "a||b" must not contain`}},
		{"app id with /", func(o *runtime.Options) { o.AppID = "a/b" }, []string{`--app-id "a/b"`}},
		{"negative port", func(o *runtime.Options) { o.HTTPPort = -1 }, []string{"--dapr-http-port -1 is not a valid port"}},
		{"port too large", func(o *runtime.Options) { o.AppPort = 65536 }, []string{"--app-port 65536 is not a valid port"}},
		{"bad protocol", func(o *runtime.Options) { o.AppProtocol = "ws" }, []string{`--app-protocol "ws" is not one of`}},
		{"all problems at once", func(o *runtime.Options) { o.AppID, o.GRPCPort, o.AppProtocol = "", 1<<20, "x" },
			[]string{"--app-id is required", "--dapr-grpc-port 1048576", `--app-protocol "x"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakes(t)
			o := opts(t, f.regs, comp("counting", "state.counting", ""))
			c.mutate(&o)
			rt, err := runtime.Start(context.Background(), o)
			if err == nil {
				rt.Close(context.Background())
				t.Fatal("Start succeeded, want an error")
			}
			for _, want := range c.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if n := f.inits.Load(); n != 0 {
				t.Errorf("%d components were initialised before validation failed", n)
			}
		})
	}
}

func TestStartPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	cases := []struct {
		name    string
		mutate  func(o *runtime.Options, free []int)
		wantErr string
	}{
		{"HTTP port", func(o *runtime.Options, free []int) { o.HTTPPort, o.GRPCPort = busyPort, free[0] }, "HTTP API: "},
		{"gRPC port", func(o *runtime.Options, free []int) { o.HTTPPort, o.GRPCPort = free[0], busyPort }, "gRPC API: "},
		{"internal gRPC port", func(o *runtime.Options, free []int) {
			o.HTTPPort, o.GRPCPort, o.InternalGRPCPort = free[0], free[1], busyPort
		}, "internal gRPC: "},
		{"second listen address", func(o *runtime.Options, free []int) {
			o.HTTPPort, o.GRPCPort = free[0], free[1]
			o.ListenAddresses = []string{"127.0.0.1", "192.0.2.1"} // TEST-NET-1: not a local address
		}, "HTTP API: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakes(t)
			o := opts(t, f.regs, comp("counting", "state.counting", ""))
			free := []int{freePort(t), freePort(t)}
			c.mutate(&o, free)
			rt, err := runtime.Start(context.Background(), o)
			if err == nil {
				rt.Close(context.Background())
				t.Fatal("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q lacks %q", err, c.wantErr)
			}
			if c.name != "second listen address" && !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("error %q does not say the address is in use", err)
			}
			if n := f.inits.Load(); n != 0 {
				t.Errorf("%d components initialised although the ports failed", n)
			}
			// The listeners bound before the failure were released.
			for _, p := range free {
				l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
				if err != nil {
					t.Fatalf("port %d still bound after the failed Start: %v", p, err)
				}
				l.Close()
			}
		})
	}
}

func TestCloseIsIdempotentAndClosesStores(t *testing.T) {
	f := newFakes(t)
	rt := startRT(t, opts(t, f.regs, comp("a", "state.counting", ""), comp("b", "state.counting", "")))
	if n := f.inits.Load(); n != 2 {
		t.Fatalf("%d stores initialised, want 2", n)
	}
	if err := rt.Ready(); err != nil {
		t.Fatalf("Ready() = %v, want nil without an app port", err)
	}
	addr := rt.HTTPAddr()
	for i := range 3 {
		if err := rt.Close(context.Background()); err != nil {
			t.Fatalf("Close #%d = %v", i+1, err)
		}
	}
	if n := f.closes.Load(); n != 2 {
		t.Fatalf("stores closed %d times, want 2 (once each)", n)
	}
	if err := rt.Ready(); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("Ready() after Close = %v, want shutting down", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("HTTP API %s still accepts connections after Close", addr)
	}
	if c, err := net.DialTimeout("tcp", rt.GRPCAddr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("gRPC API still accepts connections after Close")
	}
}

func TestCloseConcurrent(t *testing.T) {
	f := newFakes(t)
	rt := startRT(t, opts(t, f.regs, comp("a", "state.counting", "")))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { rt.Close(context.Background()) })
	}
	wg.Wait()
	if n := f.closes.Load(); n != 1 {
		t.Fatalf("store closed %d times, want 1", n)
	}
}

func TestShutdownRequested(t *testing.T) {
	rt := startRT(t, opts(t, kinds.New()))
	select {
	case <-rt.ShutdownRequested():
		t.Fatal("shutdown requested before anyone asked")
	default:
	}
	resp, err := http.Post("http://"+rt.HTTPAddr()+"/v1.0/shutdown", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST shutdown = %d, want 204", resp.StatusCode)
	}
	select {
	case <-rt.ShutdownRequested():
	case <-time.After(5 * time.Second):
		t.Fatal("ShutdownRequested not closed after POST /v1.0/shutdown")
	}
	rt.RequestShutdown() // again: no panic on a closed channel
}

// TestHealthStages: the APIs report outbound-ready while the app is not
// listening yet, and become fully ready soon after it listens, because a
// health check nudges the app-port prober instead of waiting out its back-off.
func TestHealthStages(t *testing.T) {
	appPort := freePort(t)
	o := opts(t, kinds.New())
	o.AppPort = appPort
	rt := startRT(t, o)
	base := "http://" + rt.HTTPAddr()

	if status, body := get(t, base+"/v1.0/healthz/outbound"); status != 204 {
		t.Fatalf("outbound health = %d %s, want 204 before the app listens", status, body)
	}
	status, body := get(t, base+"/v1.0/healthz")
	if status != 500 || !strings.Contains(string(body), "ERR_HEALTH_NOT_READY") || !strings.Contains(string(body), "waiting for the app") {
		t.Fatalf("health = %d %s, want 500 ERR_HEALTH_NOT_READY waiting for the app", status, body)
	}
	if err := rt.Ready(); err == nil {
		t.Fatal("Ready() = nil before the app listens")
	}

	app, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(appPort)))
	if err != nil {
		t.Fatalf("the app port was taken meanwhile: %v", err)
	}
	defer app.Close()
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	mechatest.Eventually(t, 5*time.Second, func() error {
		if status, body := get(t, base+"/v1.0/healthz"); status != 204 {
			return fmt.Errorf("health = %d %s", status, body)
		}
		return nil
	})
	if err := rt.Ready(); err != nil {
		t.Fatalf("Ready() = %v after the app listens", err)
	}
}

func TestComponentInitTimeout(t *testing.T) {
	f := newFakes(t)
	o := opts(t, f.regs,
		comp("slow", "state.blocking", "150ms"),
		comp("good", "state.counting", ""),
		comp("mem", "state.in-memory", ""),
	)
	o.ComponentInitTimeout = 10 * time.Second // only spec.initTimeout may cut "slow" short
	start := time.Now()
	rt := startRT(t, o)
	if el := time.Since(start); el < 150*time.Millisecond || el > 5*time.Second {
		t.Fatalf("Start took %v, want about the 150ms initTimeout", el)
	}
	m := metadata(t, rt)
	var loaded []string
	for _, c := range m.Components {
		loaded = append(loaded, c.Name)
	}
	if want := []string{"good", "mem"}; !slices.Equal(loaded, want) {
		t.Fatalf("components = %q, want %q", loaded, want)
	}
	if len(m.ResourceErrors) != 1 {
		t.Fatalf("resourceErrors = %+v, want one for slow", m.ResourceErrors)
	}
	e := m.ResourceErrors[0]
	if e.Name != "slow" || e.Kind != "Component" || !strings.HasSuffix(e.File, "r00.yaml") ||
		!strings.Contains(e.Error, "init did not finish within 150ms (spec.initTimeout): context deadline exceeded") {
		t.Fatalf("resource error = %+v, want slow's init deadline", e)
	}
	waitCloses(t, f, 1) // the one that failed
	// The stores that loaded serve; the skipped one is unknown.
	for store, want := range map[string]int{"good": 204, "mem": 204, "slow": 400} {
		resp, err := http.Post("http://"+rt.HTTPAddr()+"/v1.0/state/"+store, "application/json", strings.NewReader(`[{"key":"k","value":1}]`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("save to %s = %d, want %d", store, resp.StatusCode, want)
		}
	}
}

// TestComponentInitIgnoringContext: a component whose Init ignores its
// context must not hold up the sidecar past spec.initTimeout.
func TestComponentInitIgnoringContext(t *testing.T) {
	f := newFakes(t)
	o := opts(t, f.regs, comp("stuck", "state.stuck", "150ms"), comp("good", "state.counting", ""))
	done := make(chan struct{})
	var rt *runtime.Runtime
	var err error
	go func() {
		defer close(done)
		rt, err = runtime.Start(context.Background(), o)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		f.unblock()
		<-done
		if rt != nil {
			rt.Close(context.Background())
		}
		t.Fatal("Start still blocked 5s after the 150ms initTimeout of a component whose Init ignores its context")
	}
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	m := metadata(t, rt)
	if len(m.Components) != 1 || m.Components[0].Name != "good" {
		t.Fatalf("components = %+v, want only good", m.Components)
	}
	if len(m.ResourceErrors) != 1 || m.ResourceErrors[0].Name != "stuck" || !strings.Contains(m.ResourceErrors[0].Error, "deadline exceeded") {
		t.Fatalf("resourceErrors = %+v, want stuck's init deadline", m.ResourceErrors)
	}
	// Once the abandoned Init returns, its store is closed.
	if n := f.closes.Load(); n != 0 {
		t.Fatalf("%d stores closed while Init is still running", n)
	}
	f.unblock()
	waitCloses(t, f, 1)
}

// waitCloses waits until exactly n fake stores were closed.
func waitCloses(t *testing.T, f *fakes, n int32) {
	t.Helper()
	mechatest.Eventually(t, 5*time.Second, func() error {
		if got := f.closes.Load(); got != n {
			return fmt.Errorf("%d stores closed, want %d", got, n)
		}
		return nil
	})
}

// TestStartCancelledClosesStores: when Start gives up because its context
// ended during component initialisation, the stores that did initialise are
// closed and nothing keeps running.
func TestStartCancelledClosesStores(t *testing.T) {
	f := newFakes(t)
	o := opts(t, f.regs, comp("good", "state.counting", ""), comp("slow", "state.blocking", "30s"))
	httpPort, grpcPort := freePort(t), freePort(t)
	o.HTTPPort, o.GRPCPort = httpPort, grpcPort
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-f.initDone // good is initialised; slow is still waiting
		cancel()
	}()
	rt, err := runtime.Start(ctx, o)
	if err == nil {
		rt.Close(context.Background())
		t.Fatal("Start succeeded, want the context error")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v, want context.Canceled", err)
	}
	waitCloses(t, f, 2) // the initialised one and the one whose Init failed
	for _, p := range []int{httpPort, grpcPort} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d still bound after the failed Start: %v", p, err)
		}
		l.Close()
	}
}

func TestComponentErrors(t *testing.T) {
	f := newFakes(t)
	missing := filepath.Join(t.TempDir(), "missing")
	o := opts(t, f.regs,
		comp("unknown", "state.nope", ""),
		comp("pubsub", "pubsub.nope", ""),
		comp("secret", "state.in-memory", "", "a", "b")+"  - name: password\n    secretKeyRef:\n      name: s\n      key: k\n",
		strings.Replace(comp("badversion", "state.in-memory", ""), "version: v1", "version: v9", 1),
		"kind: Nope\n",
	)
	o.ResourcesPaths = append(o.ResourcesPaths, missing)
	rt := startRT(t, o)
	m := metadata(t, rt)
	if len(m.Components) != 0 {
		t.Fatalf("components = %+v, want none", m.Components)
	}
	got := map[string]string{}
	for _, e := range m.ResourceErrors {
		key := e.Name
		if key == "" {
			key = filepath.Base(e.File)
		}
		got[key] = e.Error
	}
	want := map[string]string{
		"unknown":    "unknown component type state.nope",
		"pubsub":     "unknown component type pubsub.nope",
		"secret":     `metadata "password" uses secretKeyRef "s" but the component sets no auth.secretStore`,
		"badversion": "component type state.in-memory has no version v9",
		"r04.yaml":   `unknown kind "Nope"`,
		"missing":    "no such file or directory",
	}
	if len(got) != len(want) {
		t.Fatalf("resource errors = %q, want keys %q", got, want)
	}
	for k, w := range want {
		if !strings.Contains(got[k], w) {
			t.Errorf("error for %s = %q, want it to contain %q", k, got[k], w)
		}
	}
}

func TestComponentMetadataResolution(t *testing.T) {
	f := newFakes(t)
	t.Setenv("MECHA_TEST_SECRET", "from-env")
	t.Setenv("POD_NAME", "pod-1")
	doc := comp("cap", "state.capture", "", "literal", "x", "app", "{appID}-suffix", "ns", "{namespace}", "pod", "{podName}", "number", "5") +
		"  - name: env\n    envRef: MECHA_TEST_SECRET\n  - name: structured\n    value: {a: 1}\n  - name: id\n    value: \"{uuid}\"\n"
	o := opts(t, f.regs, doc)
	o.Namespace = "prod"
	startRT(t, o)
	f.mu.Lock()
	got := f.captured["cap"]
	f.mu.Unlock()
	want := map[string]string{
		"literal":    "x",
		"app":        "myapp-suffix",
		"ns":         "prod.myapp",
		"pod":        "pod-1",
		"number":     "5",
		"env":        "from-env",
		"structured": `{"a":1}`,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("property %s = %q, want %q", k, got[k], w)
		}
	}
	if id := got["id"]; len(id) != 36 || strings.Contains(id, "{") {
		t.Errorf("property id = %q, want a UUID", id)
	}
}
