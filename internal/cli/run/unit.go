package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// unitSpec is one app and its sidecar: what `mecha run` starts once, and
// `mecha run -f` once per app of the template.
type unitSpec struct {
	flags *sidecar.Flags
	// command is the app's; empty runs the sidecar alone.
	command []string
	dir     string    // the app's working directory ("" = ours)
	env     []string  // KEY=value added after the variables mecha sets
	stdin   io.Reader // nil = no input
	// appOut receives the app's stdout and stderr, sideOut the sidecar's
	// logs; flushApp (optional) ends a partial last line of the app's.
	appOut, sideOut io.Writer
	flushApp        func()
}

// unit is a started sidecar and, when it has a command, its app.
type unit struct {
	id     string
	log    *slog.Logger
	rt     *runtime.Runtime
	grace  time.Duration
	app    *exec.Cmd
	exited chan error // the app's Wait result; nil without an app
	flush  func()
}

// startUnit starts the sidecar (in-process) and then the app, which gets
// the sidecar's ports in DAPR_HTTP_PORT and DAPR_GRPC_PORT. On error
// nothing is left running.
func startUnit(ctx context.Context, s unitSpec, regs *kinds.Registries) (*unit, error) {
	f := s.flags
	logger, err := logging.New(logging.Options{Level: f.LogLevel, JSON: f.LogAsJSON, Scope: "mecha.runtime", Output: s.sideOut})
	if err != nil {
		return nil, err
	}
	if err := useDefaults(ctx, f, logger); err != nil {
		return nil, err
	}
	opts, err := f.Options(logger, regs)
	if err != nil {
		return nil, err
	}
	if len(s.command) > 0 {
		opts.AppCommand = strings.Join(s.command, " ")
	}
	rt, err := runtime.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	u := &unit{id: f.AppID, log: logger, rt: rt, grace: opts.GracefulShutdown, flush: s.flushApp}
	if len(s.command) == 0 {
		return u, nil
	}
	app := exec.Command(s.command[0], s.command[1:]...)
	app.Dir = s.dir
	app.Stdin = s.stdin
	app.Stdout, app.Stderr = s.appOut, s.appOut
	app.Env = append(os.Environ(),
		"APP_ID="+f.AppID,
		"DAPR_HTTP_PORT="+port(rt.HTTPAddr()),
		"DAPR_GRPC_PORT="+port(rt.GRPCAddr()),
	)
	if addr := rt.MetricsAddr(); addr != "" {
		app.Env = append(app.Env, "DAPR_METRICS_PORT="+port(addr)) // as the dapr CLI
	}
	if f.AppPort != 0 {
		app.Env = append(app.Env, "APP_PORT="+strconv.Itoa(f.AppPort), "APP_PROTOCOL="+f.AppProtocol)
	}
	app.Env = append(app.Env, s.env...)
	// Own process group, so a terminal's Ctrl-C reaches the app once, via us.
	app.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := app.Start(); err != nil {
		if cerr := rt.Close(context.Background()); cerr != nil {
			logger.Error("closing the sidecar", "error", cerr)
		}
		return nil, fmt.Errorf("starting the app: %w", err)
	}
	logger.Info("app started", "pid", app.Process.Pid, "command", s.command)
	rt.SetAppProcess(ctx, app.Process.Pid, opts.AppCommand)
	u.app = app
	u.exited = make(chan error, 1)
	go func() { u.exited <- app.Wait() }()
	return u, nil
}

// useDefaults points a sidecar without --resources-path at the self-hosted
// defaults in ~/.mecha, creating them on first use, and starts the local
// control plane (the broker behind the default "pubsub") when it is not
// running; without it the sidecar still runs, and only "pubsub" fails.
func useDefaults(ctx context.Context, f *sidecar.Flags, logger *slog.Logger) error {
	if len(f.ResourcesPaths) > 0 || len(f.ComponentsPaths) > 0 {
		return nil
	}
	home, err := selfhosted.Home()
	if err != nil {
		return err
	}
	l := selfhosted.LayoutAt(home)
	cp, started, err := selfhosted.EnsureControlPlane(ctx, l, selfhosted.EnsureOptions{})
	switch {
	case errors.Is(err, selfhosted.ErrControlPlaneDisabled):
		logger.Debug("not starting the local control plane", "reason", err)
	case err != nil:
		logger.Warn("the local control plane is not running: the default pubsub component and actors will not work", "error", err)
	case started:
		logger.Info("started the local control plane in the background", "pid", cp.PID, "broker", cp.Broker, "placement", cp.Placement, "log", l.ControlPlaneLog())
	}
	// Actors use the local control plane's placement service unless the
	// command line names one.
	if err == nil && f.PlacementHostAddress == "" && cp.Placement != "" {
		f.PlacementHostAddress = cp.Placement
	}
	// Sidecars of a home with a control plane talk to each other over
	// mTLS by default, with certificates from its CA (--enable-mtls=false
	// or Configuration spec.mtls.enabled: false turns it off).
	if err == nil && f.Security.SentryAddress == "" && cp.Sentry != "" {
		f.Security.SentryAddress = cp.Sentry
	}
	files, err := selfhosted.EnsureDefaults(l)
	if err != nil {
		return fmt.Errorf("preparing %s: %w", l.Home, err)
	}
	for _, file := range files {
		if file.Created {
			logger.Info("created default resource", "file", file.Path, "what", file.What)
		}
	}
	f.ResourcesPaths = []string{l.Components}
	if f.DataDir == "" {
		f.DataDir = l.Data
	}
	return nil
}

// wait runs the unit until its app exits, ctx ends, or shutdown is
// requested through the sidecar's API (`mecha stop`); it then stops the app
// (SIGTERM to its process group, SIGKILL after the grace period) and the
// sidecar, and returns the app's exit code (0 without an app).
func (u *unit) wait(ctx context.Context) int {
	var waitErr error
	switch {
	case u.app == nil:
		select {
		case <-ctx.Done():
		case <-u.rt.ShutdownRequested():
		}
	default:
		select {
		case waitErr = <-u.exited:
			u.log.Info("app exited; stopping the sidecar", "code", exitCodeOf(waitErr))
		case <-ctx.Done():
			waitErr = u.stopApp()
		case <-u.rt.ShutdownRequested():
			waitErr = u.stopApp()
		}
		if u.flush != nil {
			u.flush() // the app's output is complete once Wait returned
		}
	}
	if err := u.rt.Close(context.Background()); err != nil {
		u.log.Error("closing the sidecar", "error", err)
	}
	return exitCodeOf(waitErr)
}

// stopApp sends SIGTERM to the app's process group, waits up to the grace
// period, then kills it.
func (u *unit) stopApp() error {
	pid := u.app.Process.Pid
	u.log.Info("stopping the app", "pid", pid)
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(u.grace)
	defer t.Stop()
	select {
	case err := <-u.exited:
		return err
	case <-t.C:
		u.log.Info("app did not stop in time; killing it", "grace", u.grace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return <-u.exited
	}
}

// exitCodeOf is the shell's view of a Wait error: the exit code, or 128+N
// for a process killed by signal N.
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
