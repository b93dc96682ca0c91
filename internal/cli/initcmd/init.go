// Package initcmd is `mecha init`: it creates ~/.mecha with the default
// resources explicitly (mecha run also does it on first use) and starts the
// local control plane in the background, whose embedded broker the default
// "pubsub" uses. Nothing is downloaded and no container is started.
package initcmd

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// Command returns `mecha init`.
func Command() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create ~/.mecha with the default, zero-infrastructure resources",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := selfhosted.Home()
			if err != nil {
				return err
			}
			l := selfhosted.LayoutAt(home)
			// The control plane first, so that a new home's "pubsub" gets
			// the port its broker actually got.
			cp, started, cpErr := selfhosted.EnsureControlPlane(cmd.Context(), l, selfhosted.EnsureOptions{})
			files, err := selfhosted.EnsureDefaults(l)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Mecha home: %s\n", l.Home)
			fmt.Fprintf(out, "  data:       %s\n", l.Data)
			for _, f := range files {
				state := "kept (already present)"
				if f.Created {
					state = "created"
				}
				fmt.Fprintf(out, "  %-11s %s: %s\n", state+":", f.Path, f.What)
			}
			switch {
			case errors.Is(cpErr, selfhosted.ErrControlPlaneDisabled):
				fmt.Fprintf(out, "  control plane: not started (%s=off)\n", selfhosted.ControlPlaneEnv)
			case cpErr != nil:
				return fmt.Errorf("the local control plane did not start: %w", cpErr)
			default:
				state := "running"
				if started {
					state = "started"
				}
				fmt.Fprintf(out, "  control plane: %s (pid %d), broker %s, log %s\n", state, cp.PID, cp.Broker, l.ControlPlaneLog())
			}
			fmt.Fprintln(out, "Ready: `mecha run --app-id myapp -- <your command>` uses these defaults.")
			return nil
		},
	}
}
