package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mecha-dev/mecha/components/pubsub"
)

// Pulling. A subscription keeps up to pullBatch messages buffered (at least
// twice its concurrency), within pullBytes, so that handlers never wait on
// a round trip; it stays small so that the members of a group share a
// burst rather than the first one taking it all.
const (
	minPullBatch = 16
	maxPullBatch = 512
	// minPullBytes is the least byte budget of a pull; it is raised to
	// four times the server's max_payload, since a message larger than the
	// budget could never be delivered.
	minPullBytes = 8 << 20
)

// Re-establishing a subscription whose consumer went away (deleted, or
// lost with a memory-backed stream when the server restarted) waits from
// minRepairWait doubling to maxRepairWait between attempts.
const (
	minRepairWait = 100 * time.Millisecond
	maxRepairWait = 5 * time.Second
	// stopTimeout bounds the wait for a stopped pull subscription to
	// deliver its last message.
	stopTimeout = 10 * time.Second
	// defaultAckWait is the server's ack wait when ackWait is not set.
	defaultAckWait = 30 * time.Second
)

// subscription is one Subscribe call.
type subscription struct {
	b       *Broker
	topic   string
	handler pubsub.Handler
	// ctx ends when the subscription does: its ctx ended, or Close.
	ctx context.Context
	// sem bounds the handler calls running at once; nil runs them one at a
	// time on the pull's own goroutine, which keeps the stream's order.
	sem     chan struct{}
	workers sync.WaitGroup
	// repair is poked when the pull reports that its consumer may be gone.
	repair chan struct{}

	cons      jetstream.Consumer
	keepAlive time.Duration // InProgress interval: half the ack wait
}

// Subscribe creates (or updates) the group's durable consumer on the topic
// and starts pulling from it. Handler calls run on goroutines the broker
// owns, at most concurrency at once, until ctx ends or Close.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := checkTopic(req.Topic); err != nil {
		return fmt.Errorf("pubsub.jetstream: subscribe: %w", err)
	}
	if handler == nil {
		return errors.New("pubsub.jetstream: subscribe: handler is nil")
	}
	s := &subscription{b: b, topic: req.Topic, handler: handler, repair: make(chan struct{}, 1)}
	if b.cfg.Concurrency > 1 {
		s.sem = make(chan struct{}, b.cfg.Concurrency)
	}
	if err := s.bind(ctx); err != nil {
		return err
	}

	b.mu.Lock()
	defer b.mu.Unlock() // held so that Close cannot run between the check and wg.Add
	if b.closed {
		return ErrClosed
	}
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	s.ctx = sctx
	cc, err := s.consume()
	if err != nil {
		stop()
		cancel()
		return err
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer stop()
		defer cancel()
		s.run(cc)
	}()
	return nil
}

// bind resolves the topic's stream and the group's consumer on it.
func (s *subscription) bind(ctx context.Context) error {
	b := s.b
	ref, err := b.streams.get(ctx, s.topic)
	if err != nil {
		return err
	}
	cons, err := b.consumer(ctx, ref, s.topic)
	if err != nil {
		return err
	}
	ackWait := cons.CachedInfo().Config.AckWait
	if ackWait <= 0 {
		ackWait = defaultAckWait
	}
	s.cons, s.keepAlive = cons, ackWait/2
	return nil
}

// consume starts pulling from the bound consumer.
func (s *subscription) consume() (jetstream.ConsumeContext, error) {
	conc := 1
	if s.sem != nil {
		conc = cap(s.sem)
	}
	batch := min(max(2*conc, minPullBatch), maxPullBatch)
	bytes := max(minPullBytes, 4*int(s.b.nc.MaxPayload()))
	cc, err := s.cons.Consume(s.receive,
		jetstream.PullMaxMessagesWithBytesLimit(batch, bytes),
		jetstream.ConsumeErrHandler(s.pullError),
	)
	if err != nil {
		return nil, fmt.Errorf("pubsub.jetstream: subscribe to %q: %w", s.topic, err)
	}
	return cc, nil
}

// run waits for the subscription to end, re-establishing the pull when
// its consumer went away, and then stops it and waits for its handlers.
func (s *subscription) run(cc jetstream.ConsumeContext) {
	b := s.b
	wait := time.Duration(0)
	for {
		select {
		case <-s.ctx.Done():
			s.stop(cc)
			return
		case <-cc.Closed():
			// The pull ended by itself (its consumer was deleted).
		case <-s.repair:
			if !s.consumerGone() {
				continue
			}
		}
		s.stop(cc)
		b.log.Warn("the consumer is gone; creating it again", "topic", s.topic, "consumer", s.cons.CachedInfo().Name)
		for {
			wait = min(max(2*wait, minRepairWait), maxRepairWait)
			if !sleep(s.ctx, wait) {
				return
			}
			b.streams.forget(s.topic)
			err := s.bind(s.ctx)
			var next jetstream.ConsumeContext
			if err == nil {
				next, err = s.consume()
			}
			if err == nil {
				cc, wait = next, 0
				b.log.Info("consuming again", "topic", s.topic)
				break
			}
			b.log.Debug("re-establishing the subscription failed; retrying", "topic", s.topic, "error", err)
		}
	}
}

// stop ends the pull and waits until no handler runs any more.
func (s *subscription) stop(cc jetstream.ConsumeContext) {
	cc.Stop()
	select {
	case <-cc.Closed(): // the last receive call has returned
	case <-time.After(stopTimeout):
		s.b.log.Warn("the pull subscription did not stop in time", "topic", s.topic)
	}
	s.workers.Wait()
}

// consumerGone reports whether the bound consumer no longer exists.
func (s *subscription) consumerGone() bool {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	_, err := s.cons.Info(ctx)
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// pullError is told of the pull's problems; most are transient (missed
// heartbeats while the server restarts) and the pull recovers by itself.
// Those that say the consumer may be gone ask run to check.
func (s *subscription) pullError(_ jetstream.ConsumeContext, err error) {
	if s.ctx.Err() != nil {
		return
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		select {
		case s.repair <- struct{}{}:
		default:
		}
	}
	s.b.log.Debug("pulling messages", "topic", s.topic, "error", err)
}

// receive is called by the pull for every message, one at a time.
func (s *subscription) receive(m jetstream.Msg) {
	if s.ctx.Err() != nil {
		s.giveBack(m)
		return
	}
	if s.sem == nil {
		s.handle(m)
		return
	}
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		s.giveBack(m)
		return
	}
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		defer func() { <-s.sem }()
		s.handle(m)
	}()
}

// giveBack hands a message that will not be handled here back to the
// group at once, rather than after the ack wait.
func (s *subscription) giveBack(m jetstream.Msg) {
	if !s.b.cfg.AckNone {
		_ = m.Nak()
	}
}

// handle delivers one message to the handler and answers the server:
// Ack on success, NAK with a back-off on failure, NAK at once when the
// subscription ended meanwhile. An expired message is terminated instead of
// delivered.
func (s *subscription) handle(m jetstream.Msg) {
	b := s.b
	if expired(m.Headers()) {
		if err := m.Term(); err != nil {
			b.log.Debug("cannot terminate an expired message", "topic", s.topic, "error", err)
		}
		return
	}
	md, err := readMetadata(m.Headers())
	if err != nil {
		b.log.Warn("ignoring part of a message's metadata: "+metadataHeader+" is not a JSON object of strings", "topic", s.topic, "error", err)
	}
	var ka *keepAlive
	if !b.cfg.AckNone {
		ka = startKeepAlive(m, s.keepAlive)
	}
	err = s.call(&pubsub.Message{Topic: s.topic, Data: m.Data(), Metadata: md})
	ka.stop()
	if b.cfg.AckNone {
		return
	}
	switch {
	case err == nil:
		err = m.Ack()
	case s.ctx.Err() != nil:
		err = m.Nak()
	default:
		var delivered uint64 = 1
		if meta, merr := m.Metadata(); merr == nil {
			delivered = meta.NumDelivered
		}
		delay := b.cfg.nakDelay(delivered)
		b.log.Debug("handler failed; the message comes back later", "topic", s.topic, "delivery", delivered, "after", delay)
		err = m.NakWithDelay(delay)
	}
	if err != nil && s.ctx.Err() == nil {
		b.log.Warn("cannot answer the server for a message; it will be delivered again", "topic", s.topic, "error", err)
	}
}

// call runs the handler, turning a panic into an error so that one bad
// message cannot take the sidecar down.
func (s *subscription) call(msg *pubsub.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("pubsub.jetstream: handler panicked: %v", p)
			s.b.log.Error("handler panicked; the message comes back later", "topic", s.topic, "panic", p)
		}
	}()
	return s.handler(s.ctx, msg)
}

// expired reports whether a message's ttlInSeconds has passed.
func expired(h nats.Header) bool {
	v := h.Get(expiresHeader)
	if v == "" {
		return false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	return err == nil && time.Now().UnixMilli() >= ms
}

// keepAlive tells the server, every interval while a handler runs, that
// the message is still being worked on, so that it is not delivered again
// to another member of the group after the ack wait.
type keepAlive struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func startKeepAlive(m jetstream.Msg, every time.Duration) *keepAlive {
	ka := &keepAlive{}
	ka.mu.Lock()
	defer ka.mu.Unlock()
	ka.t = time.AfterFunc(every, func() {
		_ = m.InProgress()
		ka.mu.Lock()
		defer ka.mu.Unlock()
		if !ka.stopped {
			ka.t.Reset(every)
		}
	})
	return ka
}

func (ka *keepAlive) stop() {
	if ka == nil {
		return
	}
	ka.mu.Lock()
	defer ka.mu.Unlock()
	ka.stopped = true
	ka.t.Stop()
}

// sleep waits for d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
