package pubsub

import (
	"context"
	"errors"
	"maps"
	"time"

	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
)

// errDropped is a receiver's verdict that an event must not be retried
// (DROP, or an HTTP 404): it is acknowledged, and dead-lettered when the
// subscription has a dead-letter topic.
var errDropped = errors.New("the event was dropped by the app")

// deadLetterTimeout bounds publishing to a dead-letter topic, as daprd.
const deadLetterTimeout = 30 * time.Second

// handle is the broker handler of a subscription: rctx is the
// subscription's lifetime, hctx the broker's for this message.
func (r *running) handle(rctx, hctx context.Context, msg *cpubsub.Message) error {
	if !r.gate.enter() {
		return errClosed
	}
	defer r.gate.leave()
	ctx, cancel := context.WithCancel(hctx)
	defer cancel()
	defer context.AfterFunc(rctx, cancel)()
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return r.abandoned(rctx, ctx.Err())
	}
	defer func() { <-r.sem }()
	err := r.process(ctx, r.sub.Load(), msg)
	if err != nil {
		return r.abandoned(rctx, err)
	}
	return nil
}

// abandoned is the error for a message whose handling failed: when the
// subscription is being stopped it is errClosed, so the broker keeps the
// message for redelivery.
func (r *running) abandoned(rctx context.Context, err error) error {
	if rctx.Err() != nil {
		return errClosed
	}
	return err
}

// process is daprd's per-message flow: decode, drop expired events, pick
// the route, wait for the receiver, deliver, and turn the outcome into an
// acknowledgement (nil), a redelivery (an error) or a dead letter.
func (r *running) process(ctx context.Context, s *subscription, msg *cpubsub.Message) error {
	ev, err := r.b.decode(r.br, s, msg)
	if err != nil {
		r.log.Error("cannot read the pub/sub event", "error", err)
		return r.failed(ctx, s, msg, err)
	}
	log := r.log.With("id", ev.id())
	if ev.expired() {
		log.Warn("dropping expired pub/sub event", "expiration", ev.ce[fieldExpiration])
		_ = r.deadLetter(ctx, s, msg)
		return nil
	}
	path, ok, err := route(s.rules, ev.ce)
	if err != nil {
		log.Error("error finding a matching route for the event", "error", err)
		return r.failed(ctx, s, msg, err)
	}
	if !ok {
		log.Debug("no route matches the event; skipping")
		_ = r.deadLetter(ctx, s, msg)
		return nil
	}
	if err := r.target.waitReady(ctx); err != nil {
		return err
	}
	start := time.Now()
	err = r.deliverResilient(ctx, log, s, ev, path)
	r.delivered(s, err, start)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errDropped):
		if s.deadLetterTopic != "" {
			if derr := r.deadLetter(ctx, s, msg); derr != nil {
				return err
			}
		}
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return r.failed(ctx, s, msg, err)
}

// failed is the outcome of a message that could not be processed: with a
// dead-letter topic it goes there (and is acknowledged once it has), as in
// daprd; otherwise the error makes the broker redeliver it.
func (r *running) failed(ctx context.Context, s *subscription, msg *cpubsub.Message, err error) error {
	if s.deadLetterTopic != "" && ctx.Err() == nil && r.deadLetter(ctx, s, msg) == nil {
		return nil
	}
	return err
}

// deadLetter publishes the message as it came from the broker to the
// subscription's dead-letter topic on the same pubsub (publishing scopes
// apply); nothing happens without one.
func (r *running) deadLetter(ctx context.Context, s *subscription, msg *cpubsub.Message) error {
	if s.deadLetterTopic == "" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !r.br.scopes.canPublish(s.deadLetterTopic) {
		err := errors.New("topic " + s.deadLetterTopic + " is not allowed for app id " + r.b.opts.AppID)
		r.log.Error("error sending message to dead letter", "deadLetterTopic", s.deadLetterTopic, "error", err)
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
	defer cancel()
	md := maps.Clone(msg.Metadata)
	err := r.br.Publish(pctx, &cpubsub.PublishRequest{
		Topic: r.b.topic(r.br, s.deadLetterTopic), Data: msg.Data, ContentType: msg.Metadata["content-type"], Metadata: md,
	})
	if err != nil {
		r.log.Error("error sending message to dead letter", "deadLetterTopic", s.deadLetterTopic, "error", err)
		return err
	}
	r.log.Info("message sent to the dead-letter topic", "deadLetterTopic", s.deadLetterTopic)
	return nil
}
