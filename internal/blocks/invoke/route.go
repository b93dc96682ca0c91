package invoke

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mecha-dev/mecha/components/nameresolution"
)

// Callers that talk to the callee themselves instead of through Invoke —
// the transparent gRPC proxy, which forwards raw streams — use Target and
// Dial, so that they resolve and balance exactly as Invoke does: one
// resolver cache, one round robin, one list of unreachable instances.

// Target parses target ("app" or "app.namespace") and reports whether it
// names this sidecar's own app.
func (b *Block) Target(target string) (id, ns string, local bool, err error) {
	id, ns, err = b.parseTarget(target)
	if err != nil {
		return "", "", false, err
	}
	return id, ns, id == b.o.AppID && ns == b.o.Namespace, nil
}

// Dial calls try with the internal address of one of the sidecars of app
// id in namespace ns, chosen round robin as Invoke chooses. When try's
// error wraps ErrUnreachable (nothing reached the callee), the instance is
// avoided for a while and try is called again with another one, as the
// built-in service retries allow. It returns nil once try succeeds, else the last
// error (the resolver's when the app cannot be resolved).
func (b *Block) Dial(ctx context.Context, id, ns string, try func(addr string) error) error {
	if b.o.Resolver == nil {
		err := b.o.ResolverErr
		if err == nil {
			err = errors.New("no name resolver is configured")
		}
		return fmt.Errorf("name resolution is not available: %w", err)
	}
	var tried []string
	var lastErr error
	retries := b.retries(id)
	var wait time.Duration
	for attempt := 1; ; attempt++ {
		addr, fresh, err := b.bal.pick(ctx, nameresolution.ResolveRequest{ID: id, Namespace: ns}, tried)
		if err != nil {
			if lastErr != nil {
				return lastErr
			}
			return err
		}
		if !fresh {
			if err := sleep(ctx, wait); err != nil {
				return lastErr
			}
		}
		err = try(addr)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrUnreachable) || ctx.Err() != nil {
			return err
		}
		b.bal.markDown(addr, id, ns)
		lastErr = fmt.Errorf("%s (attempt %d of %d): %w", addr, attempt, retries.total(), err)
		var ok bool
		if wait, ok = retries.next(); !ok {
			return lastErr
		}
		b.log.Debug("sidecar unreachable; trying again", "app_id", id, "address", addr, "attempt", attempt, "error", err)
		tried = append(tried, addr)
	}
}
