package run_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/run"
)

// appEnv makes the test binary act as the app `mecha run` starts: when it is
// set, TestMain runs testApp(os.Args[1:]) instead of the tests.
const appEnv = "MECHA_RUN_TEST_APP"

func TestMain(m *testing.M) {
	if os.Getenv(appEnv) == "1" {
		os.Exit(testApp(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// testApp is a tiny app. Modes:
//
//	exit N    print to stdout and stderr (the last line without a newline), exit N
//	state     print its environment, count visits through the sidecar's state API
//	shutdown  ask the sidecar to shut down, then wait for SIGTERM and exit 0
//	wait      print "ready", wait for SIGTERM, print "got SIGTERM", exit 0
//	ignore    ignore SIGTERM, print "ready", sleep
func testApp(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "no mode")
		return 2
	}
	term := make(chan os.Signal, 1)
	waitTerm := func() int {
		select {
		case <-term:
			fmt.Println("got SIGTERM")
			return 0
		case <-time.After(30 * time.Second):
			fmt.Println("no SIGTERM")
			return 99
		}
	}
	switch args[0] {
	case "exit":
		code, _ := strconv.Atoi(args[1])
		fmt.Println("hello stdout")
		fmt.Fprintln(os.Stderr, "hello stderr")
		fmt.Print("no newline")
		return code
	case "state":
		for _, k := range []string{"APP_ID", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_PORT", "APP_PROTOCOL"} {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+os.Getenv("DAPR_GRPC_PORT"), 5*time.Second); err != nil {
			fmt.Println("gRPC port:", err)
			return 1
		} else {
			c.Close()
		}
		n, err := visits()
		if err != nil {
			fmt.Println("state:", err)
			return 1
		}
		fmt.Printf("visits=%d\n", n)
		return 0
	case "shutdown":
		signal.Notify(term, syscall.SIGTERM)
		resp, err := http.Post("http://127.0.0.1:"+os.Getenv("DAPR_HTTP_PORT")+"/v1.0/shutdown", "", nil)
		if err != nil {
			fmt.Println("shutdown:", err)
			return 1
		}
		resp.Body.Close()
		fmt.Println("shutdown status", resp.StatusCode)
		return waitTerm()
	case "wait":
		signal.Notify(term, syscall.SIGTERM)
		fmt.Println("ready")
		return waitTerm()
	case "ignore":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(30 * time.Second)
		return 98
	}
	fmt.Fprintln(os.Stderr, "unknown mode", args[0])
	return 2
}

// visits reads, increments and saves the "visits" key, as examples/hello.
func visits() (int, error) {
	base := "http://127.0.0.1:" + os.Getenv("DAPR_HTTP_PORT") + "/v1.0/state/statestore"
	c := &http.Client{Timeout: 10 * time.Second}
	get := func() (int, error) {
		resp, err := c.Get(base + "/visits")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case http.StatusNoContent:
			return 0, nil
		case http.StatusOK:
			return strconv.Atoi(string(b))
		}
		return 0, fmt.Errorf("GET: %d %s", resp.StatusCode, b)
	}
	n, err := get()
	if err != nil {
		return 0, err
	}
	resp, err := c.Post(base, "application/json", strings.NewReader(fmt.Sprintf(`[{"key":"visits","value":%d}]`, n+1)))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return 0, fmt.Errorf("POST: %d", resp.StatusCode)
	}
	return get()
}

// syncBuffer is an output the test can read while the command writes it.
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

func registries() *kinds.Registries {
	r := kinds.New()
	all.Register(r)
	return r
}

// setup points MECHA_HOME and HOME at temporary directories and makes
// children of this test binary act as the app. It returns MECHA_HOME.
func setup(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "mecha")
	t.Setenv("MECHA_HOME", home)
	t.Setenv("HOME", t.TempDir())
	t.Setenv(appEnv, "1")
	t.Setenv("NO_COLOR", "1")
	// Under -race, a child exiting 0 would sleep 1s in the race runtime.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return home
}

// running is a `mecha run` command executing in the background.
type running struct {
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan error
	start  time.Time
}

// start runs `mecha run --app-id myapp FLAGS... -- <this binary> APP...`.
// Use "--" in args to separate the flags from the app's arguments; without
// it, no app is started.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	var full []string
	flags, app, hasApp := cut(args, "--")
	full = append(full, "--app-id", "myapp")
	full = append(full, flags...)
	if hasApp {
		full = append(full, "--", os.Args[0])
		full = append(full, app...)
	}
	cmd := run.Command(registries)
	out := &syncBuffer{}
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs(full)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: out, cancel: cancel, done: make(chan error, 1), start: time.Now()}
	go func() { r.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Errorf("mecha run did not return after cleanup")
		}
	})
	return r
}

func cut(s []string, sep string) (before, after []string, found bool) {
	for i, v := range s {
		if v == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, nil, false
}

// wait returns the command's error, failing the test after timeout.
func (r *running) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // let Cleanup see it too
		return err
	case <-time.After(timeout):
		t.Fatalf("mecha run still running after %v; output:\n%s", timeout, r.out)
		return nil
	}
}

// waitOutput waits until the output contains s.
func (r *running) waitOutput(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(r.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output never contained %q:\n%s", s, r.out)
		}
		select {
		case err := <-r.done:
			r.done <- err
			if !strings.Contains(r.out.String(), s) {
				t.Fatalf("mecha run returned %v before printing %q:\n%s", err, s, r.out)
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func wantExitCode(t *testing.T, err error, want int) {
	t.Helper()
	code, ok := run.ExitCode(err)
	if want == 0 {
		if err != nil {
			t.Fatalf("mecha run = %v, want success", err)
		}
		return
	}
	if !ok || code != want {
		t.Fatalf("mecha run = %v (ExitCode %d, %v), want exit code %d", err, code, ok, want)
	}
}

func TestExitCodePropagated(t *testing.T) {
	setup(t)
	for _, code := range []int{0, 3, 42} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			r := start(t, "--", "exit", strconv.Itoa(code))
			err := r.wait(t, 20*time.Second)
			wantExitCode(t, err, code)
			if code != 0 {
				if want := fmt.Sprintf("app exited with code %d", code); err.Error() != want {
					t.Fatalf("error %q, want %q", err, want)
				}
			}
		})
	}
}

func TestExitCodeOfOtherErrors(t *testing.T) {
	if code, ok := run.ExitCode(errors.New("boom")); ok || code != 0 {
		t.Fatalf("ExitCode(plain error) = %d, %v; want 0, false", code, ok)
	}
	if code, ok := run.ExitCode(nil); ok || code != 0 {
		t.Fatalf("ExitCode(nil) = %d, %v; want 0, false", code, ok)
	}
}

var readyRE = regexp.MustCompile(`msg="Mecha sidecar APIs ready" .*http=\[127\.0\.0\.1:(\d+)\] grpc=\[127\.0\.0\.1:(\d+)\]`)

// TestAppUsesDefaultStore: the app finds the sidecar through its
// environment and keeps state in the default SQLite store under MECHA_HOME,
// which survives a second run.
func TestAppUsesDefaultStore(t *testing.T) {
	home := setup(t)
	for i := 1; i <= 2; i++ {
		r := start(t, "--app-port", "1", "--", "state")
		err := r.wait(t, 20*time.Second)
		out := r.out.String()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		m := readyRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no ready line with the addresses in:\n%s", out)
		}
		for _, want := range []string{
			"[myapp] APP_ID=myapp\n",
			"[myapp] DAPR_HTTP_PORT=" + m[1] + "\n",
			"[myapp] DAPR_GRPC_PORT=" + m[2] + "\n",
			"[myapp] APP_PORT=1\n",
			"[myapp] APP_PROTOCOL=http\n",
			fmt.Sprintf("[myapp] visits=%d\n", i),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("run %d: output lacks %q:\n%s", i, want, out)
			}
		}
		created := strings.Contains(out, `msg="created default resource"`)
		if created != (i == 1) {
			t.Errorf("run %d: created default resource logged = %v, want %v", i, created, i == 1)
		}
	}
	for _, p := range []string{"components/statestore.yaml", "data/state.db"} {
		if _, err := os.Stat(filepath.Join(home, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestResourcesPathSkipsDefaults(t *testing.T) {
	home := setup(t)
	r := start(t, "--resources-path", t.TempDir(), "--", "exit", "0")
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Fatalf("mecha run: %v\n%s", err, r.out)
	}
	// Only the name resolution registry lives there then: apps find each
	// other whatever their resources.
	for _, d := range []string{"components", "data"} {
		if _, err := os.Stat(filepath.Join(home, d)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("MECHA_HOME/%s was created although --resources-path was given: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "nameresolution.db")); err != nil {
		t.Fatalf("the name resolution registry is not in MECHA_HOME: %v", err)
	}
}

func TestOutputPrefixes(t *testing.T) {
	setup(t)
	r := start(t, "--", "exit", "0")
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	out := r.out.String()
	for _, want := range []string{"[myapp] hello stdout\n", "[myapp] hello stderr\n", "[myapp] no newline\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var sidecarLines int
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "[myapp sidecar] "):
			sidecarLines++
			if !strings.Contains(line, " level=") {
				t.Errorf("sidecar line %q is not a log line", line)
			}
		case strings.HasPrefix(line, "[myapp] "):
		default:
			t.Errorf("line without a prefix: %q", line)
		}
		if !strings.HasSuffix(line, "\n") {
			t.Errorf("unterminated line %q", line)
		}
	}
	for _, msg := range []string{`msg="app started"`, `msg="app exited; stopping the sidecar"`, `msg="sidecar stopped"`} {
		if !regexp.MustCompile(`(?m)^\[myapp sidecar\] .*` + regexp.QuoteMeta(msg)).MatchString(out) {
			t.Errorf("no sidecar line with %s:\n%s", msg, out)
		}
	}
	if sidecarLines == 0 {
		t.Fatalf("no sidecar lines:\n%s", out)
	}
}

func TestJSONLogs(t *testing.T) {
	setup(t)
	r := start(t, "--log-as-json", "--", "exit", "0")
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\[myapp sidecar\] \{"time":".*","level":"info","msg":"app started",.*"scope":"mecha.runtime"`)
	if !re.MatchString(r.out.String()) {
		t.Fatalf("no prefixed JSON sidecar line:\n%s", r.out)
	}
}

func TestShutdownAPIStopsApp(t *testing.T) {
	setup(t)
	r := start(t, "--dapr-graceful-shutdown-seconds", "10", "--", "shutdown")
	err := r.wait(t, 20*time.Second)
	out := r.out.String()
	if err != nil {
		t.Fatalf("mecha run = %v, want success (the app exits 0 on SIGTERM)\n%s", err, out)
	}
	for _, want := range []string{"[myapp] shutdown status 204\n", "[myapp] got SIGTERM\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, `msg="shutdown requested through the API"`) {
		t.Errorf("no shutdown log line:\n%s", out)
	}
	if el := time.Since(r.start); el > 8*time.Second {
		t.Errorf("took %v: the app was killed after the grace period, not stopped by SIGTERM", el)
	}
}

func TestCancelStopsApp(t *testing.T) {
	setup(t)
	r := start(t, "--dapr-graceful-shutdown-seconds", "10", "--", "wait")
	r.waitOutput(t, "[myapp] ready\n")
	cancelled := time.Now()
	r.cancel()
	err := r.wait(t, 15*time.Second)
	if err != nil {
		t.Fatalf("mecha run = %v, want success\n%s", err, r.out)
	}
	if el := time.Since(cancelled); el > 5*time.Second {
		t.Fatalf("stopping took %v, want well within the 10s grace period", el)
	}
	if !strings.Contains(r.out.String(), "[myapp] got SIGTERM\n") {
		t.Fatalf("the app did not get SIGTERM:\n%s", r.out)
	}
}

func TestAppIgnoringSIGTERMIsKilled(t *testing.T) {
	setup(t)
	r := start(t, "--dapr-graceful-shutdown-seconds", "1", "--", "ignore")
	r.waitOutput(t, "[myapp] ready\n")
	cancelled := time.Now()
	r.cancel()
	err := r.wait(t, 15*time.Second)
	el := time.Since(cancelled)
	wantExitCode(t, err, 128+int(syscall.SIGKILL))
	if el < time.Second || el > 8*time.Second {
		t.Fatalf("killed after %v, want about the 1s grace period", el)
	}
	if !strings.Contains(r.out.String(), `msg="app did not stop in time; killing it"`) {
		t.Fatalf("no kill log line:\n%s", r.out)
	}
}

// TestSidecarOnly: without a command, mecha run serves until shutdown is
// requested through the API.
func TestSidecarOnly(t *testing.T) {
	setup(t)
	r := start(t)
	r.waitOutput(t, `msg="Mecha sidecar APIs ready"`)
	m := readyRE.FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("no ready line with the addresses in:\n%s", r.out)
	}
	resp, err := http.Post("http://127.0.0.1:"+m[1]+"/v1.0/shutdown", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := r.wait(t, 15*time.Second); err != nil {
		t.Fatalf("mecha run = %v, want success", err)
	}
}

func TestStartErrors(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"missing command", []string{"--", filepath.Join(os.TempDir(), "no-such-mecha-app")}, "starting the app:"},
		{"bad log level", []string{"--log-level", "chatty"}, `--log-level "chatty"`},
		{"bad port", []string{"--dapr-http-port", "99999"}, "--dapr-http-port 99999 is not a valid port"},
		{"bad body size", []string{"--max-body-size", "huge"}, "--max-body-size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setup(t)
			cmd := run.Command(registries)
			out := &syncBuffer{}
			cmd.SetOut(out)
			cmd.SetErr(out)
			cmd.SetArgs(append([]string{"--app-id", "myapp"}, c.args...))
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("mecha run = %v, want an error containing %q\n%s", err, c.wantErr, out)
			}
			if _, isExit := run.ExitCode(err); isExit {
				t.Fatalf("start error %v reported as an app exit code", err)
			}
		})
	}
}
