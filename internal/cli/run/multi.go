package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/run/runfile"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/logging"
)

// runTemplate is `mecha run -f`: every app of the template with its
// sidecar, started in template order, then waited for together.
func runTemplate(cmd *cobra.Command, path string, logJSON bool, regs *kinds.Registries) error {
	tpl, err := runfile.Load(path)
	if err != nil {
		return err
	}
	con := newConsole(cmd.OutOrStdout())
	mw := con.writer("[mecha] ")
	defer mw.Flush()
	rlog, err := logging.New(logging.Options{JSON: logJSON, Scope: "mecha.run", Output: mw})
	if err != nil {
		return err
	}
	for _, w := range tpl.Warnings {
		rlog.Warn(w, "template", tpl.Path)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// runCtx also ends when starting one app fails, stopping the others.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var units []*unit
	var files []io.Closer
	defer func() {
		for _, c := range files {
			c.Close()
		}
	}()
	for i, a := range tpl.Apps {
		spec, opened, err := templateUnit(a, i, con, logJSON, rlog)
		files = append(files, opened...)
		var u *unit
		if err == nil {
			u, err = startUnit(runCtx, spec, regs)
		}
		if err != nil {
			rlog.Error("could not start the app; stopping the others", "app", a.AppID, "error", err)
			cancel()
			waitAll(runCtx, units)
			return fmt.Errorf("app %q: %w", a.AppID, err)
		}
		units = append(units, u)
	}
	ids := make([]string, len(units))
	for i, u := range units {
		ids[i] = u.id
	}
	rlog.Info("all apps started; Ctrl-C stops them", "apps", ids, "template", tpl.Path)
	code, app := waitAll(runCtx, units)
	rlog.Info("all apps exited")
	if code != 0 {
		return exitError{code: code, app: app}
	}
	return nil
}

// waitAll runs every unit until it ends and returns the first non-zero exit
// code, in the order the apps exited, with its app id.
func waitAll(ctx context.Context, units []*unit) (int, string) {
	var mu sync.Mutex
	first, app := 0, ""
	var wg sync.WaitGroup
	for _, u := range units {
		wg.Go(func() {
			code := u.wait(ctx)
			mu.Lock()
			defer mu.Unlock()
			if code != 0 && first == 0 {
				first, app = code, u.id
			}
		})
	}
	wg.Wait()
	return first, app
}

// templateUnit turns a template app into the unit to start: its sidecar
// flags, command, environment, and where its output and logs go. It returns
// the log files it opened (to close at the end) even on error.
func templateUnit(a runfile.App, index int, con *console, logJSON bool, rlog *slog.Logger) (unitSpec, []io.Closer, error) {
	f := templateFlags(a, logJSON)
	if len(a.NoEffect) > 0 {
		rlog.Warn("template fields accepted for dapr compatibility but without effect yet", "app", a.AppID, "fields", a.NoEffect)
	}
	if len(a.Command) == 0 {
		rlog.Warn("no command for this app: only its sidecar runs", "app", a.AppID)
	}
	appW, sideW := con.pair(a.AppID, index)
	s := unitSpec{flags: f, command: a.Command, dir: a.Dir, appOut: appW, sideOut: sideW, flushApp: appW.Flush}
	keys := make([]string, 0, len(a.Env))
	for k := range a.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s.env = append(s.env, k+"="+a.Env[k])
	}
	var opened []io.Closer
	open := func(kind string) (*os.File, error) {
		dir := a.LogDir()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("log directory: %w", err)
		}
		name := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.log", a.AppID, kind, time.Now().Format("20060102150405")))
		file, err := os.Create(name)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		opened = append(opened, file)
		rlog.Info("writing logs to a file", "app", a.AppID, "of", kind, "file", name)
		return file, nil
	}
	if len(a.Command) > 0 && a.AppLogDestination != runfile.Console {
		file, err := open("app")
		if err != nil {
			return s, opened, err
		}
		s.appOut, s.flushApp = destination(a.AppLogDestination, file, appW), appW.Flush
	}
	if a.SidecarLogDestination != runfile.Console {
		file, err := open("sidecar")
		if err != nil {
			return s, opened, err
		}
		s.sideOut = destination(a.SidecarLogDestination, file, sideW)
	}
	return s, opened, nil
}

// destination is the writer for a log destination other than console: the
// file alone, or the file and the prefixed console.
func destination(dest string, file io.Writer, console io.Writer) io.Writer {
	if dest == runfile.FileAndConsole {
		return io.MultiWriter(file, console)
	}
	return file
}

// templateFlags are the sidecar flags of a template app: mecha run's
// defaults, overridden by what the template sets.
func templateFlags(a runfile.App, logJSON bool) *sidecar.Flags {
	f := &sidecar.Flags{}
	f.AddFlags(pflag.NewFlagSet(a.AppID, pflag.ContinueOnError))
	f.AppID = a.AppID
	f.AppPort = a.AppPort
	f.HTTPPort, f.GRPCPort, f.InternalGRPCPort = a.HTTPPort, a.GRPCPort, a.InternalGRPCPort
	// A free metrics port per sidecar unless the template names one, as the
	// dapr CLI does: several sidecars cannot share daprd's 9090.
	f.MetricsPort = a.MetricsPort
	if a.AppProtocol != "" {
		f.AppProtocol = a.AppProtocol
	}
	if a.AppChannelAddress != "" {
		f.AppChannelAddress = a.AppChannelAddress
	}
	if a.AppMaxConcurrency > 0 { // the dapr CLI reads < 1 as unlimited
		f.AppMaxConcurrency = a.AppMaxConcurrency
	}
	if a.ListenAddresses != "" {
		f.ListenAddresses = a.ListenAddresses
	}
	f.ResourcesPaths = a.ResourcesPaths
	if a.ConfigFile != "" {
		f.Config = []string{a.ConfigFile}
	}
	if a.LogLevel != "" {
		f.LogLevel = a.LogLevel
	}
	f.LogAsJSON = logJSON
	f.EnableAPILogging = a.EnableAPILogging
	if a.MaxRequestSizeMB > 0 {
		f.MaxRequestSizeMB = a.MaxRequestSizeMB
	}
	f.MaxBodySize = a.MaxBodySize
	f.EnableAppHealthCheck = a.EnableAppHealthCheck
	if a.AppHealthCheckPath != "" {
		f.AppHealthCheckPath = a.AppHealthCheckPath
	}
	if a.AppHealthProbeInterval > 0 {
		f.AppHealthProbeInterval = a.AppHealthProbeInterval
	}
	if a.AppHealthProbeTimeout > 0 {
		f.AppHealthProbeTimeout = a.AppHealthProbeTimeout
	}
	if a.AppHealthThreshold > 0 {
		f.AppHealthThreshold = a.AppHealthThreshold
	}
	return f
}
