package stop_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/nameresolution"
	nrsqlite "github.com/mecha-dev/mecha/components/nameresolution/sqlite"
	"github.com/mecha-dev/mecha/internal/cli/list"
	"github.com/mecha-dev/mecha/internal/cli/run"
	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
	"github.com/mecha-dev/mecha/internal/cli/stop"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// cliEnv makes the test binary act as the mecha CLI (`mecha run ...`), so
// that a test can stop a mecha that is a process of its own.
const cliEnv = "MECHA_STOP_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "run" {
		cmd := run.Command(registries)
		cmd.SetArgs(os.Args[2:])
		cmd.SilenceUsage = true
		err := cmd.Execute()
		if code, ok := run.ExitCode(err); ok {
			os.Exit(code)
		}
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	runtest.Main(m)
}

func registries() *kinds.Registries {
	r := kinds.New()
	all.Register(r)
	return r
}

func stopCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	r := runtest.Execute(t, stop.Command(), args...)
	err := r.Wait(t, 30*time.Second)
	return r.Out.String(), err
}

// registered waits until app id has a registry entry with its app pid.
func registered(t *testing.T, id string) nameresolution.Instance {
	t.Helper()
	var found nameresolution.Instance
	runtest.Eventually(t, 20*time.Second, func() error {
		ins, err := list.Instances(context.Background())
		if err != nil {
			return err
		}
		for _, in := range list.ByAppID(ins, id) {
			if in.AppPID != 0 {
				found = in
				return nil
			}
		}
		return fmt.Errorf("%s is not registered with its app pid", id)
	})
	return found
}

func gone(t *testing.T, id string) {
	t.Helper()
	ins, err := list.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := list.ByAppID(ins, id); len(got) != 0 {
		t.Fatalf("%s is still registered: %+v", id, got)
	}
}

// TestStopsInProcessRun: mecha stop --app-id stops a `mecha run` through
// the sidecar's shutdown API; the app gets SIGTERM and mecha run returns.
func TestStopsInProcessRun(t *testing.T) {
	runtest.Setup(t)
	r := runtest.Execute(t, run.Command(registries), "--app-id", "inproc", "--", runtest.Self(t), "wait")
	r.WaitOutput(t, "[inproc] ready\n")
	registered(t, "inproc")
	out, err := stopCmd(t, "--app-id", "inproc")
	if err != nil || out != "app stopped: inproc\n" {
		t.Fatalf("mecha stop = %q, %v", out, err)
	}
	if err := r.Wait(t, 5*time.Second); err != nil {
		t.Fatalf("mecha run = %v\n%s", err, r.Out)
	}
	for _, want := range []string{`msg="shutdown requested through the API"`, "[inproc] got SIGTERM\n"} {
		if !strings.Contains(r.Out.String(), want) {
			t.Errorf("mecha run output lacks %q:\n%s", want, r.Out)
		}
	}
	gone(t, "inproc")
}

// TestStopsOneAppOfATemplate: in a multi-app run, stopping one app leaves
// the others running; stop -f stops the rest.
func TestStopsOneAppOfATemplate(t *testing.T) {
	runtest.Setup(t)
	root := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(root, "dapr.yaml")
	self := strconv.Quote(runtest.Self(t))
	if err := os.WriteFile(path, []byte("version: 1\napps:\n- {appID: ta, appDirPath: a, command: ["+self+", wait]}\n- {appID: tb, appDirPath: b, command: ["+self+", wait]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runtest.Execute(t, run.Command(registries), "-f", path)
	r.WaitOutput(t, "[ta] ready\n")
	r.WaitOutput(t, "[tb] ready\n")
	registered(t, "ta")
	registered(t, "tb")

	if out, err := stopCmd(t, "ta"); err != nil || out != "app stopped: ta\n" {
		t.Fatalf("mecha stop ta = %q, %v", out, err)
	}
	gone(t, "ta")
	if r.Done() || strings.Contains(r.Out.String(), "[tb] got SIGTERM") {
		t.Fatalf("stopping ta stopped tb too:\n%s", r.Out)
	}
	registered(t, "tb")

	out, err := stopCmd(t, "-f", root)
	if err != nil || out != "ta is not running\napp stopped: tb\n" {
		t.Fatalf("mecha stop -f = %q, %v", out, err)
	}
	if err := r.Wait(t, 5*time.Second); err != nil {
		t.Fatalf("mecha run -f = %v\n%s", err, r.Out)
	}
	// Nothing of the template runs any more.
	if _, err := stopCmd(t, "-f", root); err == nil || !strings.Contains(err.Error(), "none of the apps of "+path+" is running") {
		t.Fatalf("mecha stop -f with nothing running = %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	runtest.Setup(t)
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown app", []string{"--app-id", "nobody"}, `no running app with id "nobody" (see mecha list)`},
		{"nothing named", nil, "name the apps to stop"},
		{"bad timeout", []string{"x", "--timeout", "0"}, "--timeout 0 must be positive"},
		{"bad template", []string{"-f", filepath.Join(t.TempDir(), "none.yaml")}, "none.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := stopCmd(t, c.args...); err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("mecha stop = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

// mechaProcess runs `mecha run ARGS...` as a child process: this test
// binary behind a symlink named mecha, as the built binary would be.
type mechaProcess struct {
	cmd    *exec.Cmd
	out    *runtest.Buffer
	exited chan error
}

func startMecha(t *testing.T, args ...string) *mechaProcess {
	t.Helper()
	link := filepath.Join(t.TempDir(), "mecha")
	if err := os.Symlink(runtest.Self(t), link); err != nil {
		t.Fatal(err)
	}
	p := &mechaProcess{cmd: exec.Command(link, append([]string{"run"}, args...)...), out: &runtest.Buffer{}, exited: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), cliEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-p.exited:
			p.exited <- err
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// waitOutput waits until the process printed s.
func (p *mechaProcess) waitOutput(t *testing.T, s string) {
	t.Helper()
	runtest.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(p.out.String(), s) {
			return fmt.Errorf("no %q in:\n%s", s, p.out)
		}
		return nil
	})
}

func (p *mechaProcess) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("mecha (pid %d) still running:\n%s", p.cmd.Process.Pid, p.out)
		return nil
	}
}

// TestStopsMechaProcess: the process of a `mecha run` exits after mecha
// stop, and its entry is gone.
func TestStopsMechaProcess(t *testing.T) {
	runtest.Setup(t)
	p := startMecha(t, "--app-id", "child", "--", runtest.Self(t), "wait")
	p.waitOutput(t, "[child] ready\n") // it handles SIGTERM from now on
	in := registered(t, "child")
	if in.PID != p.cmd.Process.Pid {
		t.Fatalf("registered pid %d, want the mecha process %d", in.PID, p.cmd.Process.Pid)
	}
	if out, err := stopCmd(t, "--app-id", "child"); err != nil || out != "app stopped: child\n" {
		t.Fatalf("mecha stop = %q, %v", out, err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("mecha run exited with %v, want 0\n%s", err, p.out)
	}
	if !strings.Contains(p.out.String(), "[child] got SIGTERM\n") {
		t.Fatalf("the app did not get SIGTERM:\n%s", p.out)
	}
	gone(t, "child")
}

// TestFallsBackToSIGTERM: when the sidecar's HTTP API is not reachable on
// 127.0.0.1, mecha stop signals the recorded mecha process instead.
func TestFallsBackToSIGTERM(t *testing.T) {
	runtest.Setup(t)
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	}
	l.Close()
	p := startMecha(t, "--app-id", "hidden", "--dapr-listen-addresses", "127.0.0.2", "--", runtest.Self(t), "wait")
	p.waitOutput(t, "[hidden] ready\n")
	registered(t, "hidden")
	r := runtest.Execute(t, stop.Command(), "--app-id", "hidden")
	if err := r.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("mecha stop = %v\n%s", err, r.Out)
	}
	if want := fmt.Sprintf("sending SIGTERM to pid %d", p.cmd.Process.Pid); !strings.Contains(r.Out.String(), want) {
		t.Errorf("mecha stop output lacks %q:\n%s", want, r.Out)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("mecha run exited with %v, want 0 (SIGTERM stops it gracefully)\n%s", err, p.out)
	}
	gone(t, "hidden")
}

// TestNeverSignalsOtherProcesses: an entry whose HTTP API is dead and whose
// pid is not a mecha (reused pid) or is mecha stop itself is left alone.
func TestNeverSignalsOtherProcesses(t *testing.T) {
	runtest.Setup(t)
	other := exec.Command(runtest.Self(t), "wait")
	out := &runtest.Buffer{}
	other.Stdout = out
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- other.Wait() }()
	t.Cleanup(func() {
		other.Process.Kill()
		<-exited
	})

	file, _ := selfhosted.RegistryFile()
	dead := runtest.FreePort(t) // nothing listens there
	for _, c := range []struct {
		id      string
		pid     int
		wantErr string
	}{
		{"reused", other.Process.Pid, fmt.Sprintf("pid %d is %q, not a mecha run or mecha sidecar", other.Process.Pid, runtest.Self(t)+" wait")},
		{"myself", os.Getpid(), fmt.Sprintf("refusing to signal pid %d: it is this mecha stop", os.Getpid())},
	} {
		t.Run(c.id, func(t *testing.T) {
			res := nrsqlite.New(components.Deps{})
			if err := res.Init(context.Background(), components.Metadata{Properties: map[string]string{"connectionString": file}}); err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if err := res.Register(context.Background(), nameresolution.Instance{InstanceID: c.id, AppID: c.id, Address: "127.0.0.1:1", HTTPPort: dead, PID: c.pid}); err != nil {
				t.Fatal(err)
			}
			_, err := stopCmd(t, c.id)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("mecha stop = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("the other process exited: %v\n%s", err, out)
	default:
	}
}

// TestTimeout: an app that does not leave the registry in time is an
// error naming it.
func TestTimeout(t *testing.T) {
	runtest.Setup(t)
	var shutdowns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1.0/shutdown" {
			shutdowns.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	var polls int
	s := &stop.Stopper{
		Out: &runtest.Buffer{}, Err: &runtest.Buffer{}, Timeout: 300 * time.Millisecond,
		Instances: func(context.Context) ([]nameresolution.Instance, error) {
			polls++
			// A sidecar whose shutdown API answers but that never leaves.
			return []nameresolution.Instance{{InstanceID: "i", AppID: "stuck", HTTPPort: port}}, nil
		},
	}
	err := s.Stop(context.Background(), []string{"stuck"}, "")
	if err == nil || !strings.Contains(err.Error(), "[stuck] still running after 300ms") {
		t.Fatalf("Stop = %v", err)
	}
	if polls < 2 || shutdowns.Load() != 1 {
		t.Fatalf("polled the registry %d times, asked to shut down %d times; want >= 2 and 1", polls, shutdowns.Load())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("raw context error leaked: %v", err)
	}
}
