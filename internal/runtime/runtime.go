package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	goruntime "runtime"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/internal/accesscontrol"
	"github.com/mecha-dev/mecha/internal/api/grpcapi"
	"github.com/mecha-dev/mecha/internal/api/grpcproxy"
	"github.com/mecha-dev/mecha/internal/api/guard"
	"github.com/mecha-dev/mecha/internal/api/httpapi"
	"github.com/mecha-dev/mecha/internal/api/internalgrpc"
	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/blocks/bindings"
	"github.com/mecha-dev/mecha/internal/blocks/configuration"
	"github.com/mecha-dev/mecha/internal/blocks/invoke"
	"github.com/mecha-dev/mecha/internal/blocks/lock"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/blocks/pubsub"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
	"github.com/mecha-dev/mecha/internal/blocks/state"
	"github.com/mecha-dev/mecha/internal/channel"
	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/resiliency"
	"github.com/mecha-dev/mecha/internal/security"
	"github.com/mecha-dev/mecha/internal/telemetry/apilog"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
	"github.com/mecha-dev/mecha/internal/version"
)

// Runtime is a running sidecar.
type Runtime struct {
	opts          Options
	cfg           *config.Configuration
	log           *slog.Logger
	health        *health
	state         *state.Block
	meta          *metadata.Block
	secrets       *secrets.Block
	lock          *lock.Block
	configuration *configuration.Block
	bindings      *bindings.Block
	pubsub        *pubsub.Block
	// app is the channel to the app; nil without --app-port.
	app      *channel.App
	appReady chan struct{}
	started  time.Time

	// resiliency supplies the timeouts, retries and circuit breakers of
	// the calls the blocks make.
	resiliency *resiliency.Provider

	// actors is the actor runtime (disabled without a placement).
	actors *actors.Block

	// sec is the mTLS provider (nil when mTLS is off) and acl the access
	// control list (nil when none is configured); see security.go.
	sec *security.Provider
	acl *accesscontrol.List

	// Service invocation: the block, the resolver (nil when it failed:
	// resolverErr), the client to other sidecars and the internal server.
	invoke        *invoke.Block
	resolver      nameresolution.Resolver
	resolverErr   error
	invokeClient  *internalgrpc.Client
	proxy         *grpcproxy.Proxy
	internal      *internalgrpc.Server
	internalSrv   *grpc.Server
	internalAddrs []net.Addr
	internalPort  int
	regMu         sync.Mutex
	instance      nameresolution.Instance
	registered    bool

	httpSrv   *http.Server
	grpcSrv   *grpc.Server
	httpAddrs []net.Addr
	grpcAddrs []net.Addr

	// bg owns the serving and app-waiting goroutines.
	bg       sync.WaitGroup
	bgCancel context.CancelFunc

	// mx is the Prometheus instrumentation (mx.m nil when metrics are off).
	mx runtimeMetrics
	// tracing is spec.tracing's tracer; nil when tracing is off.
	tracing *tracing.Provider

	shutdownOnce sync.Once
	shutdownReq  chan struct{}
	closeOnce    sync.Once
	closeErr     error
}

// Start validates opts, binds the API ports, loads and initialises the
// components and returns once the APIs serve (outbound-ready). Waiting for
// the app continues in the background; Ready reports it. Call Close to stop.
func Start(ctx context.Context, opts Options) (*Runtime, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	cfg, err := config.LoadConfiguration(opts.ConfigFiles)
	if err != nil {
		return nil, err
	}
	r := &Runtime{
		cfg:         cfg,
		opts:        opts,
		log:         opts.Logger.With(slog.String("app_id", opts.AppID)),
		health:      newHealth(),
		state:       state.New(opts.AppID, opts.Namespace),
		shutdownReq: make(chan struct{}),
		secrets:     secrets.New(),
		lock:        lock.NewForApp(opts.AppID),
		appReady:    make(chan struct{}),
		started:     time.Now(),
	}
	r.initMetrics()
	if opts.AppPort != 0 {
		app, err := channel.New(channel.Options{
			Address: opts.AppChannelAddress, Port: opts.AppPort, Protocol: opts.AppProtocol,
			MaxConcurrency: opts.AppMaxConcurrency, MaxBodySize: int(opts.MaxBodySize),
			HealthCheck: opts.AppHealthCheck, HealthCheckPath: opts.AppHealthCheckPath,
			WrapTransport: r.mx.m.HTTPTransport, DialOptions: []grpc.DialOption{r.mx.m.ClientDialOption()},
			Token: opts.AppAPIToken,
		}, r.appReady)
		if err != nil {
			return nil, err
		}
		r.app = app
	}
	r.secrets.SetScopes(secretScopes(cfg))
	r.configuration = configuration.New(r.app, r.log.With(slog.String("scope", "mecha.runtime.configuration")))
	r.bindings = bindings.New(r.app, r.log.With(slog.String("scope", "mecha.runtime.bindings")))
	r.bindings.SetStateSaver(r.state.Save)
	r.observeBlocks()
	r.initResiliency()
	app := metadata.AppConnection{Port: opts.AppPort, ChannelAddress: opts.AppChannelAddress, MaxConcurrency: max(opts.AppMaxConcurrency, 0)}
	if opts.AppPort != 0 {
		app.Protocol = opts.AppProtocol
	}
	appHealthMetadata(opts, &app)
	r.meta = metadata.New(opts.AppID, version.Version, app)
	r.meta.SetExtended("daprRuntimeVersion", version.Version)
	r.initPubSub()
	if err := r.initSecurity(ctx); err != nil {
		r.closeBlocks()
		return nil, err
	}
	r.initInvoke(ctx)
	r.initProxy()
	r.initActors()
	if err := r.initTracing(ctx); err != nil {
		r.closeInvoke()
		return nil, err
	}

	if err := r.listen(); err != nil {
		r.closeInvoke()
		r.closeTracing()
		return nil, err
	}
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.bgCancel = cancel

	res := config.Load(opts.ResourcesPaths, config.LoadOptions{AppID: opts.AppID, Namespace: opts.Namespace})
	for _, e := range res.Errors {
		r.log.Error("resource skipped", "file", e.File, "kind", e.Kind, "name", e.Name, "error", e.Err)
		r.meta.AddResourceError(metadata.ResourceError{File: e.File, Kind: e.Kind, Name: e.Name, Message: e.Err})
	}
	for _, s := range res.Skipped {
		r.log.Info("resource not for this app", "resource", s)
	}
	r.loadResiliency(res.Resiliencies)
	r.initComponents(ctx, res.Components)
	if err := ctx.Err(); err != nil {
		cancel()
		r.closeServers(context.Background())
		r.bg.Wait()
		r.proxy.Close()
		r.closeInvoke()
		r.closeBlocks() // the components that did initialise
		r.closeTracing()
		return nil, err
	}
	// Announce the sidecar once it can serve calls, and report it
	// outbound-ready only then, so that a caller that waited for
	// /v1.0/healthz/outbound finds it.
	r.register(ctx)
	r.startActors()
	r.health.set(func(h *health) { h.outbound = true })
	r.serveMetrics()
	r.log.Info("Mecha sidecar APIs ready", "http", addrList(r.httpAddrs), "grpc", addrList(r.grpcAddrs), "internal", addrList(r.internalAddrs), "version", version.Version)

	if opts.AppPort == 0 {
		r.health.set(func(h *health) { h.appReady = true })
		close(r.appReady)
	} else {
		r.watchApp(bgCtx)
	}
	// Deliveries start their spans from the tracer in their context.
	r.bindings.Start(r.tracing.ContextWith(bgCtx))
	r.startSubscriptions(r.tracing.ContextWith(bgCtx), res.Subscriptions)
	return r, nil
}

func (r *Runtime) listen() error {
	o := r.opts
	// The API token check wraps the whole HTTP API and, as interceptors,
	// the whole gRPC API, the proxy included (guard).
	r.httpSrv = r.limits().HTTPServer(r.mx.m.HTTPServer(r.tracing.HTTPMiddleware(guard.HTTP(o.APIToken, httpapi.Handler(httpapi.Deps{
		AppID: o.AppID, State: r.state, Metadata: r.meta, Health: r.health,
		Secrets: r.secrets, Lock: r.lock, Configuration: r.configuration, Bindings: r.bindings, PubSub: r.pubsub,
		Invoke: r.invoke, Actors: r.actors,
		Shutdown: r.RequestShutdown, MaxBodySize: o.MaxBodySize,
		Logger: r.log, APILogging: o.EnableAPILogging,
	})))), slog.NewLogLogger(r.log.Handler(), slog.LevelDebug))
	gopts := append([]grpc.ServerOption{
		// A fixed pool of stream workers avoids a new goroutine (and its
		// stack growth) per call; grpc-go still spawns one when all are busy.
		grpc.NumStreamWorkers(uint32(goruntime.GOMAXPROCS(0))),
		grpc.MaxRecvMsgSize(int(o.MaxBodySize)),
		grpc.MaxSendMsgSize(int(o.MaxBodySize)),
		grpc.ChainUnaryInterceptor(grpcapi.RecoverUnary(r.log), r.tracing.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(grpcapi.RecoverStream(r.log), r.tracing.StreamServerInterceptor()),
		grpc.UnknownServiceHandler(grpcapi.UnknownService(r.proxy.Forward)),
		r.mx.m.ServerOption(metrics.APIServer),
		apilog.ServerOption(r.log, o.EnableAPILogging),
		grpcproxy.ServerCodec(),
	}, r.limits().GRPCServerOptions()...)
	r.grpcSrv = grpc.NewServer(append(gopts, guard.GRPC(o.APIToken)...)...)
	grpcapi.New(grpcapi.Deps{
		AppID: o.AppID, State: r.state, Metadata: r.meta,
		Secrets: r.secrets, Lock: r.lock, Configuration: r.configuration, Bindings: r.bindings, PubSub: r.pubsub,
		Invoke: r.invoke, Actors: r.actors, MaxBodySize: o.MaxBodySize,
		Shutdown: r.RequestShutdown, Logger: r.log,
	}).Register(r.grpcSrv)

	var lns []net.Listener
	fail := func(err error) error {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	for _, host := range o.ListenAddresses {
		hl, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(o.HTTPPort)))
		if err != nil {
			return fail(fmt.Errorf("HTTP API: %w", err))
		}
		lns = append(lns, hl)
		gl, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(o.GRPCPort)))
		if err != nil {
			return fail(fmt.Errorf("gRPC API: %w", err))
		}
		lns = append(lns, gl)
		r.httpAddrs = append(r.httpAddrs, hl.Addr())
		r.grpcAddrs = append(r.grpcAddrs, gl.Addr())
		r.bg.Go(func() {
			if err := r.httpSrv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Error("HTTP API server stopped", "error", err)
			}
		})
		r.bg.Go(func() {
			if err := r.grpcSrv.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				r.log.Error("gRPC API server stopped", "error", err)
			}
		})
	}
	ilns, err := r.listenInternal()
	if err != nil {
		return fail(err)
	}
	for _, l := range ilns {
		r.bg.Go(func() {
			if err := r.internalSrv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				r.log.Error("internal gRPC server stopped", "error", err)
			}
		})
	}
	return nil
}

// limits are the limits and timeouts of every server of the sidecar.
func (r *Runtime) limits() guard.Limits {
	return guard.Limits{ReadBufferSize: r.opts.ReadBufferSize, ReadHeaderTimeout: r.opts.ReadHeaderTimeout}
}

func addrList(as []net.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// HTTPAddr is the first HTTP API address, e.g. "127.0.0.1:3500".
func (r *Runtime) HTTPAddr() string { return r.httpAddrs[0].String() }

// GRPCAddr is the first gRPC API address.
func (r *Runtime) GRPCAddr() string { return r.grpcAddrs[0].String() }

// Ready reports whether the sidecar is fully ready (nil) or why not.
func (r *Runtime) Ready() error { return r.health.Ready() }

// RequestShutdown asks the owner of the runtime to shut it down (the
// /v1.0/shutdown API); it returns at once.
func (r *Runtime) RequestShutdown() {
	r.shutdownOnce.Do(func() {
		r.log.Info("shutdown requested through the API")
		close(r.shutdownReq)
	})
}

// ShutdownRequested is closed when RequestShutdown was called.
func (r *Runtime) ShutdownRequested() <-chan struct{} { return r.shutdownReq }

// Close drains in-flight requests (bounded by Options.GracefulShutdown and
// ctx), stops the servers and closes every component. It is safe to call
// more than once.
func (r *Runtime) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.log.Info("sidecar shutting down", "grace", r.opts.GracefulShutdown)
		r.health.set(func(h *health) { h.closing = true })
		ctx, cancel := context.WithTimeout(ctx, r.opts.GracefulShutdown)
		defer cancel()
		// Pub/sub deliveries stop first (the broker keeps what was not
		// delivered). Streaming subscriptions never end on their own: end
		// them so the gRPC server's graceful stop does not wait out the
		// grace period.
		r.pubsub.StopSubscriptions()
		r.configuration.StopSubscriptions()
		r.deregister(ctx)
		r.closeServers(ctx)
		r.closeActors(ctx)
		r.closeMetrics(ctx)
		r.bgCancel()
		r.bg.Wait()
		r.proxy.Close()
		r.closeErr = errors.Join(r.closeInvoke(), r.closeBlocks(), r.closeTracing())
		r.log.Info("sidecar stopped")
	})
	return r.closeErr
}

// closeBlocks closes every component, input bindings first (they feed the
// app), secret stores last (others may read them until the end), then the
// app channel.
func (r *Runtime) closeBlocks() error {
	errs := []error{
		r.bindings.Close(),
		r.pubsub.Close(),
		r.configuration.Close(),
		r.lock.Close(),
		r.state.Close(),
		r.secrets.Close(),
	}
	if r.app != nil {
		errs = append(errs, r.app.Close())
	}
	return errors.Join(errs...)
}

// closeServers drains the API servers and the internal server together,
// bounded by ctx.
func (r *Runtime) closeServers(ctx context.Context) {
	done := make(chan struct{})
	idone := make(chan struct{})
	go func() {
		r.grpcSrv.GracefulStop()
		close(done)
	}()
	go func() {
		r.internalSrv.GracefulStop()
		close(idone)
	}()
	if err := r.httpSrv.Shutdown(ctx); err != nil {
		r.httpSrv.Close()
	}
	for _, c := range []struct {
		done <-chan struct{}
		srv  *grpc.Server
	}{{done, r.grpcSrv}, {idone, r.internalSrv}} {
		select {
		case <-c.done:
		case <-ctx.Done():
			c.srv.Stop()
			<-c.done
		}
	}
	r.internal.Wait()
}

// secretScopes converts the Configuration's spec.secrets.scopes.
func secretScopes(cfg *config.Configuration) []secrets.Scope {
	out := make([]secrets.Scope, len(cfg.Spec.Secrets.Scopes))
	for i, s := range cfg.Spec.Secrets.Scopes {
		out[i] = secrets.Scope{StoreName: s.StoreName, DefaultAccess: s.DefaultAccess, AllowedSecrets: s.AllowedSecrets, DeniedSecrets: s.DeniedSecrets}
	}
	return out
}
