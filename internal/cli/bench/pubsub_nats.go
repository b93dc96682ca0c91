package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/internal/controlplane/broker"
)

// The NATS server of the JetStream scenarios is the control plane's
// embedded broker (nats-server with JetStream, file storage), run in a
// process of its own by the hidden `mecha bench nats`, so that its CPU is
// measured apart from the load generator's and the sidecar's and their
// garbage collectors do not pause it.

// natsLinePrefix starts the first line `mecha bench nats` prints.
const natsLinePrefix = "nats "

func natsCommand() *cobra.Command {
	var storeDir string
	cmd := &cobra.Command{
		Use:    "nats --store-dir DIR",
		Short:  "Run a NATS server with JetStream on a free 127.0.0.1 port (for pubsub-all)",
		Hidden: true,
		Long: `Run the control plane's embedded NATS server with JetStream (file storage
under --store-dir) on a free 127.0.0.1 port until Ctrl-C or SIGTERM. The first
line of stdout is "nats nats://127.0.0.1:PORT".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if storeDir == "" {
				return errors.New("--store-dir is required")
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			b := broker.New(broker.Options{StoreDir: storeDir, Logger: log})
			if err := b.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), natsLinePrefix+b.URL())
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return b.Stop(sctx)
		},
	}
	cmd.Flags().StringVar(&storeDir, "store-dir", "", "where JetStream keeps its data (in DIR/jetstream)")
	return cmd
}

// startNATS execs `mecha bench nats` from bin with its store in
// dir/nats and returns the process and the server's URL. The caller must
// call Stop.
func startNATS(ctx context.Context, bin, dir string, env []string) (*sidecarProc, string, error) {
	store := filepath.Join(dir, "nats")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, "", err
	}
	p, line, err := startLineProc(ctx, "nats", bin, []string{"bench", "nats", "--store-dir", store}, dir, env)
	if err != nil {
		return nil, "", err
	}
	url, ok := strings.CutPrefix(line, natsLinePrefix)
	if !ok || !strings.HasPrefix(url, "nats://") {
		_ = p.Stop()
		return nil, "", fmt.Errorf("unexpected first line from the NATS server: %q", line)
	}
	return p, url, nil
}
