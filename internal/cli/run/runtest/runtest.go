// Package runtest is the test support of the CLI verbs around `mecha run`
// (run, list, stop, invoke): the test binary re-executes itself as the app
// `mecha run` starts (Main, App), so tests need no other program, and
// helpers run a cobra command in the background and watch its output.
package runtest

import (
	"context"
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
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/internal/syncbuf"
)

// AppEnv makes the test binary act as an app: when it is "1" and the first
// argument is a mode of App, Main runs App instead of the tests.
const AppEnv = "MECHA_RUN_TEST_APP"

var modes = []string{"exit", "state", "shutdown", "wait", "ignore", "serve", "call", "env"}

// Main is the TestMain of packages whose tests start apps with Self.
func Main(m *testing.M) {
	if os.Getenv(AppEnv) == "1" && len(os.Args) > 1 && isMode(os.Args[1]) {
		os.Exit(App(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func isMode(s string) bool {
	for _, m := range modes {
		if s == m {
			return true
		}
	}
	return false
}

// Self is the absolute path of the test binary: the app's command[0].
func Self(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// App is a tiny app. Modes:
//
//	exit N         print to stdout and stderr (the last line without a newline), exit N
//	state          print its environment, count visits through the sidecar's state API
//	shutdown       ask the sidecar to shut down, then wait for SIGTERM and exit 0
//	wait           print "ready", wait for SIGTERM, print "got SIGTERM", exit 0
//	ignore         ignore SIGTERM, print "ready", sleep
//	serve          answer HTTP on APP_PORT ("hello <body>, this is <APP_ID>"), print "serving", exit 0 on SIGTERM
//	call APP M     invoke method M of APP through the own sidecar until it answers 200, print "answer: <body>", exit 0
//	env NAME...    print NAME=value for each name and PWD=<working directory>, exit 0
func App(args []string) int {
	term := make(chan os.Signal, 1)
	waitTerm := func() int {
		select {
		case <-term:
			fmt.Println("got SIGTERM")
			return 0
		case <-time.After(60 * time.Second):
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
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+os.Getenv("DAPR_GRPC_PORT"), 5*time.Second)
		if err != nil {
			fmt.Println("gRPC port:", err)
			return 1
		}
		c.Close()
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
	case "serve":
		signal.Notify(term, syscall.SIGTERM)
		return serve(waitTerm)
	case "call":
		return call(args[1], args[2])
	case "env":
		for _, k := range args[1:] {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		wd, _ := os.Getwd()
		fmt.Printf("PWD=%s\n", wd)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown mode", args[0])
	return 2
}

func serve(waitTerm func() int) int {
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("APP_PORT"))
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Printf("got %s %s from %s\n", r.Method, r.URL.Path, r.Header.Get("dapr-caller-app-id"))
		fmt.Fprintf(w, "hello %s, this is %s", b, os.Getenv("APP_ID"))
	})}
	go srv.Serve(l)
	fmt.Println("serving")
	code := waitTerm()
	srv.Close()
	return code
}

func call(app, method string) int {
	url := "http://127.0.0.1:" + os.Getenv("DAPR_HTTP_PORT") + "/v1.0/invoke/" + app + "/method/" + method
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.Post(url, "text/plain", strings.NewReader(os.Getenv("APP_ID")))
		if err != nil {
			last = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("answer: %s\n", b)
				return 0
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		time.Sleep(50 * time.Millisecond) // the target may not be up yet
	}
	fmt.Println("no answer:", last)
	return 1
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

// Setup points MECHA_HOME and HOME at temporary directories and makes
// children of this test binary act as the app. It returns MECHA_HOME.
func Setup(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "mecha")
	t.Setenv("MECHA_HOME", home)
	t.Setenv("HOME", t.TempDir())
	t.Setenv(AppEnv, "1")
	t.Setenv("NO_COLOR", "1")
	// Under -race, a child exiting 0 would sleep 1s in the race runtime.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return home
}

// Buffer is an output the test can read while the command writes it.
type Buffer = syncbuf.Buffer

// Running is a command executing in the background.
type Running struct {
	Out    *Buffer
	Cancel context.CancelFunc
	Start  time.Time
	done   chan error
}

// Execute runs cmd with args in the background, stdout and stderr going to
// Out; cancelling (Cancel, or the end of the test) is Ctrl-C.
func Execute(t testing.TB, cmd *cobra.Command, args ...string) *Running {
	t.Helper()
	out := &Buffer{}
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Out: out, Cancel: cancel, done: make(chan error, 1), Start: time.Now()}
	go func() { r.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not return after cleanup", cmd.Name())
		}
	})
	return r
}

// Wait returns the command's error, failing the test after timeout.
func (r *Running) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // let Cleanup and later calls see it too
		return err
	case <-time.After(timeout):
		t.Fatalf("still running after %v; output:\n%s", timeout, r.Out)
		return nil
	}
}

// Done reports whether the command returned.
func (r *Running) Done() bool {
	select {
	case err := <-r.done:
		r.done <- err
		return true
	default:
		return false
	}
}

// WaitOutput waits until the output contains s.
func (r *Running) WaitOutput(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.Out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output never contained %q:\n%s", s, r.Out)
		}
		select {
		case err := <-r.done:
			r.done <- err
			if !strings.Contains(r.Out.String(), s) {
				t.Fatalf("command returned %v before printing %q:\n%s", err, s, r.Out)
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ReadyRE matches the sidecar's ready line and captures its HTTP and gRPC
// ports.
var ReadyRE = regexp.MustCompile(`msg="Mecha sidecar APIs ready" .*http=\[127\.0\.0\.1:(\d+)\] grpc=\[127\.0\.0\.1:(\d+)\]`)

// Ports returns the HTTP and gRPC ports app's sidecar logged in out (lines
// prefixed "[app sidecar] "), or "" if it has not logged them yet.
func Ports(out, app string) (httpPort, grpcPort string) {
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "["+app+" sidecar] ") {
			continue
		}
		if m := ReadyRE.FindStringSubmatch(line); m != nil {
			return m[1], m[2]
		}
	}
	return "", ""
}

// AppPID returns the pid app's sidecar logged when it started the app (0
// if not yet).
func AppPID(out, app string) int {
	re := regexp.MustCompile(`^\[` + regexp.QuoteMeta(app) + ` sidecar\] .*msg="app started" .*pid=(\d+)`)
	for line := range strings.Lines(out) {
		if m := re.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

// FreePort returns a port that was free a moment ago, for a template's
// appPort (the app, not the test, binds it).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually retries f until it returns nil, failing the test after
// timeout.
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
