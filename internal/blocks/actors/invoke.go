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
	resp, err := b.invokeApp(ctx, req, rid)
	release()
	if err != nil {
		return nil, invokeError(err)
	}
	return resp, nil
}
