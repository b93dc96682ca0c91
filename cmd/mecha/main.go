// Command mecha is the one Mecha binary: the sidecar runtime, the `run`
// launcher, and the client verbs. This file is the only place that decides
// which components are compiled in (components/all).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/bench"
	"github.com/mecha-dev/mecha/internal/cli/controlplane"
	"github.com/mecha-dev/mecha/internal/cli/initcmd"
	"github.com/mecha-dev/mecha/internal/cli/invoke"
	"github.com/mecha-dev/mecha/internal/cli/list"
	"github.com/mecha-dev/mecha/internal/cli/publish"
	"github.com/mecha-dev/mecha/internal/cli/run"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/cli/stop"
	"github.com/mecha-dev/mecha/internal/cli/versioncmd"
)

func registries() *kinds.Registries {
	r := kinds.New()
	all.Register(r)
	return r
}

func main() {
	root := &cobra.Command{
		Use:           "mecha",
		Short:         "Mecha: a Dapr-compatible distributed application runtime in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		run.Command(registries),
		sidecar.Command(registries),
		list.Command(),
		stop.Command(),
		invoke.Command(),
		publish.Command(),
		initcmd.Command(),
		versioncmd.Command(),
		bench.Command(),
		controlplane.Command(),
	)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return
	}
	if code, ok := run.ExitCode(err); ok {
		os.Exit(code)
	}
	fmt.Fprintln(os.Stderr, "mecha:", err)
	os.Exit(1)
}
