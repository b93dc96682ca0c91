// Package versioncmd is `mecha version`.
package versioncmd

import (
	"fmt"
	goruntime "runtime"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/internal/version"
)

// Command returns `mecha version`.
func Command() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Mecha's version and the Dapr API version it implements",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "mecha %s (Dapr API %s, %s %s/%s)\n", version.Version, version.DaprAPI, goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
		},
	}
}
