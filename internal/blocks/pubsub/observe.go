package pubsub

import (
	"errors"
	"time"
)

// Outcomes of a delivery, as Options.OnDeliver reports them (daprd's
// process_status values).
const (
	OutcomeSuccess = "success"
	OutcomeRetry   = "retry"
	OutcomeDrop    = "drop"
)

// published tells Options.OnPublish about one message handed to a broker.
func (b *Block) published(pubsub, topic string, ok bool, start time.Time) {
	if b.opts.OnPublish != nil {
		b.opts.OnPublish(pubsub, topic, ok, time.Since(start))
	}
}

// delivered tells Options.OnDeliver about one delivery to the receiver:
// acknowledged, dropped by the receiver (DROP or 404), or to be retried.
func (r *running) delivered(s *subscription, err error, start time.Time) {
	on := r.b.opts.OnDeliver
	if on == nil {
		return
	}
	outcome := OutcomeSuccess
	switch {
	case errors.Is(err, errDropped):
		outcome = OutcomeDrop
	case err != nil:
		outcome = OutcomeRetry
	}
	on(s.pubsubName, s.topic, outcome, time.Since(start))
}
