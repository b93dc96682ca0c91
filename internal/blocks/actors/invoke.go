package actors

import (
	"context"
	"errors"
	"path"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/resiliency"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// InvokeRequest is an actor method call.
type InvokeRequest struct {
	ActorType, ActorID, Method string
	Data                       []byte
	ContentType                string
	// Metadata holds the caller's headers (HTTP) or metadata (gRPC); they
	// reach the app as headers, Dapr-Reentrancy-Id among them.
	Metadata invokemsg.MD
}

// InvokeResponse is the app's answer.
type InvokeResponse struct {
	// Status is the app's HTTP status: 200, or any status with
	// X-DaprErrorResponseHeader (an actor error the caller gets as is).
	Status      int
	Headers     invokemsg.MD
	ContentType string
	Data        []byte
}

// ActorError reports an answer the app marked with
// X-DaprErrorResponseHeader.
func (r *InvokeResponse) ActorError() bool {
	return invokemsg.Get(r.Headers, ErrorResponseHeader) != ""
}

// remoteHeader marks calls another sidecar forwarded (daprd's name).
const remoteHeader = "X-Dapr-Remote"

// normalizeMethod applies daprd's rules to an actor method name: no
// "#", "?", NUL or control characters; "." and ".." segments resolved
// without escaping the method.
func normalizeMethod(m string) (string, error) {
	if strings.ContainsAny(m, "#?\x00") {
		return "", apierr.BadRequest.New("method contains forbidden character: %q", m)
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 0x20 || c == 0x7f {
			return "", apierr.BadRequest.New("method contains control character at position %d: %q", i, m)
		}
	}
	c := path.Clean(m)
	for strings.HasPrefix(c, "../") {
		c = c[3:]
	}
	if c == ".." || c == "." {
		c = ""
	}
	c = strings.TrimPrefix(c, "/")
	if c == "" {
		return "", apierr.BadRequest.New("actor method is empty")
	}
	return c, nil
}

// Invoke calls an actor method wherever the actor lives. A table that is
// stale here or at the owner, or an owner that went away, leads to retries
// with the next table (up to RetryTimeout), never to a permanent error.
//
// The whole call, forwarding included, runs under the actor's pre-lock
// resiliency policy (daprd's ActorPreLockPolicy: the retry policy and the
// circuit breaker(s) of targets.actors, per type, id or both; no timeout,
// as waiting for the turn is not bounded). As in daprd, a failed call is
// retried whatever failed (the app's error status, an actor error answer,
// the owner's post-lock timeout), except a method the app does not know.
func (b *Block) Invoke(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error) {
	if err := validateActor(req.ActorType, req.ActorID); err != nil {
		return nil, err
	}
	m, err := normalizeMethod(req.Method)
	if err != nil {
		return nil, err
	}
	req.Method = m
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	pol := b.res.ActorPreLock(req.ActorType, req.ActorID)
	if pol == nil {
		return b.route(ctx, req)
	}
	var ok, actorErr *InvokeResponse
	err = pol.Run(ctx, func(ctx context.Context) error {
		resp, err := b.route(ctx, req)
		switch {
		case err != nil && strings.Contains(err.Error(), "actor method not found"):
			return resiliency.Permanent(err)
		case err != nil:
			return err
		case resp.ActorError():
			actorErr = resp
			return errActorErrorAnswer
		}
		ok = resp
		return nil
	})
	switch {
	case err == nil:
		return ok, nil
	case errors.Is(err, errActorErrorAnswer):
		// The last attempt's actor error is the app's answer.
		return actorErr, nil
	case errors.Is(err, resiliency.ErrBreakerOpen), errors.Is(err, resiliency.ErrTooManyRequests):
		return nil, apierr.ActorInvokeMethod.New("error invoke actor method: %s", err)
	}
	return nil, invokeError(err)
}

// errActorErrorAnswer marks an attempt the app answered with an actor
// error (X-DaprErrorResponseHeader): a failure for the resiliency policy,
// as in daprd.
var errActorErrorAnswer = errors.New("the actor answered with an actor error")

// route runs one attempt of a call: on this host when it owns the actor,
// else forwarded to the owner.
func (b *Block) route(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error) {
	start := time.Now()
	deadline := start.Add(b.retryTimeout)
	delay := 10 * time.Millisecond
	for {
		if err := b.gate.wait(ctx); err != nil {
			return nil, apierr.From(err)
		}
		changes := b.gate.changes()
		addr, ok := b.placement.Lookup(req.ActorType, req.ActorID)
		var lastErr error
		switch {
		case !ok:
			lastErr = apierr.ActorInvokeMethod.New("error invoke actor method: did not find address for actor %s/%s: no host serves actor type %s", req.ActorType, req.ActorID, req.ActorType)
		case addr == b.address:
			resp, err := b.invokeLocal(ctx, req)
			if !errors.Is(err, errDeactivated) {
				return resp, err
			}
			// The activation went idle or moved while the call waited:
			// route again.
			continue
		case b.remote == nil:
			return nil, apierr.ActorInvokeMethod.New("error invoke actor method: actor %s/%s lives on %s, and this sidecar cannot call other sidecars", req.ActorType, req.ActorID, addr)
		default:
			resp, err := b.remote.CallActor(ctx, addr, req)
			if err == nil {
				return resp, nil
			}
			if !errors.Is(err, ErrActorMoved) && !errors.Is(err, ErrUnreachable) {
				return nil, invokeError(err)
			}
			lastErr = apierr.ActorInvokeMethod.Wrap(err, "error invoke actor method: the actor's host %s", addr)
		}
		if ctx.Err() != nil {
			return nil, apierr.From(ctx.Err())
		}
		if now := time.Now(); now.After(deadline) || (!ok && now.Sub(start) >= b.notFoundTimeout) {
			return nil, lastErr
		}
		b.log.Debug("actor call waits for a new placement table", "type", req.ActorType, "id", req.ActorID, "reason", lastErr)
		t := time.NewTimer(delay)
		select {
		case <-changes:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, apierr.From(ctx.Err())
		}
		t.Stop()
		delay = min(delay*2, time.Second)
	}
}

// invokeError maps a failure of a call to ERR_ACTOR_INVOKE_METHOD with
// daprd's message.
func invokeError(err error) error {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return apierr.From(err)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "error invoke actor method: ") {
		return apierr.ActorInvokeMethod.New("%s", msg)
	}
	return apierr.ActorInvokeMethod.New("error invoke actor method: %s", msg)
}

// CallLocal serves a call another sidecar forwarded here (CallActor). It
// answers ErrActorMoved when, by this host's table, the actor lives
// elsewhere, so that the caller retries with a newer table.
func (b *Block) CallLocal(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error) {
	if err := validateActor(req.ActorType, req.ActorID); err != nil {
		return nil, err
	}
	m, err := normalizeMethod(req.Method)
	if err != nil {
		return nil, err
	}
	req.Method = m
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	for range 10 {
		if err := b.gate.wait(ctx); err != nil {
			return nil, apierr.From(err)
		}
		if addr, ok := b.placement.Lookup(req.ActorType, req.ActorID); !ok || addr != b.address {
			return nil, ErrActorMoved
		}
		resp, err := b.invokeLocal(ctx, req)
		if !errors.Is(err, errDeactivated) {
			return resp, err
		}
	}
	return nil, ErrActorMoved
}

// invokeLocal runs the call on this host's activation of the actor.
func (b *Block) invokeLocal(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error) {
	cfg, ok := b.typeConfig(req.ActorType)
	if !ok {
		return nil, apierr.ActorInvokeMethod.New("error invoke actor method: actor type %s is not hosted by app %s", req.ActorType, b.appID)
	}
	rid := ""
	if cfg.Reentrant {
		if rid = invokemsg.Get(req.Metadata, ReentrancyHeader); rid == "" {
			rid = uuid.NewString()
		}
	}
	a, err := b.table.getOrCreate(ctx, req.ActorType, req.ActorID)
	if err != nil {
		return nil, apierr.From(err)
	}
	release, err := a.acquire(ctx, rid, cfg.MaxStackDepth)
	switch {
	case errors.Is(err, errDeactivated):
		return nil, err
	case errors.Is(err, errStackDepth):
		return nil, apierr.ActorStackDepth.New("maximum stack depth exceeded")
	case err != nil:
		return nil, apierr.From(err)
	}
	var resp *InvokeResponse
	sctx, span := tracing.StartActorApp(ctx, req.ActorType, req.ActorID, req.Method)
	err = b.postLock(sctx, req.ActorType, req.ActorID, func(ctx context.Context) (err error) {
		resp, err = b.invokeApp(ctx, req, rid)
		return err
	})
	tracing.End(span, err)
	release()
	if err != nil {
		return nil, invokeError(err)
	}
	return resp, nil
}

// postLock runs a call to the app, made while the actor's turn is held,
// under the actor's post-lock resiliency policy (daprd's
// ActorPostLockPolicy: the timeout of targets.actors, no retries). A call
// that runs out of time fails with daprd's error.
func (b *Block) postLock(ctx context.Context, typ, id string, call func(ctx context.Context) error) error {
	pol := b.res.ActorPostLock(typ, id)
	if pol == nil {
		return call(ctx)
	}
	err := pol.Run(ctx, func(ctx context.Context) error {
		return resiliency.Permanent(call(ctx))
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return apierr.ActorInvokeMethod.New("error invoke actor method: %s", context.DeadlineExceeded)
	}
	return err
}
