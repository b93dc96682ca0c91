package sdk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dapr/go-sdk/client"
)

// mechaModule is the module path of the repository under test.
const mechaModule = "github.com/mecha-dev/mecha"

// mechaBin is the binary every test runs: built once by TestMain, or taken
// from MECHA_BIN.
var mechaBin string

func TestMain(m *testing.M) {
	code := runMain(m)
	removeBuiltApps()
	os.Exit(code)
}

func runMain(m *testing.M) int {
	flag.Parse()
	if bin := os.Getenv("MECHA_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "MECHA_BIN=%s: %v\n", bin, err)
			return 2
		}
		mechaBin = abs
		return m.Run()
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "locating the Mecha repository:", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "mecha-sdk-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	mechaBin = filepath.Join(dir, "mecha")
	start := time.Now()
	// Build with every optional component (MECHA_BUILD_TAGS, default "k8s":
	// secretstores.kubernetes) so the suite covers them all.
	tags, ok := os.LookupEnv("MECHA_BUILD_TAGS")
	if !ok {
		tags = "k8s"
	}
	cmd := exec.Command("go", "build", "-tags", tags, "-o", mechaBin, mechaModule+"/cmd/mecha")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build %s/cmd/mecha in %s: %v\n%s", mechaModule, root, err, out)
		return 2
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "built %s from %s in %v\n", mechaBin, root, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// repoRoot walks up from the working directory (the package directory under
// `go test`) to the directory whose go.mod declares the Mecha module.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if mod, err := modulePath(filepath.Join(dir, "go.mod")); err == nil && mod == mechaModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod declaring module %s above the working directory", mechaModule)
		}
		dir = parent
	}
}

func modulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", errors.New("no module line")
}

// ---------------------------------------------------------------------------
// Sidecar processes.

// sidecarConfig describes one `mecha sidecar` process.
type sidecarConfig struct {
	// AppID defaults to a unique id derived from the test name.
	AppID string
	// Resources are written into a fresh --resources-path directory:
	// file name → content.
	Resources map[string]string
	// Args are extra flags.
	Args []string
	// NoWait skips waiting for /v1.0/healthz/outbound.
	NoWait bool
	// Env are extra KEY=VALUE variables for the process, added after
	// sidecarEnv's: the opt-in for the variables it strips, such as
	// DAPR_API_TOKEN.
	Env []string
}

// sidecar is a running `mecha sidecar` process.
type sidecar struct {
	t            testing.TB
	AppID        string
	HTTPPort     int
	GRPCPort     int
	HTTPURL      string // http://127.0.0.1:<port>
	GRPCAddr     string // 127.0.0.1:<port>
	ResourcesDir string

	*child
}

// child is a process a test started, stopped only by its PID: its
// combined output, and exited, closed once it has ended (cmd.ProcessState
// is set by then).
type child struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

// startChild starts cmd with its stdout and stderr in a buffer.
func startChild(cmd *exec.Cmd) (*child, error) {
	c := &child{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// terminate ends the process: SIGTERM, then SIGKILL if it has not exited
// after grace. It is idempotent.
func (c *child) terminate(grace time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// kill SIGKILLs the process, as a crash, and waits for its end.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// syncBuffer collects the process output; exec copies into it from its own
// goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// uniqueID returns a short random hex string.
func uniqueID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// appIDFor derives a valid, unique app id from the test name.
func appIDFor(t testing.TB) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-')
		}
	}
	name := strings.Trim(sb.String(), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return strings.Trim(name, "-") + "-" + uniqueID()
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process may
// take it before the sidecar binds it; startSidecar retries in that case.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSidecar starts a sidecar with its own ports, resources directory and
// HOME, waits until /v1.0/healthz/outbound answers 204 (unless NoWait) and
// stops it when the test ends. Its output is logged when the test fails.
func startSidecar(t testing.TB, cfg sidecarConfig) *sidecar {
	t.Helper()
	if cfg.AppID == "" {
		cfg.AppID = appIDFor(t)
	}
	resDir := t.TempDir()
	for name, content := range cfg.Resources {
		if err := os.WriteFile(filepath.Join(resDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const attempts = 3
	for i := 1; ; i++ {
		s, err := launch(t, cfg, resDir)
		if err == nil {
			return s
		}
		// A port taken between freePort and the sidecar's bind is the
		// only failure worth a retry.
		if i < attempts && strings.Contains(err.Error(), "address already in use") {
			t.Logf("sidecar start attempt %d: %v; retrying on other ports", i, err)
			continue
		}
		t.Fatalf("starting sidecar %s: %v", cfg.AppID, err)
	}
}

func launch(t testing.TB, cfg sidecarConfig, resDir string) (*sidecar, error) {
	s := &sidecar{
		t:            t,
		AppID:        cfg.AppID,
		HTTPPort:     freePort(t),
		GRPCPort:     freePort(t),
		ResourcesDir: resDir,
	}
	for s.GRPCPort == s.HTTPPort {
		s.GRPCPort = freePort(t)
	}
	s.HTTPURL = "http://127.0.0.1:" + strconv.Itoa(s.HTTPPort)
	s.GRPCAddr = "127.0.0.1:" + strconv.Itoa(s.GRPCPort)
	args := []string{
		"sidecar",
		"--app-id", s.AppID,
		"--dapr-http-port", strconv.Itoa(s.HTTPPort),
		"--dapr-grpc-port", strconv.Itoa(s.GRPCPort),
		"--resources-path", resDir,
		"--metrics-port", "0",
	}
	args = append(args, cfg.Args...)
	home := t.TempDir()
	cmd := exec.Command(mechaBin, args...)
	cmd.Dir = home
	cmd.Env = append(sidecarEnv(home), cfg.Env...)
	c, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	s.child = c
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sidecar %s (pid %d, http %d, grpc %d) output:\n%s", s.AppID, s.cmd.Process.Pid, s.HTTPPort, s.GRPCPort, s.out.String())
		}
	})
	if cfg.NoWait {
		return s, nil
	}
	if err := s.waitHTTP("/v1.0/healthz/outbound", http.StatusNoContent, 30*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w\n--- sidecar output ---\n%s", err, s.out.String())
	}
	return s, nil
}

// sidecarEnv is the test's environment with a private HOME and without the
// variables that would change the sidecar's behaviour behind the test's back.
func sidecarEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// stop ends the process by its PID: SIGTERM, then SIGKILL if it has not
// exited after a grace period. It is idempotent.
func (s *sidecar) stop() { s.terminate(10 * time.Second) }

// waitExit waits up to d for the process to exit on its own and returns its
// exit code.
func (s *sidecar) waitExit(d time.Duration) (int, bool) {
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// running reports whether the process is still alive.
func (s *sidecar) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

var pollClient = &http.Client{Timeout: 2 * time.Second}

// waitHTTP polls GET path until it answers want, with a deadline and a
// short back-off, failing early if the process exits.
func (s *sidecar) waitHTTP(path string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	var last string
	for {
		resp, err := pollClient.Get(s.HTTPURL + path)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s did not answer %d within %v (last: %s)", path, want, timeout, last)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("sidecar exited (%v) before GET %s answered %d", s.cmd.ProcessState, path, want)
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// sdkClient connects the Dapr Go SDK to the sidecar's gRPC port; it is
// closed when the test ends.
func (s *sidecar) sdkClient(t testing.TB) client.Client {
	t.Helper()
	c, err := client.NewClientWithAddress(s.GRPCAddr)
	if err != nil {
		t.Fatalf("client.NewClientWithAddress(%s): %v", s.GRPCAddr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// ---------------------------------------------------------------------------
// Plain HTTP helpers.

type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r httpResult) String() string {
	return fmt.Sprintf("%d %s", r.Status, r.Body)
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// do sends one request to the sidecar; path may carry a query. headers are
// name, value pairs.
func (s *sidecar) do(t testing.TB, method, path string, body []byte, headers ...string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.HTTPURL+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// doJSON marshals v as the body.
func (s *sidecar) doJSON(t testing.TB, method, path string, v any, headers ...string) httpResult {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return s.do(t, method, path, b, headers...)
}

// expectStatus fails unless r has the status want.
func expectStatus(t testing.TB, what string, r httpResult, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: got %s, want status %d", what, r, want)
	}
}

// apiError is Dapr's HTTP error body.
type apiError struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// expectError fails unless r is a Dapr error with the given status and
// errorCode; it returns the decoded body.
func expectError(t testing.TB, what string, r httpResult, status int, code string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("%s: got %s, want a JSON error body {errorCode, message}: %v", what, r, err)
	}
	if r.Status != status || e.ErrorCode != code {
		t.Fatalf("%s: got %d %q (%s), want %d %q", what, r.Status, e.ErrorCode, r.Body, status, code)
	}
	if e.Message == "" {
		t.Errorf("%s: error body has an empty message: %s", what, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: error Content-Type = %q, want application/json", what, ct)
	}
	return e
}

// metadataJSON is the part of GET /v1.0/metadata the tests read.
type metadataJSON struct {
	ID         string `json:"id"`
	Components []struct {
		Name         string   `json:"name"`
		Type         string   `json:"type"`
		Version      string   `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"components"`
	Extended                map[string]string `json:"extended"`
	AppConnectionProperties *struct {
		Port     int    `json:"port"`
		Protocol string `json:"protocol"`
	} `json:"appConnectionProperties"`
	ResourceErrors []struct {
		File  string `json:"file"`
		Kind  string `json:"kind"`
		Name  string `json:"name"`
		Error string `json:"error"`
	} `json:"resourceErrors"`
}

func (s *sidecar) metadata(t testing.TB) metadataJSON {
	t.Helper()
	r := s.do(t, http.MethodGet, "/v1.0/metadata", nil)
	expectStatus(t, "GET /v1.0/metadata", r, http.StatusOK)
	var md metadataJSON
	if err := json.Unmarshal(r.Body, &md); err != nil {
		t.Fatalf("GET /v1.0/metadata: %v in %s", err, r.Body)
	}
	return md
}

// ---------------------------------------------------------------------------
// Components and the state stores under test.

// componentYAML renders a Component resource; metadata keys are sorted so
// the file is deterministic.
func componentYAML(name, typ string, md map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n", name, typ)
	if len(md) > 0 {
		b.WriteString("  metadata:\n")
		keys := make([]string, 0, len(md))
		for k := range md {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  - name: %s\n    value: %s\n", k, strconv.Quote(md[k]))
		}
	}
	return b.String()
}

// stateStore is one kind of state store the state tests run against.
type stateStore struct {
	Name string // subtest name
	Type string // component type
	// Env is the variable that must hold the service address ("" = none).
	Env string
	// Shared stores keep data outside the sidecar, so two sidecars can use
	// the same data (for the key-prefix tests).
	Shared bool
	// Optional stores may not be compiled into the binary yet; the test is
	// skipped if the sidecar reports the type as unknown.
	Optional bool
	// connection returns the connection metadata; dir is a directory that
	// lives as long as the test (for file-based stores).
	connection func(dir string) map[string]string
}

var stateStores = []stateStore{
	{
		Name:       "in-memory",
		Type:       "state.in-memory",
		connection: func(string) map[string]string { return map[string]string{} },
	},
	{
		Name:       "redis",
		Type:       "state.redis",
		Env:        "REDIS_ADDR",
		Shared:     true,
		connection: func(string) map[string]string { return map[string]string{"redisHost": os.Getenv("REDIS_ADDR")} },
	},
	{
		Name:       "postgresql",
		Type:       "state.postgresql",
		Env:        "PG_DSN",
		Shared:     true,
		connection: func(string) map[string]string { return map[string]string{"connectionString": os.Getenv("PG_DSN")} },
	},
	{
		Name:     "sqlite",
		Type:     "state.sqlite",
		Shared:   true,
		Optional: true,
		connection: func(dir string) map[string]string {
			return map[string]string{"connectionString": filepath.Join(dir, "state.db")}
		},
	},
}

// requireService skips (or, with MECHA_REQUIRE_SERVICES=1, fails) when the
// store's service address is not configured.
func (st stateStore) requireService(t testing.TB) {
	t.Helper()
	if st.Env == "" || os.Getenv(st.Env) != "" {
		return
	}
	if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s is not set but MECHA_REQUIRE_SERVICES=1 (start it with shared/services/start-services.sh)", st.Env)
	}
	t.Skipf("%s is not set: skipping the %s store", st.Env, st.Name)
}

// component renders the store as a Component named name with
// actorStateStore=true plus extra metadata.
func (st stateStore) component(name, dir string, extra map[string]string) string {
	md := st.connection(dir)
	md["actorStateStore"] = "true"
	for k, v := range extra {
		md[k] = v
	}
	return componentYAML(name, st.Type, md)
}

// startStoreSidecar starts a sidecar whose only component is the store st
// under the name "statestore" (or storeName), and checks that the component
// loaded.
func startStoreSidecar(t testing.TB, st stateStore, cfg sidecarConfig, dir, storeName string, extra map[string]string) *sidecar {
	t.Helper()
	if cfg.Resources == nil {
		cfg.Resources = map[string]string{}
	}
	cfg.Resources[storeName+".yaml"] = st.component(storeName, dir, extra)
	s := startSidecar(t, cfg)
	md := s.metadata(t)
	for _, c := range md.Components {
		if c.Name == storeName {
			return s
		}
	}
	for _, e := range md.ResourceErrors {
		if st.Optional && strings.Contains(e.Error, "unknown component type "+st.Type) {
			t.Skipf("%s is not compiled into this mecha binary yet: %s", st.Type, e.Error)
		}
	}
	t.Fatalf("component %s (%s) did not load; resourceErrors: %+v", storeName, st.Type, md.ResourceErrors)
	return nil
}

// knownBug records a confirmed deviation of Mecha from Dapr's behaviour that
// this suite documents (see README.md, "Known bugs"). While the bug is open
// the (sub)test is skipped with a "KNOWN BUG" note, so the suite stays green
// and the bug stays visible in `go test -v`; once Mecha is fixed the check
// passes and the note disappears. MECHA_STRICT=1 turns the note into a
// failure.
func knownBug(t testing.TB, id, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf("KNOWN BUG %s: %s", id, fmt.Sprintf(format, args...))
	if os.Getenv("MECHA_STRICT") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
