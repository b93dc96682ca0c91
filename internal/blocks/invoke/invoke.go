// Package invoke is the service invocation building block: it takes a call
// for another app (or this one) from either API, finds a sidecar serving
// the target app id through the name resolver, balances calls round robin
// over that app's instances, retries on another instance when one cannot
// be reached, and hands the call to the transport; calls for this app go
// straight to the local app channel. On the callee side, CallLocal delivers
// calls that arrived from other sidecars to the app.
//
// Bodies are streams (invokemsg.Request.Body) end to end; the block buffers
// only small bodies (ReplayLimit), to be able to send them again.
//
// It knows neither HTTP nor gRPC: the APIs call Invoke, the internal gRPC
// server calls CallLocal, and the sidecar-to-sidecar transport is the Remote
// interface (internal/api/internalgrpc implements it).
package invoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// Local delivers a call to this sidecar's app (the app channel).
type Local interface {
	Invoke(ctx context.Context, req *invokemsg.Request) (*invokemsg.Response, error)
}

// Remote sends a call to the sidecar at addr (its internal gRPC address).
// It wraps ErrUnreachable around failures that happened before the callee
// answered anything and may be retried elsewhere, and ErrPermissionDenied
// around the callee's access-control refusals.
type Remote interface {
	Call(ctx context.Context, addr string, req *invokemsg.Request) (*invokemsg.Response, error)
}

// Resolver finds the sidecars of an app (a nameresolution.Resolver).
type Resolver interface {
	Resolve(ctx context.Context, req nameresolution.ResolveRequest) ([]string, error)
}

// Errors the transports and CallLocal report.
var (
	// ErrUnreachable marks a failure to reach a sidecar before it answered:
	// the call can go to another instance.
	ErrUnreachable = errors.New("sidecar unreachable")
	// ErrPermissionDenied marks a callee's refusal (access control).
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNoAppChannel is CallLocal's answer when this sidecar has no app.
	ErrNoAppChannel = errors.New("app channel is not initialized")
	// ErrInvalidMethod wraps a method name that is rejected.
	ErrInvalidMethod = errors.New("invalid method")
)

// Defaults of Options.
const (
	DefaultAttempts    = 3
	DefaultReplayLimit = 1 << 20
	DefaultCacheTTL    = time.Second
	DefaultBackoff     = 100 * time.Millisecond
	// downFor is how long an instance that could not be reached is avoided
	// while others are available.
	downFor = 5 * time.Second
)

// Options configure a Block.
type Options struct {
	AppID     string
	Namespace string
	// Local is the app channel; nil when the sidecar has no app.
	Local Local
	// Remote is the sidecar-to-sidecar transport.
	Remote Remote
	// Resolver finds other apps' sidecars; when nil, ResolverErr says why
	// (it failed to initialise) and calls to other apps fail with it.
	Resolver    Resolver
	ResolverErr error
	Logger      *slog.Logger

	// Resiliency supplies the policies of calls to other apps (and this
	// one): targets.apps timeouts, retries and circuit breakers, and the
	// built-in retries of sidecars that cannot be reached
	// (DaprBuiltInServiceRetries), which replace Attempts and Backoff.
	Resiliency *resiliency.Provider
	// Attempts is how many instances (or times) a call is tried when they
	// cannot be reached, without Resiliency.
	Attempts int
	// ReplayLimit is the largest body kept in memory to be sent again on a
	// retry; larger or streamed bodies are retried only if none of their
	// bytes were sent.
	ReplayLimit int64
	// CacheTTL is how long resolved addresses are reused.
	CacheTTL time.Duration
	// Backoff is the pause before trying an instance again, without
	// Resiliency.
	Backoff time.Duration
}

// Block is the invocation building block.
type Block struct {
	o   Options
	log *slog.Logger
	bal *balancer
	// forwarded are the X-Forwarded-* / Forwarded values of this host.
	fwdFor, fwdHost, forwarded string
}

// New returns a block.
func New(o Options) *Block {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.ReplayLimit <= 0 {
		o.ReplayLimit = DefaultReplayLimit
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	b := &Block{o: o, log: o.Logger, bal: newBalancer(o.Resolver, o.CacheTTL)}
	b.fwdFor, b.fwdHost, b.forwarded = forwardedValues()
	return b
}

// forwardedValues are what daprd adds as X-Forwarded-For, X-Forwarded-Host
// and Forwarded (RFC 7239): this host's address and name.
func forwardedValues() (addr, host, fwd string) {
	addr = hostAddress()
	host, _ = os.Hostname()
	var parts []string
	if addr != "" {
		q := addr
		if strings.Contains(addr, ":") {
			q = `"[` + addr + `]"`
		}
		parts = append(parts, "for="+q, "by="+q)
	}
	if host != "" {
		parts = append(parts, "host="+host)
	}
	return addr, host, strings.Join(parts, ";")
}

// hostAddress is $DAPR_HOST_IP, else the first non-loopback IP of the host.
func hostAddress() string {
	if ip := os.Getenv("DAPR_HOST_IP"); ip != "" {
		return ip
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

// Invoke calls method on the app target ("app" or "app.namespace") and
// returns its response; the caller closes the response body. Errors are
// *apierr.Error (ERR_DIRECT_INVOKE) naming the target; context errors stay
// visible to errors.Is.
func (b *Block) Invoke(ctx context.Context, target string, req *invokemsg.Request) (*invokemsg.Response, error) {
	if req.Message == nil {
		return nil, directInvoke(target, errors.New("the request has no message"))
	}
	id, ns, err := b.parseTarget(target)
	if err != nil {
		return nil, directInvoke(target, err)
	}
	m, err := NormalizeMethod(req.Message.GetMethod())
	if err != nil {
		return nil, directInvoke(target, err)
	}
	req.Message.Method = m
	if req.Metadata == nil {
		req.Metadata = make(invokemsg.MD, 8)
	}
	b.addMetadata(req.Metadata, id)

	local := id == b.o.AppID && ns == b.o.Namespace
	if local && b.o.Local == nil {
		return nil, directInvoke(target, errors.New("cannot invoke local endpoint: app channel not initialized"))
	}
	var resp *invokemsg.Response
	if pol := b.o.Resiliency.App(id, m); pol != nil {
		resp, err = b.invokePolicy(ctx, pol, id, ns, local, req)
	} else if local {
		resp, err = b.o.Local.Invoke(ctx, req)
	} else {
		resp, err = b.invokeRemote(ctx, id, ns, req)
	}
	if err != nil {
		return nil, directInvoke(target, err)
	}
	return resp, nil
}

func directInvoke(target string, err error) error {
	kind := apierr.DirectInvoke
	if errors.Is(err, ErrPermissionDenied) {
		kind = apierr.DirectInvokeForbidden
	}
	return kind.Wrap(err, "failed to invoke, id: %s, err", target)
}

// parseTarget splits "app" or "app.namespace".
func (b *Block) parseTarget(target string) (id, ns string, err error) {
	if target == "" {
		return "", "", errors.New("app id is empty")
	}
	id, ns, found := strings.Cut(target, ".")
	switch {
	case !found:
		return target, b.o.Namespace, nil
	case id == "" || ns == "" || strings.Contains(ns, "."):
		return "", "", fmt.Errorf("invalid app id %s", target)
	}
	return id, ns, nil
}

// addMetadata adds what daprd adds to a call for another sidecar.
func (b *Block) addMetadata(md invokemsg.MD, callee string) {
	invokemsg.Set(md, invokemsg.DestinationAppID, callee)
	invokemsg.Set(md, invokemsg.CallerNamespaceHeader, b.o.Namespace)
	invokemsg.Set(md, invokemsg.CallerAppIDHeader, b.o.AppID)
	invokemsg.Set(md, invokemsg.CalleeAppIDHeader, callee)
	if b.fwdFor != "" {
		invokemsg.Append(md, "X-Forwarded-For", b.fwdFor)
	}
	if b.fwdHost != "" {
		invokemsg.Append(md, "X-Forwarded-Host", b.fwdHost)
	}
	invokemsg.Append(md, "Forwarded", b.forwarded)
}

// invokeRemote resolves the app and calls one of its sidecars, moving on
// to another (re-resolving) when one cannot be reached and the body can be
// sent again.
func (b *Block) invokeRemote(ctx context.Context, id, ns string, req *invokemsg.Request) (*invokemsg.Response, error) {
	if b.o.Resolver == nil {
		err := b.o.ResolverErr
		if err == nil {
			err = errors.New("no name resolver is configured")
		}
		return nil, fmt.Errorf("name resolution is not available: %w", err)
	}
	sent, err := b.prepareReplay(req)
	if err != nil {
		return nil, err
	}
	return b.callRemote(ctx, id, ns, req, sent)
}

// callRemote sends a prepared request (see prepareReplay) to a sidecar of
// the app, trying again while sidecars cannot be reached, as the built-in
// retries allow: another instance at once, the same one after the
// back-off.
func (b *Block) callRemote(ctx context.Context, id, ns string, req *invokemsg.Request, sent *countingReader) (*invokemsg.Response, error) {
	var tried []string
	var lastErr error
	retries := b.retries(id)
	var wait time.Duration
	for attempt := 1; ; attempt++ {
		addr, fresh, err := b.bal.pick(ctx, nameresolution.ResolveRequest{ID: id, Namespace: ns}, tried)
		if err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, err
		}
		if !fresh {
			if err := sleep(ctx, wait); err != nil {
				return nil, lastErr
			}
		}
		resp, err := b.o.Remote.Call(ctx, addr, req)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, ErrUnreachable) || ctx.Err() != nil {
			return nil, err
		}
		b.bal.markDown(addr, id, ns)
		lastErr = fmt.Errorf("%s (attempt %d of %d): %w", addr, attempt, retries.total(), err)
		if sent != nil && sent.n.Load() > 0 {
			return nil, lastErr // part of a streamed body is gone
		}
		var ok bool
		if wait, ok = retries.next(); !ok {
			return nil, lastErr
		}
		b.log.Debug("sidecar unreachable; trying again", "app_id", id, "address", addr, "attempt", attempt, "error", err)
		tried = append(tried, addr)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CallLocal delivers a call that arrived from another sidecar to the app.
// Errors wrap ErrInvalidMethod or ErrNoAppChannel, or are the channel's.
func (b *Block) CallLocal(ctx context.Context, req *invokemsg.Request) (*invokemsg.Response, error) {
	if req.Message == nil {
		return nil, fmt.Errorf("%w: the request has no message", ErrInvalidMethod)
	}
	m, err := NormalizeMethod(req.Message.GetMethod())
	if err != nil {
		return nil, err
	}
	req.Message.Method = m
	if b.o.Local == nil {
		return nil, ErrNoAppChannel
	}
	return b.o.Local.Invoke(ctx, req)
}
