package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sidecarProc is a `mecha sidecar` child process started by bench.
type sidecarProc struct {
	name     string
	cmd      *exec.Cmd
	logPath  string
	logFile  *os.File
	httpAddr string
	grpcAddr string
	// internalAddr is the sidecar-to-sidecar port when bench chose it.
	internalAddr string
	// pprofAddr serves CPU profiles when the process was started with
	// pprofEnv.
	pprofAddr string
	started   time.Time
	// exited is closed once the process has been waited for; waitErr is
	// then its exit status.
	exited  chan struct{}
	waitErr error
}

// sidecarSpec says what to start.
type sidecarSpec struct {
	// Name labels the process in errors and names its log file.
	Name string
	// Binary is the mecha executable.
	Binary string
	// AppID is the sidecar's --app-id (the state key prefix).
	AppID string
	// ResourcesDir is passed as --resources-path.
	ResourcesDir string
	// LogDir receives the sidecar's output (<Name>.log).
	LogDir string
	// Env is the process's environment (nil: this process's).
	Env []string
	// Internal passes a free --dapr-internal-grpc-port.
	Internal bool
	// Args are more flags (e.g. --app-port).
	Args []string
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are free
// when this returns; the caller races other programs for them, which is
// fine for a benchmark on a quiet machine.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startSidecar execs `mecha sidecar` on free loopback ports and returns at
// once; waitHealthy waits for it. The caller must call Stop.
func startSidecar(spec sidecarSpec) (*sidecarProc, error) {
	n := 2
	if spec.Internal {
		n = 3
	}
	ports, err := freePorts(n)
	if err != nil {
		return nil, fmt.Errorf("picking ports: %w", err)
	}
	cmd := exec.Command(spec.Binary, "sidecar",
		"--app-id", spec.AppID,
		"--dapr-http-port", strconv.Itoa(ports[0]),
		"--dapr-grpc-port", strconv.Itoa(ports[1]),
		"--dapr-listen-addresses", "127.0.0.1",
		"--resources-path", spec.ResourcesDir,
		"--log-level", "warn",
		"--dapr-graceful-shutdown-seconds", "2",
		// Metrics stay on, as in daprd's default, on a port of their own.
		"--metrics-port", "0",
	)
	if spec.Internal {
		cmd.Args = append(cmd.Args, "--dapr-internal-grpc-port", strconv.Itoa(ports[2]))
	}
	cmd.Args = append(cmd.Args, spec.Args...)
	p, err := spawn(spec.Name, cmd, spec.LogDir, spec.Env, nil)
	if err != nil {
		return nil, err
	}
	p.httpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	p.grpcAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	if spec.Internal {
		p.internalAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	}
	return p, nil
}

// PID is the child's process id.
func (p *sidecarProc) PID() int { return p.cmd.Process.Pid }

// waitHealthy polls GET /v1.0/healthz every interval until it answers 204
// and returns the time since exec. It fails early when the process exits.
func (p *sidecarProc) waitHealthy(ctx context.Context, interval, timeout time.Duration) (time.Duration, error) {
	return p.waitStatus(ctx, "/v1.0/healthz", http.StatusNoContent, interval, timeout)
}

// waitStatus polls GET path on the process's HTTP address every interval
// until it answers status and returns the time since exec. It fails early
// when the process exits.
func (p *sidecarProc) waitStatus(ctx context.Context, path string, status int, interval, timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	defer client.CloseIdleConnections()
	url := "http://" + p.httpAddr + path
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return time.Since(p.started), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-p.exited:
			return 0, fmt.Errorf("%s (pid %d) exited before it was healthy (%v): %s", p.name, p.PID(), p.waitErr, p.logTail())
		case <-deadline.C:
			return 0, fmt.Errorf("%s not healthy after %v: %s", p.name, timeout, p.logTail())
		case <-tick.C:
		}
	}
}

// Stop ends the process by its PID: SIGTERM, then SIGKILL after 10s. It is
// safe to call more than once.
func (p *sidecarProc) Stop() error {
	defer p.logFile.Close()
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("sidecar %s (pid %d) ignored SIGTERM for 10s and was killed", p.name, p.PID())
}

// logTail is the end of the process's output, for error messages.
func (p *sidecarProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log)"
	}
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if len(b) == 0 {
		return "(empty log)"
	}
	return string(b)
}

// procCPUSeconds is the user+system CPU time of process pid, from
// /proc/PID/stat (Linux only; ok is false elsewhere).
func procCPUSeconds(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	return parseStatCPU(string(b))
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; it is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// parseStatCPU reads utime+stime from a /proc/PID/stat line. The command
// name may contain spaces and parentheses, so fields are counted after the
// last ')'.
func parseStatCPU(stat string) (float64, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return float64(u+s) / clockTicks, true
}

// machineBusySeconds is the CPU time all CPUs spent busy (everything but
// idle and iowait) since boot, from /proc/stat (Linux only).
func machineBusySeconds() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	return parseProcStatBusy(string(b))
}

// parseProcStatBusy reads the "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal ...; busy is the sum minus idle and iowait.
func parseProcStatBusy(stat string) (float64, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var busy uint64
	for i, v := range f[1:8] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, false
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return float64(busy) / clockTicks, true
}

// procRSSMB is the resident set size of pid in MB (VmRSS from
// /proc/PID/status; Linux only).
func procRSSMB(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	return parseVmRSS(string(b))
}

// parseVmRSS reads "VmRSS:   12345 kB" and returns megabytes (10^6 bytes).
func parseVmRSS(status string) (float64, bool) {
	for line := range strings.SplitSeq(status, "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		return float64(kb) * 1024 / 1e6, true
	}
	return 0, false
}

// processLooksLike reports whether /proc/PID/comm contains name.
func processLooksLike(pid int, name string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && strings.Contains(string(b), name)
}

// loadAvg is the first line of /proc/loadavg, or "" when unavailable.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
