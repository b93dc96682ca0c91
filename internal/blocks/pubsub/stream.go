package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/mecha-dev/mecha/internal/apierr"
)

// StreamRequest opens a streaming subscription (SubscribeTopicEventsAlpha1).
type StreamRequest struct {
	PubsubName      string
	Topic           string
	Metadata        map[string]string
	DeadLetterTopic string
}

// Stream is a streaming subscription: the transport sends Events to the
// client and reports the client's verdicts with Processed. It has its own
// broker subscription, which ends with Close (the client went away) or
// when the sidecar stops (Done is then closed).
type Stream struct {
	b    *Block
	run  *running
	log  *slog.Logger
	ch   chan *runtimev1.TopicEventRequest
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	pending map[string]chan runtimev1.TopicEventResponse_TopicEventResponseStatus
}

// errStreamClosed fails deliveries to a stream that ended; the broker
// redelivers them.
var errStreamClosed = errors.New("stream closed")

// SubscribeStream subscribes on behalf of a streaming client; no app is
// needed. Events go to path "/" with the same delivery semantics as app
// subscriptions (dead letters included).
func (b *Block) SubscribeStream(ctx context.Context, req StreamRequest) (*Stream, error) {
	if _, ok := b.brokers.Get(req.PubsubName); !ok {
		return nil, apierr.PubsubNotFound.New("pubsub %s is not found", req.PubsubName)
	}
	s, err := compile(SubscriptionSpec{
		PubsubName: req.PubsubName, Topic: req.Topic, Metadata: req.Metadata,
		DeadLetterTopic: req.DeadLetterTopic, Rules: []RuleSpec{{Path: "/"}},
	}, Streaming)
	if err != nil {
		return nil, err
	}
	st := &Stream{
		b: b, ch: make(chan *runtimev1.TopicEventRequest), done: make(chan struct{}),
		pending: map[string]chan runtimev1.TopicEventResponse_TopicEventResponseStatus{},
		log:     b.log.With(slog.String("pubsub", req.PubsubName), slog.String("topic", req.Topic), slog.String("type", string(Streaming))),
	}
	b.mu.Lock()
	stopped := b.stopped
	b.mu.Unlock()
	if stopped {
		return nil, errors.New("the sidecar is shutting down")
	}
	// The subscription lives until Close, not until the caller's ctx.
	run, err := b.start(context.WithoutCancel(ctx), s, st)
	if err != nil {
		return nil, fmt.Errorf("failed to create subscription for %s: %w", req.PubsubName, err)
	}
	st.run = run
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		run.stop()
		return nil, errors.New("the sidecar is shutting down")
	}
	b.streams[st] = struct{}{}
	b.mu.Unlock()
	st.log.Info("streaming subscription started")
	return st, nil
}

// Events are the events to send to the client, one at a time.
func (s *Stream) Events() <-chan *runtimev1.TopicEventRequest { return s.ch }

// Done is closed when the subscription has ended.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Processed records the client's verdict on the event with id; verdicts
// for unknown ids (late, or never sent) are ignored.
func (s *Stream) Processed(id string, st runtimev1.TopicEventResponse_TopicEventResponseStatus) {
	s.mu.Lock()
	ch, ok := s.pending[id]
	s.mu.Unlock()
	if !ok {
		s.log.Debug("verdict for an event that is not awaited; ignored", "id", id)
		return
	}
	select {
	case ch <- st:
	default: // a second verdict for the same event
	}
}

// Close ends the subscription: the broker subscription stops and events
// being delivered fail (to be redelivered). Safe to call more than once.
func (s *Stream) Close() {
	s.once.Do(func() {
		close(s.done)
		if s.run != nil {
			s.run.stop()
		}
		s.b.mu.Lock()
		delete(s.b.streams, s)
		s.b.mu.Unlock()
		s.log.Info("streaming subscription ended")
	})
}

func (s *Stream) waitReady(context.Context) error { return nil }

// deliver sends the event on the stream and waits for the client's
// verdict.
func (s *Stream) deliver(ctx context.Context, log *slog.Logger, ev *event, path string) error {
	req, err := ev.topicEventRequest(path)
	if err != nil {
		return fmt.Errorf("error returned from app while processing pub/sub event: %w", err)
	}
	ch := make(chan runtimev1.TopicEventResponse_TopicEventResponseStatus, 1)
	s.mu.Lock()
	if _, dup := s.pending[req.GetId()]; dup {
		s.mu.Unlock()
		return fmt.Errorf("an event with id %s is already awaiting the client's verdict", req.GetId())
	}
	s.pending[req.GetId()] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, req.GetId())
		s.mu.Unlock()
	}()
	select {
	case s.ch <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errStreamClosed
	}
	select {
	case st := <-ch:
		return topicEventStatus(log, req.GetId(), st)
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errStreamClosed
	}
}

// deliverBulk is never called: streaming subscriptions are not bulk.
func (s *Stream) deliverBulk(context.Context, *slog.Logger, *bulkRequest) ([]outcome, error) {
	return nil, errors.New("bulk delivery is not supported on streams")
}
