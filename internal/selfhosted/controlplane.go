package selfhosted

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The local control plane (`mecha control-plane --local`) runs in the
// background, one per Mecha home, and hosts the embedded NATS JetStream
// broker behind the default "pubsub" component. `mecha init` and `mecha
// run` start it when it is not running (EnsureControlPlane); `mecha stop
// --control-plane` stops it (StopControlPlane). It records where it
// listens in <home>/data/control-plane.json (ControlPlaneState).

// DefaultBrokerPort is the broker's port for a new home: not NATS's 4222,
// which a NATS server of the developer's own may hold, but one next to
// Dapr's 50001 (gRPC) and 50005/50006 (placement, scheduler).
const DefaultBrokerPort = 50007

// ControlPlaneEnv, set to "off", keeps `mecha init` and `mecha run` from
// starting the local control plane (for those who point "pubsub" at a
// server of their own, or want no background process).
const ControlPlaneEnv = "MECHA_CONTROL_PLANE"

// ErrControlPlaneDisabled is returned by EnsureControlPlane when
// ControlPlaneEnv is "off".
var ErrControlPlaneDisabled = errors.New(ControlPlaneEnv + "=off: not starting the local control plane")

// ErrControlPlaneNotRunning is returned when no local control plane of the
// home answers.
var ErrControlPlaneNotRunning = errors.New("the local control plane is not running")

// ControlPlaneState is what the running control plane records in
// ControlPlaneFile, and keeps there (with PID 0) when it stops, so that it
// comes back on the same ports.
type ControlPlaneState struct {
	// PID is the process id; 0 once it has stopped.
	PID int `json:"pid"`
	// Broker is the NATS URL of the embedded broker, nats://127.0.0.1:port.
	Broker string `json:"broker"`
	// Healthz is the host:port of its /healthz endpoint.
	Healthz string `json:"healthz"`
	// Placement is host:port of the actor placement service, what
	// sidecars take as --placement-host-address; "" when it hosts none.
	Placement string `json:"placement,omitempty"`
	// Sentry is host:port of the certificate authority, what sidecars
	// take as --sentry-address; "" when it hosts none.
	Sentry string `json:"sentry,omitempty"`
	// Started is when it started.
	Started time.Time `json:"started"`
}

// BrokerPort is the port of Broker, 0 when there is none.
func (s ControlPlaneState) BrokerPort() int {
	u, err := url.Parse(s.Broker)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// PlacementPort is the port of Placement, 0 when there is none.
func (s ControlPlaneState) PlacementPort() int {
	_, port, err := net.SplitHostPort(s.Placement)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(port)
	return p
}

// DefaultPlacementPort is the placement port of a new home: Dapr's.
const DefaultPlacementPort = 50005

// ControlPlaneFile is <home>/data/control-plane.json.
func (l Layout) ControlPlaneFile() string { return filepath.Join(l.Data, "control-plane.json") }

// ControlPlaneLog is <home>/logs/control-plane.log, where a control plane
// started in the background writes its log.
func (l Layout) ControlPlaneLog() string { return filepath.Join(l.Logs, "control-plane.log") }

// ControlPlaneLock is the file a running control plane holds locked
// (flock) for as long as it runs: a second one for the same home fails to
// take it, and a stopper that can take it knows the process is gone.
func (l Layout) ControlPlaneLock() string { return filepath.Join(l.Data, "control-plane.lock") }

// startLock serialises the starts of EnsureControlPlane calls.
func (l Layout) startLock() string { return filepath.Join(l.Data, "control-plane.start.lock") }

// JetStreamDir is where the broker keeps its streams.
func (l Layout) JetStreamDir() string { return filepath.Join(l.Data, "jetstream") }

// CADir holds the local control plane's certificate authority: ca.crt,
// issuer.crt, issuer.key and the token sidecars present (all 0600).
func (l Layout) CADir() string { return filepath.Join(l.Data, "ca") }

// BrokerURL is where the home's default pubsub component points: the
// broker's URL as last recorded, else the default port.
func BrokerURL(l Layout) string {
	if st, ok, _ := ReadControlPlane(l); ok && st.Broker != "" {
		return st.Broker
	}
	return "nats://127.0.0.1:" + strconv.Itoa(DefaultBrokerPort)
}

// ReadControlPlane reads ControlPlaneFile; ok is false when there is none.
func ReadControlPlane(l Layout) (st ControlPlaneState, ok bool, err error) {
	b, err := os.ReadFile(l.ControlPlaneFile())
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("%s: %w", l.ControlPlaneFile(), err)
	}
	return st, true, nil
}

// WriteControlPlane replaces ControlPlaneFile atomically, so that readers
// never see half of it.
func WriteControlPlane(l Layout, st ControlPlaneState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(l.Data, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(l.Data, ".control-plane-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), l.ControlPlaneFile())
}

// LockFile takes an exclusive flock on path (created if needed) without
// waiting; ok is false when another process holds it. The lock lasts until
// the returned file is closed or the process exits.
func LockFile(path string) (f *os.File, ok bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, err
	}
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, true, nil
}

// lockWait takes the flock on path, polling until ctx ends.
func lockWait(ctx context.Context, path string) (*os.File, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		f, ok, err := LockFile(path)
		if err != nil || ok {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// ControlPlaneStatus returns the state of the home's control plane when it
// runs and answers its health check as the process the state names, else
// ErrControlPlaneNotRunning (wrapping why).
func ControlPlaneStatus(ctx context.Context, l Layout) (ControlPlaneState, error) {
	st, ok, err := ReadControlPlane(l)
	switch {
	case err != nil:
		return st, err
	case !ok || st.PID == 0 || st.Healthz == "":
		return st, ErrControlPlaneNotRunning
	}
	if err := checkHealth(ctx, st); err != nil {
		return st, fmt.Errorf("%w: %v", ErrControlPlaneNotRunning, err)
	}
	return st, nil
}

// health is the part of the control plane's /healthz answer read here.
type health struct {
	Status string            `json:"status"`
	PID    int               `json:"pid"`
	Parts  map[string]string `json:"parts"`
}

// checkHealth asks st's /healthz and checks that the process answering is
// st.PID (a stale file's port may belong to another process by now).
func checkHealth(ctx context.Context, st ControlPlaneState) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.Healthz+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Errorf("/healthz answered %s with no control plane health: %w", resp.Status, err)
	}
	if h.PID != st.PID {
		return fmt.Errorf("%s is served by pid %d, not %d", st.Healthz, h.PID, st.PID)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %v", h.Parts)
	}
	return nil
}

// EnsureOptions tune EnsureControlPlane.
type EnsureOptions struct {
	// Executable is the mecha binary to start as `control-plane --local`
	// (default: this process's executable). A test binary is never used by
	// default: started with those arguments it would run its tests.
	Executable string
	// Timeout bounds the wait for a started control plane to be healthy
	// (default 15s).
	Timeout time.Duration
}

// EnsureControlPlane makes sure the home's control plane runs: it returns
// the state of the one that answers, or starts one in the background (a
// detached `mecha control-plane --local --healthz-port 0`, logging to
// ControlPlaneLog) and waits until it is healthy. started says which.
// Concurrent calls, from any process, start at most one: starts are
// serialised by a file lock, and each start checks again under it.
func EnsureControlPlane(ctx context.Context, l Layout, o EnsureOptions) (st ControlPlaneState, started bool, err error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(ControlPlaneEnv)), "off") {
		return st, false, ErrControlPlaneDisabled
	}
	if st, err := ControlPlaneStatus(ctx, l); err == nil {
		return st, false, nil
	}
	exe := o.Executable
	if exe == "" {
		if testing.Testing() {
			return st, false, errors.New("not starting the local control plane from a test binary: set EnsureOptions.Executable to a mecha binary")
		}
		if exe, err = os.Executable(); err != nil {
			return st, false, fmt.Errorf("finding the mecha binary: %w", err)
		}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	lock, err := lockWait(ctx, l.startLock())
	if err != nil {
		return st, false, err
	}
	defer lock.Close()
	if st, err := ControlPlaneStatus(ctx, l); err == nil {
		return st, false, nil // another caller started it meanwhile
	}

	if err := os.MkdirAll(l.Logs, 0o755); err != nil {
		return st, false, err
	}
	logFile, err := os.OpenFile(l.ControlPlaneLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return st, false, err
	}
	defer logFile.Close()
	logStart, _ := logFile.Seek(0, io.SeekEnd)

	cmd := exec.Command(exe, "control-plane", "--local", "--healthz-port", "0")
	cmd.Env = append(os.Environ(), "MECHA_HOME="+l.Home)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A session of its own: it outlives this process, and a Ctrl-C in this
	// terminal does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return st, false, fmt.Errorf("starting the local control plane: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	// Reaps the child if it exits while this process runs (no zombie); it
	// lives as long as the child or this process, whichever ends first.
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cur, ok, _ := ReadControlPlane(l); ok && cur.PID == pid {
			if err := checkHealth(ctx, cur); err == nil {
				return cur, true, nil
			}
		}
		select {
		case <-exited:
			return st, false, fmt.Errorf("the local control plane exited at start: %s", logTail(l.ControlPlaneLog(), logStart))
		case <-ctx.Done():
			// Not ours to keep: stop the half-started process (by the pid
			// we started).
			_ = syscall.Kill(pid, syscall.SIGTERM)
			return st, false, fmt.Errorf("the local control plane (pid %d) was not healthy within %v: %s", pid, timeout, logTail(l.ControlPlaneLog(), logStart))
		case <-tick.C:
		}
	}
}

// logTail returns the last lines the log got after offset, for errors.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return "see " + path
	}
	b = bytes.TrimSpace(b[offset:])
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return fmt.Sprintf("%s (log: %s)", bytes.Join(lines, []byte(" | ")), path)
}

// StopControlPlane stops the home's control plane: SIGTERM to the process
// its state names, once /healthz has confirmed that pid, then a wait until
// the process has let go of ControlPlaneLock (it is gone) or ctx ends. It
// returns the state of the stopped process, or ErrControlPlaneNotRunning.
func StopControlPlane(ctx context.Context, l Layout) (ControlPlaneState, error) {
	st, err := ControlPlaneStatus(ctx, l)
	if err != nil {
		return st, err
	}
	if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
		return st, fmt.Errorf("stopping the local control plane (pid %d): %w", st.PID, err)
	}
	lock, err := lockWait(ctx, l.ControlPlaneLock())
	if err != nil {
		return st, fmt.Errorf("the local control plane (pid %d) did not stop: %w", st.PID, err)
	}
	lock.Close()
	return st, nil
}

// FreePort reports whether 127.0.0.1:port can be listened on now.
func FreePort(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
