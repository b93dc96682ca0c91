// Package sidecar is the `mecha sidecar` command: the runtime alone, the
// drop-in equivalent of daprd, accepting daprd's flag names.
package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/api/guard"
	"github.com/mecha-dev/mecha/internal/apphealth"
	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/placement/client"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// Flags are the daprd-compatible sidecar flags.
type Flags struct {
	AppID             string
	AppPort           int
	AppProtocol       string
	AppChannelAddress string
	AppMaxConcurrency int
	HTTPPort          int
	GRPCPort          int
	InternalGRPCPort  int
	ListenAddresses   string
	InternalListen    string
	ResourcesPaths    []string
	ComponentsPaths   []string
	Config            []string
	LogLevel          string
	LogAsJSON         bool
	EnableAPILogging  bool
	MaxRequestSizeMB  int
	MaxBodySize       string
	GracefulSeconds   int
	DataDir           string
	// PlacementHostAddress is the placement service's comma-separated
	// host:port list; empty disables actors, as in daprd.
	PlacementHostAddress string

	// Prometheus endpoint, as daprd: on by default, port 9090. An empty
	// MetricsListenAddress means the API's listen addresses.
	EnableMetrics        bool
	MetricsPort          int
	MetricsListenAddress string

	// Request header limit: --dapr-http-read-buffer-size in KB, or
	// --read-buffer-size as a quantity (which wins, as in daprd).
	ReadBufferSizeKB int
	ReadBufferSize   string

	// App health checks, in daprd's units: interval in seconds, timeout in
	// milliseconds.
	EnableAppHealthCheck   bool
	AppHealthCheckPath     string
	AppHealthProbeInterval int
	AppHealthProbeTimeout  int
	AppHealthThreshold     int

	// Security is mTLS with the control plane's CA (security.go).
	Security securityFlags

	// Accepted for daprd compatibility; used by later building blocks.
	compat map[string]*string
}

// compatFlags are daprd flags Mecha accepts but does not act on yet; setting
// one logs a warning instead of failing, so daprd command lines keep working.
var compatFlags = []string{
	"mode", "scheduler-host-address",
	"dapr-public-port", "dapr-public-listen-address",
	"control-plane-address",
	"enable-profiling", "profile-port", "unix-domain-socket",
	"dapr-block-shutdown-duration", "allowed-origins", "app-ssl", "disable-builtin-k8s-secret-store",
}

// DefaultMetricsPort is daprd's metrics port.
const DefaultMetricsPort = 9090

// AddFlags registers the sidecar flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.AppID, "app-id", "", "the app's id (required): identity for state key prefixes, discovery and scopes")
	fs.IntVar(&f.AppPort, "app-port", 0, "the port the app listens on (0: no app channel)")
	fs.StringVar(&f.AppProtocol, "app-protocol", "http", "protocol to talk to the app: http, https, grpc, grpcs, h2c")
	fs.StringVar(&f.AppChannelAddress, "app-channel-address", "127.0.0.1", "the app's host")
	fs.IntVar(&f.AppMaxConcurrency, "app-max-concurrency", -1, "in-flight request limit towards the app (-1: unlimited)")
	fs.BoolVar(&f.EnableAppHealthCheck, "enable-app-health-check", false, "probe the app's health (HTTP GET --app-health-check-path, or gRPC AppCallbackHealthCheck); while unhealthy, calls to it fail and input bindings pause")
	fs.StringVar(&f.AppHealthCheckPath, "app-health-check-path", apphealth.DefaultPath, "path probed on HTTP apps")
	fs.IntVar(&f.AppHealthProbeInterval, "app-health-probe-interval", int(apphealth.DefaultInterval/time.Second), "seconds between app health probes")
	fs.IntVar(&f.AppHealthProbeTimeout, "app-health-probe-timeout", int(apphealth.DefaultTimeout/time.Millisecond), "timeout of one app health probe, in milliseconds")
	fs.IntVar(&f.AppHealthThreshold, "app-health-threshold", apphealth.DefaultThreshold, "consecutive failed probes after which the app is unhealthy")
	fs.IntVar(&f.HTTPPort, "dapr-http-port", 3500, "HTTP API port")
	fs.IntVar(&f.GRPCPort, "dapr-grpc-port", 50001, "gRPC API port")
	fs.IntVar(&f.InternalGRPCPort, "dapr-internal-grpc-port", 0, "sidecar-to-sidecar gRPC port (service invocation; 0: a free port)")
	fs.StringVar(&f.ListenAddresses, "dapr-listen-addresses", "127.0.0.1", "comma-separated addresses the APIs listen on (0.0.0.0 for all)")
	fs.StringVar(&f.InternalListen, "dapr-internal-grpc-listen-address", "", "comma-separated addresses the internal gRPC server listens on (default: --dapr-listen-addresses; 127.0.0.1 always)")
	fs.StringArrayVar(&f.ResourcesPaths, "resources-path", nil, "folder with Component YAML (repeatable)")
	fs.StringArrayVar(&f.ComponentsPaths, "components-path", nil, "deprecated alias of --resources-path")
	fs.StringArrayVar(&f.Config, "config", nil, "Configuration resource file")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.LogAsJSON, "log-as-json", false, "write logs as JSON")
	fs.BoolVar(&f.EnableAPILogging, "enable-api-logging", false, "log every API call")
	fs.IntVar(&f.MaxRequestSizeMB, "dapr-http-max-request-size", 4, "request body limit in MB, for HTTP bodies and gRPC messages")
	fs.StringVar(&f.MaxBodySize, "max-body-size", "", "request body limit as a quantity (e.g. 16Mi); overrides --dapr-http-max-request-size")
	fs.IntVar(&f.ReadBufferSizeKB, "dapr-http-read-buffer-size", guard.DefaultReadBufferSize>>10, "request header limit in KB (gRPC header lists: 1024 times it)")
	fs.StringVar(&f.ReadBufferSize, "read-buffer-size", "", "request header limit as a quantity (e.g. 16Ki); overrides --dapr-http-read-buffer-size")
	fs.IntVar(&f.GracefulSeconds, "dapr-graceful-shutdown-seconds", 5, "how long to drain in-flight requests on shutdown")
	fs.StringVar(&f.DataDir, "data-dir", "", "directory for embedded component data")
	fs.StringVar(&f.PlacementHostAddress, "placement-host-address", "", "comma-separated host:port list of the placement service (actors); empty disables actors")
	fs.BoolVar(&f.EnableMetrics, "enable-metrics", true, "serve Prometheus metrics (Dapr's names and labels)")
	fs.IntVar(&f.MetricsPort, "metrics-port", DefaultMetricsPort, "port of the metrics endpoint (0: a free port); a port in use only logs a warning")
	fs.StringVar(&f.MetricsListenAddress, "metrics-listen-address", "", "comma-separated addresses the metrics endpoint listens on (default: --dapr-listen-addresses)")
	f.Security.addFlags(fs)
	f.compat = map[string]*string{}
	for _, name := range compatFlags {
		f.compat[name] = fs.String(name, "", "accepted for daprd compatibility; no effect yet")
		fs.Lookup(name).Hidden = true
	}
}

// ParseQuantity reads "4Mi", "16MB", "1Gi", "512Ki" or a plain byte count.
func ParseQuantity(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"G", 1e9}, {"M", 1e6}, {"K", 1e3}, {"k", 1e3}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
			size := v * float64(u.mult)
			// !(size >= 1) also rejects NaN; 2^63 and above (and +Inf) do
			// not fit an int64.
			if err != nil || !(size >= 1) {
				return 0, fmt.Errorf("%q is not a positive size", s)
			}
			if size >= 1<<63 {
				return 0, fmt.Errorf("%q is too large a size", s)
			}
			return int64(size), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a positive size (use e.g. 4Mi)", s)
	}
	return v, nil
}

// Options turns flags into runtime options.
func (f *Flags) Options(logger *slog.Logger, regs *kinds.Registries) (runtime.Options, error) {
	limit := int64(f.MaxRequestSizeMB) << 20
	if f.MaxRequestSizeMB <= 0 {
		return runtime.Options{}, fmt.Errorf("--dapr-http-max-request-size %d must be positive", f.MaxRequestSizeMB)
	}
	if f.MaxBodySize != "" {
		n, err := ParseQuantity(f.MaxBodySize)
		if err != nil {
			return runtime.Options{}, fmt.Errorf("--max-body-size: %w", err)
		}
		limit = n
	}
	if f.ReadBufferSizeKB <= 0 || f.ReadBufferSizeKB > math.MaxInt32>>10 {
		return runtime.Options{}, fmt.Errorf("--dapr-http-read-buffer-size %d must be between 1 and %d", f.ReadBufferSizeKB, math.MaxInt32>>10)
	}
	readBuffer := f.ReadBufferSizeKB << 10
	if f.ReadBufferSize != "" {
		n, err := ParseQuantity(f.ReadBufferSize)
		if err != nil || n > math.MaxInt32 {
			return runtime.Options{}, fmt.Errorf("--read-buffer-size %q is not a size between 1 and 2Gi", f.ReadBufferSize)
		}
		readBuffer = int(n)
	}
	if f.AppHealthProbeInterval > math.MaxInt64/int(time.Second) {
		return runtime.Options{}, fmt.Errorf("--app-health-probe-interval %d is too large", f.AppHealthProbeInterval)
	}
	if f.AppHealthProbeTimeout > math.MaxInt64/int(time.Millisecond) {
		return runtime.Options{}, fmt.Errorf("--app-health-probe-timeout %d is too large", f.AppHealthProbeTimeout)
	}
	for name, v := range f.compat {
		if *v != "" {
			logger.Warn("flag accepted for daprd compatibility but has no effect yet", "flag", "--"+name, "value", *v)
		}
	}
	sec, err := f.Security.options()
	if err != nil {
		return runtime.Options{}, err
	}
	// The registry other sidecars of the host find this one in; without a
	// home directory, the runtime falls back to the data directory.
	registry, _ := selfhosted.RegistryFile()
	return runtime.Options{
		AppID:                   f.AppID,
		AppPort:                 f.AppPort,
		AppProtocol:             f.AppProtocol,
		AppChannelAddress:       f.AppChannelAddress,
		AppMaxConcurrency:       f.AppMaxConcurrency,
		AppHealthCheck:          f.EnableAppHealthCheck,
		AppHealthCheckPath:      f.AppHealthCheckPath,
		AppHealthProbeInterval:  time.Duration(f.AppHealthProbeInterval) * time.Second,
		AppHealthProbeTimeout:   time.Duration(f.AppHealthProbeTimeout) * time.Millisecond,
		AppHealthThreshold:      f.AppHealthThreshold,
		HTTPPort:                f.HTTPPort,
		GRPCPort:                f.GRPCPort,
		ListenAddresses:         splitAddrs(f.ListenAddresses),
		InternalGRPCPort:        f.InternalGRPCPort,
		InternalListenAddresses: splitAddrs(f.InternalListen),
		RegistryFile:            registry,
		ResourcesPaths:          append(append([]string(nil), f.ResourcesPaths...), f.ComponentsPaths...),
		ConfigFiles:             f.Config,
		Namespace:               os.Getenv("NAMESPACE"),
		DataDir:                 f.DataDir,
		PlacementAddresses:      client.ParseAddresses(strings.Trim(f.PlacementHostAddress, `"'`)),
		MaxBodySize:             limit,
		ReadBufferSize:          readBuffer,
		GracefulShutdown:        time.Duration(f.GracefulSeconds) * time.Second,
		EnableAPILogging:        f.EnableAPILogging,
		Metrics:                 runtime.MetricsOptions{Enabled: f.EnableMetrics, Port: f.MetricsPort, ListenAddresses: splitAddrs(f.MetricsListenAddress)},
		Logger:                  logger,
		Registries:              regs,

		// The tokens come from the environment only, as in daprd: a flag
		// would show them in the process list.
		APIToken:    os.Getenv(guard.APITokenEnv),
		AppAPIToken: os.Getenv(guard.AppAPITokenEnv),
		Security:    sec,
	}, nil
}

func splitAddrs(s string) []string {
	var addrs []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.Trim(strings.TrimSpace(a), "[]"); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// Command returns `mecha sidecar`.
func Command(regs func() *kinds.Registries) *cobra.Command {
	f := &Flags{}
	cmd := &cobra.Command{
		Use:   "sidecar --app-id ID [flags]",
		Short: "Run the Mecha runtime alone (a drop-in for daprd)",
		Long: `Run the Mecha runtime beside an app that is started separately.
It serves the Dapr v1 HTTP API (default port 3500) and gRPC API (50001), loads
Component YAML from every --resources-path, and accepts daprd's flag names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(logging.Options{Level: f.LogLevel, JSON: f.LogAsJSON, Scope: "mecha.runtime", Output: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			opts, err := f.Options(logger, regs())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, opts)
		},
	}
	f.AddFlags(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}

// Run starts a sidecar and blocks until ctx ends or shutdown is requested
// through the API, then drains and stops it.
func Run(ctx context.Context, opts runtime.Options) error {
	rt, err := runtime.Start(ctx, opts)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-rt.ShutdownRequested():
	}
	return rt.Close(context.Background())
}
