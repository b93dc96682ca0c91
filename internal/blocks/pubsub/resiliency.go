package pubsub

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mecha-dev/mecha/internal/resiliency"
)

// outbound is the policy of calls to the broker of pubsub name
// (publishing); nil when none applies.
func (b *Block) outbound(name string) *resiliency.Policy {
	return b.opts.Resiliency.ComponentOutbound(name, resiliency.Pubsub)
}

// deliverResilient delivers one event under the pubsub's inbound policy,
// as daprd: a delivery the receiver did not accept (RETRY, an error
// status, a transport failure, a timeout) is tried again as the policy
// allows before the message goes back to the broker, whose own
// redelivery then applies. A DROP is the receiver's final answer.
func (r *running) deliverResilient(ctx context.Context, log *slog.Logger, s *subscription, ev *event, path string) error {
	pol := r.b.opts.Resiliency.ComponentInbound(s.pubsubName, resiliency.Pubsub)
	if pol == nil {
		return r.deliverTraced(ctx, log, s, ev, path)
	}
	return pol.Run(ctx, func(ctx context.Context) error {
		err := r.deliverTraced(ctx, log, s, ev, path)
		if errors.Is(err, errDropped) {
			return resiliency.Handled(err)
		}
		return err
	})
}

// deliverBulkResilient delivers a batch under the pubsub's inbound policy:
// a batch the receiver did not answer is tried again as the policy allows.
// Entries the receiver answered RETRY are left to the broker.
func (r *running) deliverBulkResilient(ctx context.Context, s *subscription, g *bulkRequest) ([]outcome, error) {
	pol := r.b.opts.Resiliency.ComponentInbound(s.pubsubName, resiliency.Pubsub)
	if pol == nil {
		return r.target.deliverBulk(ctx, r.log, g)
	}
	var outs []outcome
	err := pol.Run(ctx, func(ctx context.Context) (err error) {
		outs, err = r.target.deliverBulk(ctx, r.log, g)
		return err
	})
	return outs, err
}
