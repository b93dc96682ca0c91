// Package controlplane is `mecha control-plane`: with --local, the
// self-hosted control plane of one Mecha home, in the foreground (mecha
// init and mecha run start it in the background when it is not running);
// `mecha control-plane status` and `stop` find it through the home.
//
// The process hosts the control plane's parts (internal/controlplane): for
// now the embedded NATS JetStream broker, on 127.0.0.1, keeping its data in
// <home>/data/jetstream. It records its pid and addresses in
// <home>/data/control-plane.json and holds <home>/data/control-plane.lock
// while it runs, so that a home has at most one.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/internal/controlplane"
	"github.com/mecha-dev/mecha/internal/controlplane/broker"
	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// DefaultHealthzPort is the /healthz port of a control plane started by
// hand, Dapr's placement health port. The one mecha init and mecha run
// start uses a free port instead (8080 is often taken on a developer's
// machine) and records it.
const DefaultHealthzPort = 8080

// stopGrace bounds a graceful stop after SIGTERM.
const stopGrace = 30 * time.Second

// flags of `mecha control-plane`.
type flags struct {
	local       bool
	brokerPort  int
	healthzPort int
	logLevel    string
	logJSON     bool
}

// Command returns `mecha control-plane`.
func Command() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "control-plane --local [--broker-port PORT] [--healthz-port PORT]",
		Short: "Run the local control plane (the embedded pub/sub broker) in the foreground",
		Long: `Run the self-hosted control plane of the Mecha home ($MECHA_HOME, else
~/.mecha) in the foreground until SIGTERM or Ctrl-C. It hosts the embedded NATS
JetStream broker that the default "pubsub" component uses, listening on
127.0.0.1 only, with its data in <home>/data/jetstream.

mecha init and mecha run start it in the background when it is not running
(logging to <home>/logs/control-plane.log); mecha control-plane stop, or mecha
stop --control-plane, stops it. A home has at most one.

The broker port defaults to the one the home used last, else 50007, else (when
50007 is taken) any free port; the port is recorded in
<home>/data/control-plane.json.`,
		Example: `  mecha control-plane --local
  mecha control-plane status
  mecha control-plane stop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !f.local {
				return errors.New("only the local (self-hosted) control plane exists so far: pass --local")
			}
			return run(cmd, f)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&f.local, "local", false, "run the self-hosted control plane of the Mecha home")
	fs.IntVar(&f.brokerPort, "broker-port", -1, "the embedded broker's port on 127.0.0.1 (default: the home's last, else 50007, else any free port; 0: any free port)")
	fs.IntVar(&f.healthzPort, "healthz-port", DefaultHealthzPort, "the /healthz port on 127.0.0.1 (0: any free port)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.logJSON, "log-as-json", false, "write logs as JSON")
	fs.Lookup("broker-port").DefValue = "auto"
	cmd.AddCommand(statusCommand(), stopCommand())
	return cmd
}

func run(cmd *cobra.Command, f *flags) error {
	log, err := logging.New(logging.Options{Level: f.logLevel, JSON: f.logJSON, Scope: "mecha.controlplane", Output: cmd.ErrOrStderr()})
	if err != nil {
		return err
	}
	home, err := selfhosted.Home()
	if err != nil {
		return err
	}
	l := selfhosted.LayoutAt(home)
	lock, ok, err := selfhosted.LockFile(l.ControlPlaneLock())
	if err != nil {
		return err
	}
	if !ok {
		st, _, _ := selfhosted.ReadControlPlane(l)
		return fmt.Errorf("a local control plane already runs for %s (pid %d; mecha control-plane stop stops it)", l.Home, st.PID)
	}
	defer lock.Close()

	port, err := brokerPort(l, f.brokerPort, log.Warn)
	if err != nil {
		return err
	}
	if f.healthzPort < 0 {
		return fmt.Errorf("--healthz-port %d must not be negative", f.healthzPort)
	}
	// The server keeps JetStream in StoreDir/jetstream: <home>/data/jetstream.
	b := broker.New(broker.Options{Port: port, StoreDir: l.Data, Logger: log.With("part", "broker")})
	host := controlplane.New(controlplane.Options{
		Parts:       []controlplane.Part{b},
		HealthzAddr: "127.0.0.1:" + strconv.Itoa(f.healthzPort),
		Logger:      log,
	})

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := host.Start(ctx); err != nil {
		return err
	}
	st := selfhosted.ControlPlaneState{PID: os.Getpid(), Broker: b.URL(), Healthz: host.HealthzAddr(), Started: time.Now().UTC()}
	if err := selfhosted.WriteControlPlane(l, st); err != nil {
		_ = host.Stop(context.Background())
		return fmt.Errorf("recording the control plane: %w", err)
	}
	log.Info("control plane ready", "home", l.Home, "broker", st.Broker, "healthz", "http://"+st.Healthz+"/healthz", "pid", st.PID)

	<-ctx.Done()
	log.Info("stopping the control plane")
	sctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	err = host.Stop(sctx)
	// Keep the ports for the next start; PID 0 says nothing runs.
	st.PID = 0
	if werr := selfhosted.WriteControlPlane(l, st); werr != nil {
		log.Warn("could not record that the control plane stopped", "error", werr)
	}
	if err != nil {
		return err
	}
	log.Info("control plane stopped")
	return nil
}

// brokerPort picks the broker's port: flag when given (0 is any free
// port); else the port the home used last, since its default "pubsub"
// points there; else DefaultBrokerPort, or any free port when that one is
// taken (a new home's pubsub is written after this start, with the port it
// got).
func brokerPort(l selfhosted.Layout, flag int, warn func(string, ...any)) (int, error) {
	if flag >= 0 {
		return flag, nil
	}
	if st, ok, err := selfhosted.ReadControlPlane(l); err == nil && ok && st.BrokerPort() > 0 {
		return st.BrokerPort(), nil
	}
	if selfhosted.FreePort(selfhosted.DefaultBrokerPort) {
		return selfhosted.DefaultBrokerPort, nil
	}
	warn("the default broker port is taken; using a free one", "port", selfhosted.DefaultBrokerPort)
	return 0, nil
}

func statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Tell whether the local control plane runs, and where",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layout()
			if err != nil {
				return err
			}
			st, err := selfhosted.ControlPlaneStatus(cmd.Context(), l)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "running: pid %d, broker %s, healthz http://%s/healthz, since %s\n",
				st.PID, st.Broker, st.Healthz, st.Started.Local().Format(time.RFC3339))
			return nil
		},
	}
}

func stopCommand() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the local control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layout()
			if err != nil {
				return err
			}
			return Stop(cmd.Context(), l, time.Duration(timeout)*time.Second, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVarP(&timeout, "timeout", "t", 30, "seconds to wait for it to stop")
	return cmd
}

// Stop stops the home's control plane and says so on out; one that is not
// running is reported, not an error.
func Stop(ctx context.Context, l selfhosted.Layout, timeout time.Duration, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := selfhosted.StopControlPlane(ctx, l)
	if errors.Is(err, selfhosted.ErrControlPlaneNotRunning) {
		fmt.Fprintln(out, "the local control plane is not running")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "stopped the local control plane (pid %d)\n", st.PID)
	return nil
}

func layout() (selfhosted.Layout, error) {
	home, err := selfhosted.Home()
	if err != nil {
		return selfhosted.Layout{}, err
	}
	return selfhosted.LayoutAt(home), nil
}
