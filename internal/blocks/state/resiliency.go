package state

import (
	"context"
	"errors"

	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// SetResiliency makes every call to a store go through the store's
// outbound resiliency policy (targets.components.<store>.outbound, or the
// Default*Statestore* policies). Call it before the block serves; nil
// (the default) applies none.
func (b *Block) SetResiliency(p *resiliency.Provider) { b.res = p }

// run calls op on store through its outbound policy. An ETag mismatch or
// invalid ETag is the caller's answer, not a failure of the store: it is
// neither retried nor counted by a circuit breaker.
func (b *Block) run(ctx context.Context, store string, op func(ctx context.Context) error) error {
	pol := b.res.ComponentOutbound(store, resiliency.Statestore)
	if pol == nil {
		return op(ctx)
	}
	return pol.Run(ctx, func(ctx context.Context) error {
		err := op(ctx)
		if errors.Is(err, cstate.ErrETagMismatch) || errors.Is(err, cstate.ErrETagInvalid) {
			return resiliency.Handled(err)
		}
		return err
	})
}
