// Package run is `mecha run`: it starts a sidecar in-process and the app as
// a child process, hands the app the sidecar's ports through the environment
// Dapr SDKs read, interleaves both logs with prefixes, forwards signals, and
// exits with the app's exit code. With no --resources-path it uses the
// self-hosted defaults in ~/.mecha (created on first use).
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// exitError carries the app's exit code out of the command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("app exited with code %d", e.code) }

// ExitCode reports the process exit code an error from Command asks for.
func ExitCode(err error) (int, bool) {
	var e exitError
	if errors.As(err, &e) {
		return e.code, true
	}
	return 0, false
}

// Command returns `mecha run`.
func Command(regs func() *kinds.Registries) *cobra.Command {
	f := &sidecar.Flags{}
	cmd := &cobra.Command{
		Use:   "run --app-id ID [--app-port PORT] [flags] [-- COMMAND ARGS...]",
		Short: "Run an app with a Mecha sidecar beside it",
		Long: `Start a Mecha sidecar and, after "--", the app's command. The app gets
DAPR_HTTP_PORT, DAPR_GRPC_PORT and APP_ID in its environment, so Dapr SDKs find
the sidecar. Both logs are printed with prefixes. Ctrl-C stops both; when the
app exits the sidecar stops and mecha exits with the app's code.

Without --resources-path the defaults in ~/.mecha/components are used (an
embedded SQLite state store named "statestore"): no Docker, no servers.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runApp(cmd, f, regs(), args)
		},
	}
	f.AddFlags(cmd.Flags())
	// Unlike daprd, pick free ports unless asked: several apps can run at once.
	cmd.Flags().Lookup("dapr-http-port").DefValue = "0"
	cmd.Flags().Lookup("dapr-grpc-port").DefValue = "0"
	f.HTTPPort, f.GRPCPort = 0, 0
	cmd.Flags().SortFlags = false
	return cmd
}

func runApp(cmd *cobra.Command, f *sidecar.Flags, regs *kinds.Registries, args []string) error {
	stdout := cmd.OutOrStdout()
	var outMu sync.Mutex
	color := isTerminal(stdout)
	sideW := newLineWriter(&outMu, stdout, paint(color, "36", fmt.Sprintf("[%s sidecar] ", f.AppID)))
	appW := newLineWriter(&outMu, stdout, paint(color, "32", fmt.Sprintf("[%s] ", f.AppID)))
	defer sideW.Flush()
	defer appW.Flush()

	logger, err := logging.New(logging.Options{Level: f.LogLevel, JSON: f.LogAsJSON, Scope: "mecha.runtime", Output: sideW})
	if err != nil {
		return err
	}
	if len(f.ResourcesPaths) == 0 && len(f.ComponentsPaths) == 0 {
		home, err := selfhosted.Home()
		if err != nil {
			return err
		}
		l := selfhosted.LayoutAt(home)
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
	}
	opts, err := f.Options(logger, regs)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		opts.AppCommand = strings.Join(args, " ")
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rt, err := runtime.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())

	if len(args) == 0 {
		select {
		case <-ctx.Done():
		case <-rt.ShutdownRequested():
		}
		return nil
	}

	app := exec.Command(args[0], args[1:]...)
	app.Stdin = os.Stdin
	app.Stdout, app.Stderr = appW, appW
	app.Env = append(os.Environ(),
		"APP_ID="+f.AppID,
		"DAPR_HTTP_PORT="+port(rt.HTTPAddr()),
		"DAPR_GRPC_PORT="+port(rt.GRPCAddr()),
	)
	if f.AppPort != 0 {
		app.Env = append(app.Env, "APP_PORT="+strconv.Itoa(f.AppPort), "APP_PROTOCOL="+f.AppProtocol)
	}
	// Own process group, so a terminal's Ctrl-C reaches the app once, via us.
	app.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := app.Start(); err != nil {
		return fmt.Errorf("starting the app: %w", err)
	}
	logger.Info("app started", "pid", app.Process.Pid, "command", args)
	rt.SetAppProcess(ctx, app.Process.Pid, opts.AppCommand)
	exited := make(chan error, 1)
	go func() { exited <- app.Wait() }()

	var waitErr error
	select {
	case waitErr = <-exited:
		logger.Info("app exited; stopping the sidecar")
	case <-ctx.Done():
		waitErr = stopApp(app, exited, opts.GracefulShutdown, logger.Info)
	case <-rt.ShutdownRequested():
		waitErr = stopApp(app, exited, opts.GracefulShutdown, logger.Info)
	}
	appW.Flush()
	if cerr := rt.Close(context.Background()); cerr != nil {
		logger.Error("closing the sidecar", "error", cerr)
	}
	if code := exitCodeOf(waitErr); code != 0 {
		return exitError{code}
	}
	return nil
}

// stopApp sends SIGTERM to the app's process group, waits up to grace, then
// kills it.
func stopApp(app *exec.Cmd, exited <-chan error, grace time.Duration, logf func(string, ...any)) error {
	logf("stopping the app", "pid", app.Process.Pid)
	_ = syscall.Kill(-app.Process.Pid, syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(grace):
		logf("app did not stop in time; killing it", "grace", grace)
		_ = syscall.Kill(-app.Process.Pid, syscall.SIGKILL)
		return <-exited
	}
}

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

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}

func paint(on bool, code, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
