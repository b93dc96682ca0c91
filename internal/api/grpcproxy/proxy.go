// Package grpcproxy is Dapr's transparent gRPC proxying: a gRPC client
// calls its own sidecar's gRPC API port on any service that is not the Dapr
// API (its app's own /helloworld.Greeter/SayHello, streams included), with
// the metadata dapr-app-id naming the target app. The sidecar forwards the
// call to a sidecar of that app (its internal port), which forwards it to
// the app's gRPC server; messages, headers, trailers, status and errors
// come back the same way, and cancellation and deadlines travel with the
// call.
//
// The sidecars never decode the messages: they do not have the app's
// protos, and need not. A codec (ServerCodec) keeps every message of an
// unknown service as the bytes that came off the wire, and they are written
// out again unchanged, so one proxy serves unary and all three streaming
// kinds alike. The per-message size limit is the servers' and clients'
// message limit (--max-body-size).
//
// The hops follow daprd (pkg/messaging/grpc_proxy.go, pkg/api/grpc/proxy):
// the caller's sidecar drops dapr-app-id and adds dapr-caller-app-id and
// dapr-callee-app-id; the callee's sidecar recognises the forwarded call by
// them and delivers it to its app with the app's API token in place of the
// caller's. A call for the sidecar's own app goes straight to the app.
// Target sidecars are resolved and balanced by the invocation block, the
// same way as InvokeService calls, over the same pooled connections.
package grpcproxy

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// Router resolves target apps and balances calls over their sidecars (the
// invocation block).
type Router interface {
	// Target parses "app" or "app.namespace" and reports whether it is
	// this sidecar's app.
	Target(target string) (id, ns string, local bool, err error)
	// Dial calls try with sidecar addresses of the app until one works,
	// moving on when try's error marks the sidecar unreachable.
	Dial(ctx context.Context, id, ns string, try func(addr string) error) error
}

// Remote opens streams to other sidecars' internal gRPC servers
// (internalgrpc.Client). release is called once the stream is over; a
// failure to reach the sidecar wraps invoke.ErrUnreachable.
type Remote interface {
	NewStream(ctx context.Context, addr string, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (cs grpc.ClientStream, release func(), err error)
}

// Options configure a Proxy.
type Options struct {
	// AppID is this sidecar's app.
	AppID  string
	Router Router
	Remote Remote
	// App is the connection to this sidecar's app when it speaks gRPC;
	// nil otherwise, and AppProtocol ("" when there is no app) says why.
	App         grpc.ClientConnInterface
	AppProtocol string
	// MaxMessageSize bounds each message the proxy forwards, in bytes.
	MaxMessageSize int
	Logger         *slog.Logger
}

// Proxy forwards calls; its Forward and Deliver methods are
// grpc.StreamHandlers for the API and internal servers.
type Proxy struct {
	o        Options
	callOpts []grpc.CallOption

	mu     sync.Mutex
	closed bool
	// pumps are the goroutines that copy the caller's messages to the
	// callee; each ends with its call.
	pumps sync.WaitGroup
}

// desc makes every forwarded call a bidirectional stream: the proxy does
// not know the method's kind, and needs not (a unary call is a stream with
// one message each way).
var desc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// New returns a proxy.
func New(o Options) *Proxy {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{o: o, callOpts: []grpc.CallOption{grpc.ForceCodecV2(codec)}}
	if o.MaxMessageSize > 0 {
		p.callOpts = append(p.callOpts, grpc.MaxCallRecvMsgSize(o.MaxMessageSize), grpc.MaxCallSendMsgSize(o.MaxMessageSize))
	}
	return p
}

// Close waits for the goroutines of calls that are over; call it once the
// servers using the proxy have stopped. Calls that arrive later fail.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.pumps.Wait()
}

// start runs f in a tracked goroutine, unless the proxy is closed.
func (p *Proxy) start(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.pumps.Go(f)
	return true
}

// Forward is the API server's handler for calls that name a target app
// (dapr-app-id): it sends them to the target's sidecar, or to this
// sidecar's app when it is the target.
func (p *Proxy) Forward(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "full method name not found in stream")
	}
	ctx := ss.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	target := targetOf(md)
	if target == "" {
		return Unimplemented(method)
	}
	id, ns, local, err := p.o.Router.Target(target)
	if err != nil {
		return failed(ctx, target, err)
	}
	out := outgoing(md)
	if local {
		return p.toApp(ss, method, out)
	}
	// Set, not appended as daprd does: a caller cannot pass for another
	// app by sending these itself.
	out[invokemsg.CallerAppIDHeader] = []string{p.o.AppID}
	out[invokemsg.CalleeAppIDHeader] = []string{id}
	cctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, out))
	var cs grpc.ClientStream
	var release func()
	err = p.o.Router.Dial(cctx, id, ns, func(addr string) error {
		var err error
		cs, release, err = p.o.Remote.NewStream(cctx, addr, desc, method, p.callOpts...)
		return err
	})
	if err != nil {
		cancel()
		p.o.Logger.Debug("proxied gRPC call did not reach the target app's sidecar", "target", target, "method", method, "error", err)
		return failed(ctx, target, err)
	}
	defer release()
	return p.pump(ss, cs, cancel)
}

// Deliver is the internal server's handler for calls another sidecar
// forwarded (marked with dapr-callee-app-id): it hands them to the app.
func (p *Proxy) Deliver(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "full method name not found in stream")
	}
	ctx := ss.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	target := targetOf(md)
	if target == "" {
		return Unimplemented(method)
	}
	id, _, local, err := p.o.Router.Target(target)
	if err != nil {
		return failed(ctx, target, err)
	}
	if !local {
		// The caller resolved an address that no longer belongs to the
		// app: say so rather than hand the call to another app.
		return status.Errorf(codes.NotFound, "failed to proxy request: app %s is not served by this sidecar (app %s)", id, p.o.AppID)
	}
	return p.toApp(ss, method, outgoing(md))
}

// toApp forwards the call to this sidecar's app.
func (p *Proxy) toApp(ss grpc.ServerStream, method string, out metadata.MD) error {
	target := p.o.AppID
	if p.o.App == nil {
		if p.o.AppProtocol == "" {
			return status.Error(codes.Internal, "failed to proxy request: app channel is not initialized")
		}
		return status.Errorf(codes.FailedPrecondition, "failed to proxy request: the app speaks %s; proxied gRPC calls need --app-protocol grpc or grpcs", p.o.AppProtocol)
	}
	ctx := ss.Context()
	cctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, out))
	cs, err := p.o.App.NewStream(cctx, desc, method, p.callOpts...)
	if err != nil {
		cancel()
		return failed(ctx, target, err)
	}
	return p.pump(ss, cs, cancel)
}

// outgoing turns the caller's metadata (a copy: FromIncomingContext's)
// into what travels on, removing dapr-app-id (it only routes the call;
// daprd drops it), dapr-api-token (the caller's credential for this
// sidecar: the app gets its own token from the app channel) and
// grpc-accept-encoding (the proxy's client states its own).
func outgoing(md metadata.MD) metadata.MD {
	delete(md, invokemsg.AppIDHeader)
	delete(md, invokemsg.APITokenHeader)
	delete(md, "grpc-accept-encoding")
	return md
}

// failed turns an error from before the call reached the callee into the
// status the caller gets: gRPC errors as they are, context errors as their
// codes, anything else (a target that cannot be resolved) Unknown, as
// daprd answers.
func failed(ctx context.Context, target string, err error) error {
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	if cerr := ctx.Err(); cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	return status.Errorf(codes.Unknown, "failed to proxy request to app %s: %v", target, err)
}
