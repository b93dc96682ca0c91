// Package runtime wires a sidecar together: options → resources → component
// registries → initialised components → building blocks → API servers. It is
// the only package that sees all of them; it holds no API or block logic.
package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/internal/blocks/actors"
)

// Options configure one sidecar. The zero value of a port means "any free
// port" (tests); the CLI passes Dapr's defaults.
type Options struct {
	AppID             string
	AppPort           int
	AppProtocol       string // http (default), https, grpc, grpcs, h2c
	AppChannelAddress string // default 127.0.0.1
	AppMaxConcurrency int
	// AppHealthCheck turns on app health probes (--enable-app-health-check);
	// the other AppHealth fields tune them and default to daprd's values
	// (/healthz, 5s, 500ms, 3).
	AppHealthCheck         bool
	AppHealthCheckPath     string
	AppHealthProbeInterval time.Duration
	AppHealthProbeTimeout  time.Duration
	AppHealthThreshold     int

	HTTPPort        int
	GRPCPort        int
	ListenAddresses []string // default 127.0.0.1
	// InternalGRPCPort serves sidecar-to-sidecar calls (0: a free port).
	InternalGRPCPort int
	// InternalListenAddresses are where the internal server listens
	// (default ListenAddresses); it is always reachable on 127.0.0.1 too,
	// the address registered in self-hosted name resolution.
	InternalListenAddresses []string

	// RegistryFile is the name resolution registry shared by the sidecars
	// of the host (nameresolution.sqlite's default connectionString); empty
	// means DataDir/nameresolution.db.
	RegistryFile string
	// Resolver, when set, replaces the resolver the Configuration selects
	// (tests). The runtime registers with it and closes it; it must be
	// initialised.
	Resolver nameresolution.Resolver
	// AppPID and AppCommand describe the app process when known (`mecha
	// run` sets them later with Runtime.SetAppProcess).
	AppPID     int
	AppCommand string

	// PlacementAddresses are the placement service's nodes
	// (--placement-host-address); none disables actors, as in daprd.
	PlacementAddresses []string
	// ActorPlacement, when set, replaces the placement client (tests use
	// an in-memory placement).
	ActorPlacement actors.NewPlacement
	// ActorTuning, when set, adjusts the actor runtime's options (tests
	// shorten its timeouts).
	ActorTuning func(*actors.Options)

	ResourcesPaths []string
	// ConfigFiles are Configuration resources (--config), applied in order.
	ConfigFiles []string
	Namespace   string // default "default"
	// DataDir is handed to components that keep files.
	DataDir string

	// MaxBodySize limits HTTP request bodies and gRPC messages, in bytes.
	MaxBodySize int64
	// ReadBufferSize limits HTTP request headers, in bytes (daprd's
	// --read-buffer-size; default 4 KiB); gRPC header lists get 1024 times
	// it. ReadHeaderTimeout bounds reading request headers and the gRPC
	// handshake (default 10s). See guard.Limits.
	ReadBufferSize    int
	ReadHeaderTimeout time.Duration

	// APIToken, when set, must be presented as dapr-api-token on every
	// call to the public HTTP and gRPC APIs (DAPR_API_TOKEN).
	APIToken string
	// AppAPIToken, when set, is sent as dapr-api-token on every call to
	// the app (APP_API_TOKEN).
	AppAPIToken string
	// Security configures mTLS between sidecars (security.go).
	Security SecurityOptions
	// GracefulShutdown bounds the drain on shutdown.
	GracefulShutdown time.Duration
	// ComponentInitTimeout is the default spec.initTimeout.
	ComponentInitTimeout time.Duration
	EnableAPILogging     bool
	// Metrics configures the Prometheus endpoint (off in the zero value).
	Metrics MetricsOptions

	Logger     *slog.Logger
	Registries *kinds.Registries
}

// Defaults used when an option is left empty.
const (
	DefaultMaxBodySize          = 4 << 20
	DefaultGracefulShutdown     = 5 * time.Second
	DefaultComponentInitTimeout = 5 * time.Second
)

func (o *Options) setDefaults() {
	if o.AppProtocol == "" {
		o.AppProtocol = "http"
	}
	if o.AppChannelAddress == "" {
		o.AppChannelAddress = "127.0.0.1"
	}
	o.setAppHealthDefaults()
	if len(o.ListenAddresses) == 0 {
		o.ListenAddresses = []string{"127.0.0.1"}
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.MaxBodySize <= 0 {
		o.MaxBodySize = DefaultMaxBodySize
	}
	if o.GracefulShutdown <= 0 {
		o.GracefulShutdown = DefaultGracefulShutdown
	}
	if o.ComponentInitTimeout <= 0 {
		o.ComponentInitTimeout = DefaultComponentInitTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registries == nil {
		o.Registries = kinds.New()
	}
}

// Validate reports option errors a user can fix.
func (o *Options) Validate() error {
	var errs []error
	if o.AppID == "" {
		errs = append(errs, errors.New("--app-id is required"))
	} else if strings.ContainsAny(o.AppID, "| \t\n/") {
		errs = append(errs, fmt.Errorf("--app-id %q must not contain spaces, '/' or '|'", o.AppID))
	}
	for name, p := range map[string]int{"--app-port": o.AppPort, "--dapr-http-port": o.HTTPPort, "--dapr-grpc-port": o.GRPCPort, "--dapr-internal-grpc-port": o.InternalGRPCPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is not a valid port", name, p))
		}
	}
	switch o.AppProtocol {
	case "", "http", "https", "grpc", "grpcs", "h2c":
	default:
		errs = append(errs, fmt.Errorf("--app-protocol %q is not one of http, https, grpc, grpcs, h2c", o.AppProtocol))
	}
	if err := o.validateAppHealth(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
