package run_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/run"
	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
)

func TestMain(m *testing.M) { runtest.Main(m) }

func registries() *kinds.Registries {
	r := kinds.New()
	all.Register(r)
	return r
}

func setup(t *testing.T) string { return runtest.Setup(t) }

// start runs `mecha run --app-id myapp FLAGS... -- <this binary> APP...`.
// Use "--" in args to separate the flags from the app's arguments; without
// it, no app is started.
func start(t *testing.T, args ...string) *runtest.Running {
	t.Helper()
	flags, app, hasApp := cut(args, "--")
	full := append([]string{"--app-id", "myapp"}, flags...)
	if hasApp {
		full = append(full, "--", runtest.Self(t))
		full = append(full, app...)
	}
	return runtest.Execute(t, run.Command(registries), full...)
}

func cut(s []string, sep string) (before, after []string, found bool) {
	for i, v := range s {
		if v == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, nil, false
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
			err := r.Wait(t, 20*time.Second)
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

var readyRE = runtest.ReadyRE

// TestAppUsesDefaultStore: the app finds the sidecar through its
// environment and keeps state in the default SQLite store under MECHA_HOME,
// which survives a second run.
func TestAppUsesDefaultStore(t *testing.T) {
	home := setup(t)
	for i := 1; i <= 2; i++ {
		r := start(t, "--app-port", "1", "--", "state")
		err := r.Wait(t, 20*time.Second)
		out := r.Out.String()
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
	if err := r.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("mecha run: %v\n%s", err, r.Out)
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
	if err := r.Wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	out := r.Out.String()
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
	if err := r.Wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\[myapp sidecar\] \{"time":".*","level":"info","msg":"app started",.*"scope":"mecha.runtime"`)
	if !re.MatchString(r.Out.String()) {
		t.Fatalf("no prefixed JSON sidecar line:\n%s", r.Out)
	}
}

func TestShutdownAPIStopsApp(t *testing.T) {
	setup(t)
	r := start(t, "--dapr-graceful-shutdown-seconds", "10", "--", "shutdown")
	err := r.Wait(t, 20*time.Second)
	out := r.Out.String()
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
	if el := time.Since(r.Start); el > 8*time.Second {
		t.Errorf("took %v: the app was killed after the grace period, not stopped by SIGTERM", el)
	}
}

func TestCancelStopsApp(t *testing.T) {
	setup(t)
	r := start(t, "--dapr-graceful-shutdown-seconds", "10", "--", "wait")
	r.WaitOutput(t, "[myapp] ready\n")
	cancelled := time.Now()
	r.Cancel()
	err := r.Wait(t, 15*time.Second)
	if err != nil {
		t.Fatalf("mecha run = %v, want success\n%s", err, r.Out)
	}
	if el := time.Since(cancelled); el > 5*time.Second {
		t.Fatalf("stopping took %v, want well within the 10s grace period", el)
	}
	if !strings.Contains(r.Out.String(), "[myapp] got SIGTERM\n") {
		t.Fatalf("the app did not get SIGTERM:\n%s", r.Out)
	}
}

func TestAppIgnoringSIGTERMIsKilled(t *testing.T) {
	setup(t)
	r := start(t, "--dapr-graceful-shutdown-seconds", "1", "--", "ignore")
	r.WaitOutput(t, "[myapp] ready\n")
	cancelled := time.Now()
	r.Cancel()
	err := r.Wait(t, 15*time.Second)
	el := time.Since(cancelled)
	wantExitCode(t, err, 128+int(syscall.SIGKILL))
	if el < time.Second || el > 8*time.Second {
		t.Fatalf("killed after %v, want about the 1s grace period", el)
	}
	if !strings.Contains(r.Out.String(), `msg="app did not stop in time; killing it"`) {
		t.Fatalf("no kill log line:\n%s", r.Out)
	}
}

// TestSidecarOnly: without a command, mecha run serves until shutdown is
// requested through the API.
func TestSidecarOnly(t *testing.T) {
	setup(t)
	r := start(t)
	r.WaitOutput(t, `msg="Mecha sidecar APIs ready"`)
	m := readyRE.FindStringSubmatch(r.Out.String())
	if m == nil {
		t.Fatalf("no ready line with the addresses in:\n%s", r.Out)
	}
	resp, err := http.Post("http://127.0.0.1:"+m[1]+"/v1.0/shutdown", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := r.Wait(t, 15*time.Second); err != nil {
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
			out := &runtest.Buffer{}
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
