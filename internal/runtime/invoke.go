package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/internal/api/grpcapi"
	"github.com/mecha-dev/mecha/internal/api/grpcproxy"
	"github.com/mecha-dev/mecha/internal/api/internalgrpc"
	"github.com/mecha-dev/mecha/internal/blocks/invoke"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics"
)

// DefaultResolver is the name resolution component of self-hosted mode
// when the Configuration names none.
const DefaultResolver = "sqlite"

// initInvoke creates the name resolver and the invocation block with its
// sidecar-to-sidecar client. A resolver that fails to initialise does not
// stop the sidecar: calls to other apps fail, naming the reason.
func (r *Runtime) initInvoke(ctx context.Context) {
	r.resolver, r.resolverErr = r.newResolver(ctx)
	if r.resolverErr != nil {
		r.log.Error("name resolution is unavailable; calls to other apps will fail", "error", r.resolverErr)
		r.meta.AddResourceError(metadata.ResourceError{Kind: "Configuration", Name: "nameResolution", File: r.cfg.File, Message: r.resolverErr.Error()})
	}
	ilog := r.log.With(slog.String("scope", "mecha.runtime.invoke"))
	r.invokeClient = internalgrpc.NewClient(r.opts.MaxBodySize, ilog, append([]grpc.DialOption{r.mx.m.ClientDialOption()}, r.internalClientSecurity()...)...)
	o := invoke.Options{
		AppID: r.opts.AppID, Namespace: r.opts.Namespace,
		Remote: r.mx.m.Remote(r.invokeClient), ResolverErr: r.resolverErr, Logger: ilog,
		Resiliency: r.resiliency,
	}
	if r.resolver != nil {
		o.Resolver = r.resolver
	}
	if r.app != nil {
		o.Local = r.app
	}
	r.invoke = invoke.New(o)
}

// newResolver returns the injected resolver, or creates and initialises
// nameresolution.<spec.nameResolution.component> (sqlite by default).
func (r *Runtime) newResolver(ctx context.Context) (nameresolution.Resolver, error) {
	if r.opts.Resolver != nil {
		return r.opts.Resolver, nil
	}
	spec := r.cfg.Spec.NameResolution
	name := spec.Component
	if name == "" {
		name = DefaultResolver
	}
	typ := "nameresolution." + name
	props, err := stringProperties(spec.Configuration)
	if err != nil {
		return nil, fmt.Errorf("%s: spec.nameResolution.configuration: %w", typ, err)
	}
	if typ == "nameresolution.sqlite" {
		if _, ok := (components.Metadata{Properties: props}).Get("connectionString"); !ok {
			file, err := r.registryFile()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", typ, err)
			}
			props["connectionString"] = file
		}
	}
	deps := components.Deps{
		Logger:  r.log.With(slog.String("component", name), slog.String("componentType", typ)),
		DataDir: r.opts.DataDir,
	}
	res, err := r.opts.Registries.NameResolution.Create(typ, spec.Version, deps)
	if err != nil {
		return nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, r.opts.ComponentInitTimeout)
	defer cancel()
	md := components.Metadata{Name: name, Type: typ, Version: spec.Version, Properties: props}
	if err := initBounded(ictx, res, md); err != nil {
		return nil, fmt.Errorf("%s: init: %w", typ, err)
	}
	r.log.Info("name resolution ready", "componentType", typ)
	return res, nil
}

func (r *Runtime) registryFile() (string, error) {
	if r.opts.RegistryFile != "" {
		return r.opts.RegistryFile, nil
	}
	if r.opts.DataDir != "" {
		return filepath.Join(r.opts.DataDir, "nameresolution.db"), nil
	}
	return "", errors.New("no registry file: set connectionString in spec.nameResolution.configuration (or run through `mecha run` / `mecha sidecar`, which use ~/.mecha/nameresolution.db)")
}

// stringProperties turns spec.nameResolution.configuration into component
// properties: scalars as text, nested values as JSON.
func stringProperties(in map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		switch v := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = v
		case bool, int, int64, uint64, float64:
			out[k] = fmt.Sprint(v)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = string(b)
		}
	}
	return out, nil
}

// internalHosts are the addresses the internal server listens on: the
// configured ones plus 127.0.0.1 unless they already cover it.
func internalHosts(o Options) []string {
	hosts := o.InternalListenAddresses
	if len(hosts) == 0 {
		hosts = o.ListenAddresses
	}
	for _, h := range hosts {
		switch h {
		case "127.0.0.1", "0.0.0.0", "", "::", "localhost":
			return hosts
		}
	}
	return append([]string{"127.0.0.1"}, hosts...)
}

// listenInternal binds the internal gRPC server, on one port for every
// host (a free one when InternalGRPCPort is 0).
func (r *Runtime) listenInternal() ([]net.Listener, error) {
	o := r.opts
	// No API token here: sidecars do not present one to each other; with
	// mTLS their certificates authenticate them, and access control
	// applies (internalServerSecurity). The limits are the API servers'.
	r.internalSrv = grpc.NewServer(append(append([]grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(goruntime.GOMAXPROCS(0))),
		grpc.MaxRecvMsgSize(int(o.MaxBodySize)),
		grpc.MaxSendMsgSize(int(o.MaxBodySize)),
		// Stop waits for handlers, so the body readers they start are
		// all accounted for before Close waits for them.
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(grpcapi.RecoverUnary(r.log)),
		grpc.ChainStreamInterceptor(grpcapi.RecoverStream(r.log)),
		// Other sidecars' gRPC proxies forward calls for the app here.
		grpc.UnknownServiceHandler(internalgrpc.UnknownService(r.proxy.Deliver)),
		r.mx.m.ServerOption(metrics.InternalServer),
		grpcproxy.ServerCodec(),
	}, r.limits().GRPCServerOptions()...), r.internalServerSecurity()...)...)
	r.internal = internalgrpc.NewServer(r.invoke, o.MaxBodySize, r.log.With(slog.String("scope", "mecha.runtime.invoke")))
	r.internal.SetTracing(r.tracing)
	r.internal.Register(r.internalSrv)
	r.internal.SetActors(r.actors)
	var lns []net.Listener
	port := o.InternalGRPCPort
	for _, host := range internalHosts(o) {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("internal gRPC: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		lns = append(lns, l)
		r.internalAddrs = append(r.internalAddrs, l.Addr())
	}
	r.internalPort = port
	return lns, nil
}

// InternalAddr is the address other sidecars call this one on, e.g.
// "127.0.0.1:47300".
func (r *Runtime) InternalAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.internalPort))
}

// register announces the sidecar to name resolution; it runs once the APIs
// serve (outbound-ready).
func (r *Runtime) register(ctx context.Context) {
	if r.resolver == nil {
		return
	}
	r.regMu.Lock()
	defer r.regMu.Unlock()
	r.instance = nameresolution.Instance{
		InstanceID:   uuid.NewString(),
		AppID:        r.opts.AppID,
		Namespace:    r.opts.Namespace,
		Address:      r.InternalAddr(),
		HTTPPort:     addrPort(r.httpAddrs),
		GRPCPort:     addrPort(r.grpcAddrs),
		InternalPort: r.internalPort,
		AppPort:      r.opts.AppPort,
		PID:          os.Getpid(),
		AppPID:       r.opts.AppPID,
		Command:      r.opts.AppCommand,
		StartedAt:    r.started,
	}
	if r.opts.AppPort != 0 {
		r.instance.AppProtocol = r.opts.AppProtocol
	}
	r.registered = r.registerLocked(ctx)
}

func (r *Runtime) registerLocked(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ComponentInitTimeout)
	defer cancel()
	if err := r.resolver.Register(ctx, r.instance); err != nil {
		r.log.Error("could not register with name resolution; other apps cannot call this one", "error", err)
		return false
	}
	r.log.Info("registered with name resolution", "address", r.instance.Address)
	return true
}

func addrPort(as []net.Addr) int {
	if len(as) == 0 {
		return 0
	}
	if t, ok := as[0].(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}

// SetAppProcess records the app's process (`mecha run` knows it once the
// app started) in the name resolution entry and the metadata API.
func (r *Runtime) SetAppProcess(ctx context.Context, pid int, command string) {
	r.meta.SetExtended("appPID", strconv.Itoa(pid))
	r.meta.SetExtended("appCommand", command)
	if r.resolver == nil {
		return
	}
	r.regMu.Lock()
	defer r.regMu.Unlock()
	r.opts.AppPID, r.opts.AppCommand = pid, command
	if r.instance.InstanceID == "" {
		return // registers with them later
	}
	r.instance.AppPID, r.instance.Command = pid, command
	r.registered = r.registerLocked(ctx)
}

// deregister withdraws the announcement before the servers drain, when the
// resolver can do so and still resolve (Close withdraws it otherwise).
func (r *Runtime) deregister(ctx context.Context) {
	d, ok := r.resolver.(nameresolution.Deregisterer)
	if !ok {
		return
	}
	r.regMu.Lock()
	defer r.regMu.Unlock()
	if !r.registered {
		return
	}
	if err := d.Deregister(ctx); err != nil {
		r.log.Warn("could not withdraw from name resolution", "error", err)
	}
	r.registered = false
	r.instance.InstanceID = "" // SetAppProcess must not announce it again
}

// closeInvoke closes the resolver (withdrawing the announcement if it is
// still there) and the client, after the servers drained.
func (r *Runtime) closeInvoke() error {
	var errs []error
	if r.resolver != nil {
		start := time.Now()
		if err := r.resolver.Close(); err != nil {
			errs = append(errs, fmt.Errorf("name resolution: %w", err))
		}
		r.log.Debug("name resolution closed", "elapsed", time.Since(start).Round(time.Microsecond))
	}
	if r.invokeClient != nil {
		errs = append(errs, r.invokeClient.Close())
	}
	// Last: the client's connections used the certificates.
	errs = append(errs, r.closeSecurity())
	return errors.Join(errs...)
}
