package run_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/cli/run"
	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
)

// template writes apps.yaml (body, where %[1]q is this test binary) into a
// new directory holding the app directories dirs, and returns its path.
func template(t *testing.T, body string, dirs ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(root, "apps.yaml")
	body = strings.ReplaceAll(body, "%[1]q", strconv.Quote(runtest.Self(t)))
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startTemplate(t *testing.T, path string, extra ...string) *runtest.Running {
	t.Helper()
	return runtest.Execute(t, run.Command(registries), append([]string{"-f", path}, extra...)...)
}

// waitLine waits until a line of the output matches re.
func waitLine(t *testing.T, r *runtest.Running, re string) {
	t.Helper()
	rx := regexp.MustCompile("(?m)" + re)
	runtest.Eventually(t, 30*time.Second, func() error {
		if !rx.MatchString(r.Out.String()) {
			return fmt.Errorf("no line matches %s in:\n%s", re, r.Out)
		}
		return nil
	})
}

// checkPrefixes fails if a line of out lacks one of the prefixes.
func checkPrefixes(t *testing.T, out string, prefixes ...string) {
	t.Helper()
	for line := range strings.Lines(out) {
		ok := false
		for _, p := range prefixes {
			ok = ok || strings.HasPrefix(line, p)
		}
		if !ok {
			t.Errorf("line without a known prefix: %q", line)
		}
	}
}

// TestTemplateAppsCallEachOther: app "caller" calls app "greeter" by app id
// through its own sidecar, each app's output carries its prefix, and the
// greeter keeps running after the caller is done.
func TestTemplateAppsCallEachOther(t *testing.T) {
	runtest.Setup(t)
	port := runtest.FreePort(t)
	path := template(t, `version: 1
apps:
- appID: greeter
  appDirPath: greeter
  appPort: `+fmt.Sprint(port)+`
  command: [%[1]q, serve]
- appID: caller
  appDirPath: caller
  command: [%[1]q, call, greeter, greet]
`, "greeter", "caller")
	r := startTemplate(t, path)
	r.WaitOutput(t, "[caller] answer: hello caller, this is greeter\n")
	waitLine(t, r, `^\[caller sidecar\] .*msg="app exited; stopping the sidecar" .*code=0`)
	out := r.Out.String()
	for _, want := range []string{
		"[greeter] serving\n",
		"[greeter] got POST /greet from caller\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^\[mecha\] .*msg="all apps started; Ctrl-C stops them" .*apps="\[greeter caller\]"`).MatchString(out) {
		t.Errorf("no [mecha] line listing the apps")
	}
	for _, app := range []string{"greeter", "caller"} {
		if h, _ := runtest.Ports(out, app); h == "" {
			t.Errorf("no ready line for %s's sidecar", app)
		}
	}
	// The caller is done; the greeter still serves through its sidecar.
	gh, _ := runtest.Ports(out, "greeter")
	resp, err := http.Post("http://127.0.0.1:"+gh+"/v1.0/invoke/greeter/method/greet", "text/plain", strings.NewReader("test"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || r.Done() {
		t.Fatalf("after the caller exited: greeter answered %d, mecha returned: %v", resp.StatusCode, r.Done())
	}

	r.Cancel()
	if err := r.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("mecha run -f = %v, want success\n%s", err, r.Out)
	}
	out = r.Out.String()
	if !strings.Contains(out, "[greeter] got SIGTERM\n") {
		t.Errorf("the greeter did not get SIGTERM")
	}
	checkPrefixes(t, out, "[greeter] ", "[greeter sidecar] ", "[caller] ", "[caller sidecar] ", "[mecha] ")
	if t.Failed() {
		t.Log(out)
	}
}

// TestTemplateOneAppExits: when one app exits, its sidecar stops and the
// others keep running; mecha's exit code is the first non-zero one.
func TestTemplateOneAppExits(t *testing.T) {
	runtest.Setup(t)
	path := template(t, `version: 1
apps:
- {appID: quitter, appDirPath: q, command: [%[1]q, exit, "3"]}
- {appID: stayer, appDirPath: s, command: [%[1]q, wait]}
`, "q", "s")
	r := startTemplate(t, path)
	r.WaitOutput(t, "[stayer] ready\n")
	waitLine(t, r, `^\[quitter sidecar\] .*msg="app exited; stopping the sidecar" .*code=3`)
	waitLine(t, r, `^\[quitter sidecar\] .*msg="sidecar stopped"`)
	sh, _ := runtest.Ports(r.Out.String(), "stayer")
	resp, err := http.Get("http://127.0.0.1:" + sh + "/v1.0/healthz")
	if err != nil {
		t.Fatalf("stayer's sidecar is gone: %v", err)
	}
	resp.Body.Close()
	if r.Done() {
		t.Fatalf("mecha returned although stayer runs:\n%s", r.Out)
	}
	r.Cancel()
	err = r.Wait(t, 20*time.Second)
	wantExitCode(t, err, 3)
	if want := `app "quitter" exited with code 3`; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if !strings.Contains(r.Out.String(), "[stayer] got SIGTERM\n") {
		t.Fatalf("stayer was not stopped by SIGTERM:\n%s", r.Out)
	}
}

// TestTemplateExitsWhenAllAppsExit: nothing to wait for once every app
// exited.
func TestTemplateExitsWhenAllAppsExit(t *testing.T) {
	runtest.Setup(t)
	path := template(t, `version: 1
apps:
- {appID: zero, appDirPath: z, command: [%[1]q, exit, "0"]}
- {appID: five, appDirPath: f, command: [%[1]q, exit, "5"]}
`, "z", "f")
	r := startTemplate(t, path)
	err := r.Wait(t, 30*time.Second)
	wantExitCode(t, err, 5)
	out := r.Out.String()
	for _, want := range []string{"[zero] hello stdout\n", "[five] hello stderr\n", "[five] no newline\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, `msg="all apps exited"`) {
		t.Errorf("no final line:\n%s", out)
	}
}

// TestTemplateCancelStopsEverything is Ctrl-C: every app gets SIGTERM, the
// sidecar without an app stops too, mecha exits 0.
func TestTemplateCancelStopsEverything(t *testing.T) {
	runtest.Setup(t)
	path := template(t, `version: 1
common: {daprdLogDestination: console}
apps:
- {appID: one, appDirPath: a, command: [%[1]q, wait]}
- {appID: two, appDirPath: b, command: [%[1]q, wait]}
- {appID: alone, appDirPath: c}
`, "a", "b", "c")
	r := startTemplate(t, path)
	r.WaitOutput(t, "[one] ready\n")
	r.WaitOutput(t, "[two] ready\n")
	r.WaitOutput(t, `msg="all apps started`)
	if !regexp.MustCompile(`(?m)^\[mecha\] .*msg="no command for this app: only its sidecar runs" .*app=alone`).MatchString(r.Out.String()) {
		t.Errorf("no warning about the app without a command:\n%s", r.Out)
	}
	cancelled := time.Now()
	r.Cancel()
	if err := r.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("mecha run -f = %v, want success\n%s", err, r.Out)
	}
	if el := time.Since(cancelled); el > 5*time.Second {
		t.Errorf("stopping took %v, want well within the 5s grace period", el)
	}
	out := r.Out.String()
	for _, want := range []string{"[one] got SIGTERM\n", "[two] got SIGTERM\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, app := range []string{"one", "two", "alone"} {
		if !regexp.MustCompile(`(?m)^\[` + app + ` sidecar\] .*msg="sidecar stopped"`).MatchString(out) {
			t.Errorf("%s's sidecar did not stop", app)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// TestTemplateEnvironment: each app runs in its appDirPath with the
// sidecar's ports, the template's env (the app's over common's) and
// mecha's variables.
func TestTemplateEnvironment(t *testing.T) {
	runtest.Setup(t)
	path := template(t, `version: 1
common:
  env: {SHARED: common, WHO: common}
apps:
- appID: envy
  appDirPath: dir
  appPort: 9
  env: {WHO: app}
  command: [%[1]q, env, APP_ID, APP_PORT, APP_PROTOCOL, DAPR_HTTP_PORT, DAPR_GRPC_PORT, SHARED, WHO]
`, "dir")
	r := startTemplate(t, path)
	if err := r.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, r.Out)
	}
	out := r.Out.String()
	h, g := runtest.Ports(out, "envy")
	dir := filepath.Join(filepath.Dir(path), "dir")
	for _, want := range []string{
		"[envy] APP_ID=envy\n", "[envy] APP_PORT=9\n", "[envy] APP_PROTOCOL=http\n",
		"[envy] DAPR_HTTP_PORT=" + h + "\n", "[envy] DAPR_GRPC_PORT=" + g + "\n",
		"[envy] SHARED=common\n", "[envy] WHO=app\n", "[envy] PWD=" + dir + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestTemplateLogFiles: file destinations write under <appDirPath>/.dapr/logs
// instead of (file) or besides (fileAndConsole) the console.
func TestTemplateLogFiles(t *testing.T) {
	runtest.Setup(t)
	path := template(t, `version: 1
apps:
- appID: quiet
  appDirPath: q
  appLogDestination: file
  daprdLogDestination: fileAndConsole
  command: [%[1]q, exit, "0"]
`, "q")
	r := startTemplate(t, path)
	if err := r.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, r.Out)
	}
	out := r.Out.String()
	if strings.Contains(out, "hello stdout") {
		t.Errorf("the app's output reached the console:\n%s", out)
	}
	if !strings.Contains(out, "[quiet sidecar] ") {
		t.Errorf("the sidecar's log did not reach the console:\n%s", out)
	}
	logs := filepath.Join(filepath.Dir(path), "q", ".dapr", "logs")
	read := func(glob string) string {
		m, _ := filepath.Glob(filepath.Join(logs, glob))
		if len(m) != 1 {
			t.Fatalf("%s: %d files, want 1", glob, len(m))
		}
		b, err := os.ReadFile(m[0])
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if app := read("quiet_app_*.log"); !strings.Contains(app, "hello stdout\n") || !strings.Contains(app, "hello stderr\n") || strings.Contains(app, "[quiet]") {
		t.Errorf("app log file:\n%s", app)
	}
	if side := read("quiet_sidecar_*.log"); !strings.Contains(side, `msg="Mecha sidecar APIs ready"`) || strings.Contains(side, "[quiet sidecar]") {
		t.Errorf("sidecar log file:\n%s", side)
	}
}

// TestTemplateStartFailure: an app that cannot start stops the ones already
// running, and mecha says which.
func TestTemplateStartFailure(t *testing.T) {
	runtest.Setup(t)
	path := template(t, `version: 1
apps:
- {appID: good, appDirPath: a, command: [%[1]q, wait]}
- {appID: bad, appDirPath: b, command: [./no-such-program]}
`, "a", "b")
	r := startTemplate(t, path)
	err := r.Wait(t, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), `app "bad": starting the app:`) {
		t.Fatalf("mecha run -f = %v, want a start error for bad\n%s", err, r.Out)
	}
	if _, isExit := run.ExitCode(err); isExit {
		t.Fatalf("start error %v reported as an app exit code", err)
	}
	out := r.Out.String()
	if !regexp.MustCompile(`(?m)^\[good sidecar\] .*msg="sidecar stopped"`).MatchString(out) {
		t.Errorf("good's sidecar was not stopped:\n%s", out)
	}
}

func TestTemplateUsageErrors(t *testing.T) {
	runtest.Setup(t)
	valid := template(t, "version: 1\napps:\n- {appDirPath: a, command: [%[1]q, wait]}\n", "a")
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"with a command", []string{"-f", valid, "--", "x"}, `--run-file starts the commands of the template; remove "x"`},
		{"with sidecar flags", []string{"-f", valid, "--app-id", "x", "--dapr-http-port", "1"}, "[--app-id --dapr-http-port] cannot be combined with --run-file"},
		{"missing file", []string{"-f", filepath.Join(t.TempDir(), "nope.yaml")}, "nope.yaml"},
		{"directory without dapr.yaml", []string{"-f", t.TempDir()}, "no dapr.yaml in directory"},
		{"invalid template", []string{"-f", template(t, "version: 1\napps:\n- {appDirPath: missing}\n")}, "invalid run template"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runtest.Execute(t, run.Command(registries), c.args...)
			err := r.Wait(t, 20*time.Second)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("mecha run = %v, want an error containing %q\n%s", err, c.wantErr, r.Out)
			}
			if strings.Contains(r.Out.String(), "sidecar") {
				t.Fatalf("something started:\n%s", r.Out)
			}
		})
	}
}

// TestTemplateDirectory: -f DIR runs DIR/dapr.yaml.
func TestTemplateDirectory(t *testing.T) {
	runtest.Setup(t)
	path := template(t, "version: 1\napps:\n- {appID: d, appDirPath: a, command: [%[1]q, exit, \"0\"]}\n", "a")
	if err := os.Rename(path, filepath.Join(filepath.Dir(path), "dapr.yaml")); err != nil {
		t.Fatal(err)
	}
	r := startTemplate(t, filepath.Dir(path))
	if err := r.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, r.Out)
	}
	if !strings.Contains(r.Out.String(), "[d] hello stdout\n") {
		t.Fatalf("the app did not run:\n%s", r.Out)
	}
}
