// Package controlplane is `mecha control-plane`: with --local, the
// self-hosted control plane of one Mecha home, in the foreground (mecha
// init and mecha run start it in the background when it is not running);
// `mecha control-plane status` and `stop` find it through the home.
//
// The process hosts the control plane's parts (internal/controlplane): the
// embedded NATS JetStream broker, on 127.0.0.1, keeping its data in
// <home>/data/jetstream, the actor placement service
// (internal/placement), standalone, and the certificate authority for mTLS
// between sidecars (internal/sentry), its root, issuer and token in
// <home>/data/ca. It records its pid and addresses in
// <home>/data/control-plane.json and holds <home>/data/control-plane.lock
// while it runs, so that a home has at most one.
//
// Without --local it is a node of a placement cluster (Dapr's placement
// deployment): the placement service, replicated with raft across
// --placement-peers, and /healthz; and the certificate authority when
// --ca-dir (or the --ca-* files) are given.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/internal/controlplane"
	"github.com/mecha-dev/mecha/internal/controlplane/broker"
	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/placement"
	"github.com/mecha-dev/mecha/internal/selfhosted"
	"github.com/mecha-dev/mecha/internal/sentry"
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

	listenAddress     string
	placementOn       bool
	placementPort     int
	placementID       string
	placementPeers    string
	raftDir           string
	replicationFactor int

	// sentry is the certificate authority (sentry.go).
	sentry sentryFlags
}

// Command returns `mecha control-plane`.
func Command() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "control-plane (--local | --placement-id ID --placement-peers ID=HOST:PORT,...) [flags]",
		Short: "Run the control plane (pub/sub broker, actor placement, certificate authority) in the foreground",
		Long: `Run the self-hosted control plane of the Mecha home ($MECHA_HOME, else
~/.mecha) in the foreground until SIGTERM or Ctrl-C. It hosts the embedded NATS
JetStream broker that the default "pubsub" component uses, listening on
127.0.0.1 only, with its data in <home>/data/jetstream.

mecha init and mecha run start it in the background when it is not running
(logging to <home>/logs/control-plane.log); mecha control-plane stop, or mecha
stop --control-plane, stops it. A home has at most one.

It also hosts the actor placement service (Dapr's placement protocol) as a
single node, for sidecars started with --placement-host-address; mecha run
passes its address.

It also hosts the certificate authority (Dapr's sentry protocol) that
sidecars started with --sentry-address (or just --enable-mtls, which finds it
through the home) get their mTLS certificates from. Its root, issuer and the
token sidecars present are created on first start in <home>/data/ca (files
0600) and kept across restarts; --ca-root-cert, --ca-issuer-cert and
--ca-issuer-key supply your own. With the CA, the placement serves mutual TLS
only, with a certificate for spiffe://<trust-domain>/ns/<namespace>/dapr-placement
from that CA: sidecars with mTLS join it with their certificates, sidecars
without are refused and log why (--placement-mtls=false serves plaintext).
In a Kubernetes pod (or with --kubeconfig) the CA also accepts Dapr's
KUBERNETES identity proof: the pod's service-account token, checked with a
TokenReview.

The broker, placement and CA ports default to the ones the home used last,
else 50007, 50005 and 50003, else (when taken) any free port; the ports are
recorded in <home>/data/control-plane.json.

Without --local, the process is one node of a highly available placement
service: the placement alone, on --listen-address:--placement-port, its
membership replicated with raft across --placement-peers (every node gets the
same list, each its own --placement-id; raft listens on the node's own
address in the list). Only the leader serves sidecars; sidecars list every
node in --placement-host-address and find the leader. With no peers, it runs
standalone.`,
		Example: `  mecha control-plane --local
  mecha control-plane status
  mecha control-plane stop

  # a 3-node placement cluster
  mecha control-plane --placement-id p0 --placement-port 50005 --healthz-port 8080 \
    --placement-peers p0=127.0.0.1:8201,p1=127.0.0.1:8202,p2=127.0.0.1:8203 --placement-raft-dir /var/lib/mecha/p0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !f.local {
				return runCluster(cmd, f)
			}
			return run(cmd, f)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&f.local, "local", false, "run the self-hosted control plane of the Mecha home")
	fs.IntVar(&f.brokerPort, "broker-port", -1, "the embedded broker's port on 127.0.0.1 (default: the home's last, else 50007, else any free port; 0: any free port)")
	fs.IntVar(&f.healthzPort, "healthz-port", DefaultHealthzPort, "the /healthz port on the listen address (0: any free port)")
	fs.StringVar(&f.listenAddress, "listen-address", "127.0.0.1", "the interface the placement and /healthz listen on (the broker stays on 127.0.0.1)")
	fs.BoolVar(&f.placementOn, "placement", true, "host the actor placement service (with --local)")
	fs.IntVar(&f.placementPort, "placement-port", -1, "the placement gRPC port (default: with --local the home's last, else 50005, else any free port; else 50005; 0: any free port)")
	fs.StringVar(&f.placementID, "placement-id", "placement-0", "this placement node's raft id (one of --placement-peers)")
	fs.StringVar(&f.placementPeers, "placement-peers", "", "the placement raft cluster, id=host:port of each node's raft transport, comma-separated (empty: standalone)")
	fs.StringVar(&f.raftDir, "placement-raft-dir", "", "where this node keeps its raft log and snapshots (empty: in memory; a restarted node catches up from the leader)")
	fs.IntVar(&f.replicationFactor, "placement-replication-factor", 100, "virtual nodes per host in the actor hashing rings")
	fs.Lookup("placement-port").DefValue = "auto"
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.logJSON, "log-as-json", false, "write logs as JSON")
	fs.Lookup("broker-port").DefValue = "auto"
	f.sentry.addFlags(fs)
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
	parts := []controlplane.Part{b}
	// The CA starts before the placement, which takes its certificate
	// from it.
	var sn *sentry.Server
	if f.sentry.on {
		ln, err := sentryListener(l, f.listenAddress, f.sentry.port, log.Warn)
		if err != nil {
			return err
		}
		dir := f.sentry.dir
		if dir == "" {
			dir = l.CADir()
		}
		kube, err := f.sentry.kubernetes(cmd, true)
		if err != nil {
			ln.Close()
			return err
		}
		if sn, err = f.sentry.newSentry(dir, ln, kube, log); err != nil {
			ln.Close()
			return err
		}
		parts = append(parts, sn)
	}
	var pl *placement.Server
	if f.placementOn {
		fail := func(err error) error {
			if sn != nil {
				_ = sn.Stop(context.Background()) // releases its listener
			}
			return err
		}
		ptls, err := f.sentry.placementTLS(sn)
		if err != nil {
			return fail(err)
		}
		ln, err := placementListener(l, f, log.Warn)
		if err != nil {
			return fail(err)
		}
		if pl, err = newPlacement(f, 0, ln, nil, ptls, log); err != nil {
			ln.Close()
			return fail(err)
		}
		parts = append(parts, pl)
	}
	host := controlplane.New(controlplane.Options{
		Parts:       parts,
		HealthzAddr: net.JoinHostPort(f.listenAddress, strconv.Itoa(f.healthzPort)),
		Logger:      log,
	})

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := host.Start(ctx); err != nil {
		return err
	}
	st := selfhosted.ControlPlaneState{PID: os.Getpid(), Broker: b.URL(), Healthz: host.HealthzAddr(), Started: time.Now().UTC()}
	if pl != nil {
		st.Placement = dialable(pl.Addr())
	}
	if sn != nil {
		st.Sentry = dialable(sn.Addr())
	}
	if err := selfhosted.WriteControlPlane(l, st); err != nil {
		_ = host.Stop(context.Background())
		return fmt.Errorf("recording the control plane: %w", err)
	}
	log.Info("control plane ready", "home", l.Home, "broker", st.Broker, "placement", st.Placement, "sentry", st.Sentry, "healthz", "http://"+st.Healthz+"/healthz", "pid", st.PID)

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

// placementListener binds the local placement's port: the flag's when
// given; else the home's last, else DefaultPlacementPort, else any free
// port. Unlike the broker's port, which the home's pubsub component
// names, any port will do (mecha run reads it from the state file), so a
// port taken meanwhile, by another home's control plane say, costs
// nothing but a warning.
func placementListener(l selfhosted.Layout, f *flags, warn func(string, ...any)) (net.Listener, error) {
	at := func(port int) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(f.listenAddress, strconv.Itoa(port)))
	}
	if f.placementPort >= 0 {
		if f.placementPort > 65535 {
			return nil, fmt.Errorf("--placement-port %d is out of range", f.placementPort)
		}
		ln, err := at(f.placementPort)
		if err != nil {
			return nil, fmt.Errorf("placement: %w", err)
		}
		return ln, nil
	}
	var tries []int
	if st, ok, err := selfhosted.ReadControlPlane(l); err == nil && ok && st.PlacementPort() > 0 {
		tries = append(tries, st.PlacementPort())
	}
	tries = append(tries, selfhosted.DefaultPlacementPort)
	for _, port := range tries {
		if ln, err := at(port); err == nil {
			return ln, nil
		}
	}
	warn("the placement port is taken; using a free one", "ports", tries)
	ln, err := at(0)
	if err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	return ln, nil
}

// newPlacement builds the placement part on ln, else on the listen
// address and port; raft nil runs it standalone.
func newPlacement(f *flags, port int, ln net.Listener, raft *placement.RaftOptions, ptls *placement.TLSOptions, log *slog.Logger) (*placement.Server, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("--placement-port %d is out of range", port)
	}
	if f.replicationFactor <= 0 {
		return nil, fmt.Errorf("--placement-replication-factor %d must be positive", f.replicationFactor)
	}
	return placement.New(placement.Options{
		Address:           net.JoinHostPort(f.listenAddress, strconv.Itoa(port)),
		Listener:          ln,
		ReplicationFactor: f.replicationFactor,
		Raft:              raft,
		TLS:               ptls,
		Logger:            log.With("part", "placement"),
	}), nil
}

// dialable turns a listener address into one a local client can dial
// (an unspecified host, 0.0.0.0 or ::, becomes loopback).
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// runCluster runs one node of a placement cluster: the placement alone
// and /healthz, with no home (no state file, no lock).
func runCluster(cmd *cobra.Command, f *flags) error {
	log, err := logging.New(logging.Options{Level: f.logLevel, JSON: f.logJSON, Scope: "mecha.controlplane", Output: cmd.ErrOrStderr()})
	if err != nil {
		return err
	}
	if !f.placementOn {
		return errors.New("without --local the control plane is a placement node: --placement=false leaves it nothing to do")
	}
	if f.healthzPort < 0 {
		return fmt.Errorf("--healthz-port %d must not be negative", f.healthzPort)
	}
	port := f.placementPort
	if port < 0 {
		port = placement.DefaultPort
	}
	var raft *placement.RaftOptions
	if f.placementPeers != "" {
		peers, err := placement.ParsePeers(f.placementPeers)
		if err != nil {
			return err
		}
		raft = &placement.RaftOptions{ID: f.placementID, Peers: peers, Dir: f.raftDir}
	}
	// The CA, when hosted, starts before the placement, which takes its
	// certificate from it.
	var parts []controlplane.Part
	sn, err := clusterSentry(cmd, f, log)
	if err != nil {
		return err
	}
	if sn != nil {
		parts = append(parts, sn)
	}
	ptls, err := f.sentry.placementTLS(sn)
	var pl *placement.Server
	if err == nil {
		pl, err = newPlacement(f, port, nil, raft, ptls, log)
	}
	if err != nil {
		if sn != nil {
			_ = sn.Stop(context.Background()) // releases its listener
		}
		return err
	}
	parts = append(parts, pl)
	host := controlplane.New(controlplane.Options{
		Parts:       parts,
		HealthzAddr: net.JoinHostPort(f.listenAddress, strconv.Itoa(f.healthzPort)),
		Logger:      log,
	})
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := host.Start(ctx); err != nil {
		return err
	}
	log.Info("placement node ready", "placement", pl.Addr(), "id", f.placementID, "healthz", "http://"+host.HealthzAddr()+"/healthz", "pid", os.Getpid())
	<-ctx.Done()
	log.Info("stopping the placement node")
	sctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	return host.Stop(sctx)
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
			pl := ""
			if st.Placement != "" {
				pl = ", placement " + st.Placement
			}
			if st.Sentry != "" {
				pl += ", sentry " + st.Sentry
			}
			fmt.Fprintf(cmd.OutOrStdout(), "running: pid %d, broker %s%s, healthz http://%s/healthz, since %s\n",
				st.PID, st.Broker, pl, st.Healthz, st.Started.Local().Format(time.RFC3339))
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
