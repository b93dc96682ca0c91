// Package channel is the sidecar's connection to its own app: HTTP(S)/h2c
// requests for HTTP apps, and the AppCallback gRPC services for gRPC apps.
// Building blocks that call the app (invocation, input bindings, pub/sub
// delivery, configuration updates) use it and never dial the app themselves.
//
// With app health checks on (Options.HealthCheck), the channel is also the
// gate that keeps work from an unhealthy app: Invoke refuses calls at once
// with daprd's error, and WaitReady, which delivering blocks call before
// each event, waits until the app is healthy again. The probing itself
// lives in internal/apphealth; the runtime reports its verdicts here with
// SetHealthy.
package channel

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// Options describe how to reach the app.
type Options struct {
	Address  string // host, default 127.0.0.1
	Port     int
	Protocol string // http, https, h2c, grpc, grpcs
	// MaxConcurrency limits in-flight calls to the app; <= 0 is unlimited.
	MaxConcurrency int
	// MaxBodySize limits gRPC messages to and from the app.
	MaxBodySize int
	// Token, when set, is sent as dapr-api-token on every call (APP_API_TOKEN).
	Token string
	// HealthCheck says the app's health is probed: the app then counts as
	// unhealthy until SetHealthy(true).
	HealthCheck bool
	// HealthCheckPath is what HealthProbe GETs on an HTTP app (default
	// /healthz).
	HealthCheckPath string
	// WrapTransport, when set, wraps the HTTP transport to the app (metrics).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// DialOptions are added to the gRPC connection to the app (metrics).
	DialOptions []grpc.DialOption
}

// App is the channel to the app. Exactly one of HTTP or GRPC is non-nil.
type App struct {
	Protocol string
	HTTP     *HTTP
	GRPC     *GRPC
	ready    <-chan struct{}

	health        *healthGate
	healthChecked bool
	healthPath    string
}

// New builds the channel; nothing is dialled until first use. ready is
// closed once the app accepts connections.
func New(o Options, ready <-chan struct{}) (*App, error) {
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	if o.Protocol == "" {
		o.Protocol = "http"
	}
	switch {
	case o.HealthCheckPath == "":
		o.HealthCheckPath = "/healthz"
	case !strings.HasPrefix(o.HealthCheckPath, "/"):
		o.HealthCheckPath = "/" + o.HealthCheckPath
	}
	hostport := net.JoinHostPort(o.Address, strconv.Itoa(o.Port))
	a := &App{
		Protocol: o.Protocol, ready: ready,
		health: newHealthGate(o.HealthCheck), healthChecked: o.HealthCheck, healthPath: o.HealthCheckPath,
	}
	var sem chan struct{}
	if o.MaxConcurrency > 0 {
		sem = make(chan struct{}, o.MaxConcurrency)
	}
	switch o.Protocol {
	case "http", "https", "h2c":
		a.HTTP = newHTTP(o, hostport, sem)
	case "grpc", "grpcs":
		g, err := newGRPC(o, hostport, sem)
		if err != nil {
			return nil, err
		}
		a.GRPC = g
	default:
		return nil, fmt.Errorf("unknown app protocol %q", o.Protocol)
	}
	return a, nil
}

// Ready is closed once the app accepts connections (or, with health
// checks, once it first passed one). It does not reopen when the app turns
// unhealthy: use WaitReady to wait for an app that can take work.
func (a *App) Ready() <-chan struct{} { return a.ready }

// WaitReady blocks until the app can be given work or ctx ends: until it is
// ready and, with health checks, healthy. Building blocks that deliver
// events to the app call it before each delivery, so that deliveries pause
// while the app is unhealthy.
func (a *App) WaitReady(ctx context.Context) error {
	select {
	case <-a.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	return a.WaitHealthy(ctx)
}

// Close releases connections.
func (a *App) Close() error {
	if a.GRPC != nil {
		return a.GRPC.conn.Close()
	}
	a.HTTP.client.CloseIdleConnections()
	return nil
}

// HTTP calls an HTTP app.
type HTTP struct {
	client  *http.Client
	base    string // scheme://host:port
	baseURL *url.URL
	sem     chan struct{}
	token   string
}

func newHTTP(o Options, hostport string, sem chan struct{}) *HTTP {
	scheme := "http"
	var rt http.RoundTripper
	switch o.Protocol {
	case "https":
		scheme = "https"
		t := baseTransport()
		// Dapr does not verify the app's certificate: the app is local.
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec
		rt = t
	case "h2c":
		rt = &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
	default:
		rt = baseTransport()
	}
	if o.WrapTransport != nil {
		rt = o.WrapTransport(rt)
	}
	return &HTTP{client: &http.Client{Transport: rt}, base: scheme + "://" + hostport, baseURL: &url.URL{Scheme: scheme, Host: hostport}, sem: sem, token: o.Token}
}

func baseTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// Base returns the app's base URL, e.g. "http://127.0.0.1:3000".
func (h *HTTP) Base() string { return h.base }

// Do sends a request to path (which starts with "/", query included) and
// returns the app's response; the caller closes its body. The concurrency
// slot is held until the body is closed.
func (h *HTTP) Do(ctx context.Context, method, path string, header http.Header, body io.Reader) (*http.Response, error) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, body)
	if err != nil {
		return nil, err
	}
	if header != nil {
		req.Header = header
	}
	return h.roundTrip(req)
}

// send is the one place requests leave for the app: invocations, pub/sub
// and binding deliveries, subscription and configuration discovery, and
// health probes all pass here, and all carry the app token when there is
// one (APP_API_TOKEN), in place of any the request had.
func (h *HTTP) send(req *http.Request) (*http.Response, error) {
	// The span of the work that sends the request (an invocation, a
	// delivery) is the app's parent, whatever trace headers it had.
	tracing.InjectHTTP(req.Context(), req.Header)
	if h.token != "" {
		req.Header.Set(tokenHeader, h.token)
	}
	return h.client.Do(req)
}

func (h *HTTP) release() {
	if h.sem != nil {
		<-h.sem
	}
}

type releaseBody struct {
	io.ReadCloser
	release func()
	done    bool
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.done {
		b.done = true
		b.release()
	}
	return err
}

// GRPC calls a gRPC app's AppCallback services.
type GRPC struct {
	conn     *grpc.ClientConn
	Callback runtimev1.AppCallbackClient
	Health   runtimev1.AppCallbackHealthCheckClient
	Alpha    runtimev1.AppCallbackAlphaClient
	sem      chan struct{}
	maxBody  int
}

func newGRPC(o Options, hostport string, sem chan struct{}) (*GRPC, error) {
	creds := insecure.NewCredentials()
	if o.Protocol == "grpcs" {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if o.MaxBodySize > 0 {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.MaxBodySize), grpc.MaxCallSendMsgSize(o.MaxBodySize)))
	}
	if o.Token != "" {
		opts = append(opts, grpc.WithUnaryInterceptor(tokenUnary(o.Token)), grpc.WithStreamInterceptor(tokenStream(o.Token)))
	}
	if sem != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(limitUnary(sem)))
	}
	// Every call carries the trace context of the span that makes it.
	opts = append(opts, grpc.WithChainUnaryInterceptor(tracing.UnaryClientInterceptor()), grpc.WithChainStreamInterceptor(tracing.StreamClientInterceptor()))
	opts = append(opts, o.DialOptions...)
	conn, err := grpc.NewClient(hostport, opts...)
	if err != nil {
		return nil, err
	}
	return &GRPC{
		conn:     conn,
		Callback: runtimev1.NewAppCallbackClient(conn),
		Health:   runtimev1.NewAppCallbackHealthCheckClient(conn),
		Alpha:    runtimev1.NewAppCallbackAlphaClient(conn),
		sem:      sem,
		maxBody:  cmp.Or(max(o.MaxBodySize, 0), 4<<20),
	}, nil
}

// Conn is the underlying connection, for proxying arbitrary services.
func (g *GRPC) Conn() *grpc.ClientConn { return g.conn }
