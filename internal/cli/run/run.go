// Package run is `mecha run`: it starts a sidecar in-process and the app as
// a child process, hands the app the sidecar's ports through the environment
// Dapr SDKs read, interleaves both logs with prefixes, forwards signals, and
// exits with the app's exit code. With no --resources-path it uses the
// self-hosted defaults in ~/.mecha (created on first use).
//
// With -f (--run-file) it reads Dapr's multi-app run template instead
// (package runfile) and does the same for every app in it: one sidecar per
// app, all in this process and all in the host's name resolution registry,
// so the apps call each other by app id. An app that exits stops its own
// sidecar while the others keep running; mecha exits when every app has, with
// the first non-zero exit code. Ctrl-C or SIGTERM stops them all.
//
// One app and a template share the same code: a unit (unit.go) is a sidecar
// and its app, started and stopped the same way in both.
package run

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
)

// exitError carries an app's exit code out of the command.
type exitError struct {
	code int
	app  string // set for templates: which app
}

func (e exitError) Error() string {
	if e.app != "" {
		return fmt.Sprintf("app %q exited with code %d", e.app, e.code)
	}
	return fmt.Sprintf("app exited with code %d", e.code)
}

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
	var runFile string
	cmd := &cobra.Command{
		Use:   "run --app-id ID [--app-port PORT] [flags] [-- COMMAND ARGS...]",
		Short: "Run an app with a Mecha sidecar beside it, or every app of a run template",
		Long: `Start a Mecha sidecar and, after "--", the app's command. The app gets
DAPR_HTTP_PORT, DAPR_GRPC_PORT and APP_ID in its environment, so Dapr SDKs find
the sidecar. Both logs are printed with prefixes. Ctrl-C stops both; when the
app exits the sidecar stops and mecha exits with the app's code.

Without --resources-path the defaults in ~/.mecha/components are used (an
embedded SQLite state store named "statestore"): no Docker, no servers.

With -f FILE (or -f DIR holding dapr.yaml), run every app of a Dapr multi-app
run template, each with its own sidecar; the apps call each other by app id.
When an app exits its sidecar stops and the others keep running; mecha exits
when all have, with the first non-zero exit code.`,
		Example: `  mecha run --app-id hello -- go run ./examples/hello
  mecha run -f examples/apps.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runFile != "" {
				if err := templateOnly(cmd.Flags(), args); err != nil {
					return err
				}
				return runTemplate(cmd, runFile, f.LogAsJSON, regs())
			}
			return runApp(cmd, f, regs(), args)
		},
	}
	cmd.Flags().StringVarP(&runFile, "run-file", "f", "", "run every app of this multi-app run template (a file, or a directory holding dapr.yaml)")
	f.AddFlags(cmd.Flags())
	// Unlike daprd, pick free ports unless asked: several apps can run at once.
	cmd.Flags().Lookup("dapr-http-port").DefValue = "0"
	cmd.Flags().Lookup("dapr-grpc-port").DefValue = "0"
	cmd.Flags().Lookup("metrics-port").DefValue = "0"
	f.HTTPPort, f.GRPCPort, f.MetricsPort = 0, 0, 0
	cmd.Flags().SortFlags = false
	return cmd
}

// templateOnly rejects what a template run cannot take from the command
// line: every setting comes from the template, except --log-as-json.
func templateOnly(fs *pflag.FlagSet, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("--run-file starts the commands of the template; remove %q", args[0])
	}
	var bad []string
	fs.Visit(func(fl *pflag.Flag) {
		if fl.Name != "run-file" && fl.Name != "log-as-json" {
			bad = append(bad, "--"+fl.Name)
		}
	})
	if len(bad) > 0 {
		return fmt.Errorf("%v cannot be combined with --run-file: set it in the template", bad)
	}
	return nil
}

func runApp(cmd *cobra.Command, f *sidecar.Flags, regs *kinds.Registries, args []string) error {
	con := newConsole(cmd.OutOrStdout())
	appW, sideW := con.pair(f.AppID, 0)
	defer sideW.Flush()
	defer appW.Flush()

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	u, err := startUnit(ctx, unitSpec{flags: f, command: args, stdin: os.Stdin, appOut: appW, sideOut: sideW, flushApp: appW.Flush}, regs)
	if err != nil {
		return err
	}
	if code := u.wait(ctx); code != 0 {
		return exitError{code: code}
	}
	return nil
}
