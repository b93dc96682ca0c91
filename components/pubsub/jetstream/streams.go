package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// streamRef is the stream a topic's messages go to.
type streamRef struct {
	name string
	// own means the broker made the stream for this topic alone (no
	// streamName, and the stream is named after the topic), so consumers
	// on it need no topic in their names.
	own bool
	// ttl means the stream allows per-message TTLs (Nats-TTL).
	ttl bool
}

// streamCache resolves each topic's stream once per broker, creating it if
// needed; concurrent first publishes to a topic share one resolution.
type streamCache struct {
	b *Broker

	mu    sync.Mutex
	known map[string]*streamCall
}

// streamCall is one resolution; done is closed when ref and err are set.
type streamCall struct {
	done chan struct{}
	ref  streamRef
	err  error
}

// get returns topic's stream, resolving it on first use. A failed
// resolution is not remembered.
func (c *streamCache) get(ctx context.Context, topic string) (streamRef, error) {
	c.mu.Lock()
	if call, ok := c.known[topic]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.ref, call.err
		case <-ctx.Done():
			return streamRef{}, ctx.Err()
		}
	}
	call := &streamCall{done: make(chan struct{})}
	c.known[topic] = call
	c.mu.Unlock()

	call.ref, call.err = c.b.resolveStream(ctx, topic)
	if call.err != nil {
		c.mu.Lock()
		if c.known[topic] == call {
			delete(c.known, topic)
		}
		c.mu.Unlock()
	}
	close(call.done)
	return call.ref, call.err
}

// forget drops what is known of topic's stream, so that the next use
// looks it up again.
func (c *streamCache) forget(topic string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if call, ok := c.known[topic]; ok {
		select {
		case <-call.done:
			delete(c.known, topic)
		default: // being resolved right now: that is fresh enough
		}
	}
}

// resolveStream finds or creates the stream for topic (see the package
// doc).
func (b *Broker) resolveStream(ctx context.Context, topic string) (streamRef, error) {
	if b.cfg.StreamName != "" {
		return b.namedStream(ctx, b.cfg.StreamName, topic)
	}
	for attempt := 0; ; attempt++ {
		name, err := b.js.StreamNameBySubject(ctx, topic)
		if err == nil {
			s, err := b.js.Stream(ctx, name)
			if err != nil {
				return streamRef{}, fmt.Errorf("pubsub.jetstream: stream %q of topic %q: %w", name, topic, err)
			}
			return refOf(s.CachedInfo(), name == nameFor(topic)), nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return streamRef{}, fmt.Errorf("pubsub.jetstream: looking up the stream of topic %q: %w", topic, err)
		}
		name = nameFor(topic)
		s, err := b.js.CreateStream(ctx, b.streamConfig(name, topic))
		if err == nil {
			b.log.Info("created a stream for the topic", "topic", topic, "stream", name)
			return refOf(s.CachedInfo(), true), nil
		}
		// Another sidecar may have created it meanwhile: look again, once.
		if attempt > 0 || ctx.Err() != nil {
			return streamRef{}, fmt.Errorf("pubsub.jetstream: creating stream %q for topic %q: %w", name, topic, err)
		}
	}
}

// namedStream returns stream name, creating it for topic if it does not
// exist and adding topic to its subjects if they do not cover it.
func (b *Broker) namedStream(ctx context.Context, name, topic string) (streamRef, error) {
	for attempt := 0; ; attempt++ {
		s, err := b.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = b.js.CreateStream(ctx, b.streamConfig(name, topic))
			if err == nil {
				b.log.Info("created the stream", "stream", name, "topic", topic)
			}
		}
		if err == nil {
			info := s.CachedInfo()
			if covers(info.Config.Subjects, topic) {
				return refOf(info, false), nil
			}
			cfg := info.Config
			cfg.Subjects = append(slices.Clone(cfg.Subjects), topic)
			if _, err = b.js.UpdateStream(ctx, cfg); err == nil {
				b.log.Info("added the topic to the stream's subjects", "stream", name, "topic", topic)
				// Read it back: another sidecar may have replaced the
				// subjects with its own list meanwhile.
				err = errors.New("the stream's subjects keep changing")
				if attempt < 3 {
					continue
				}
			}
		}
		if attempt >= 3 || ctx.Err() != nil {
			return streamRef{}, fmt.Errorf("pubsub.jetstream: stream %q for topic %q: %w", name, topic, err)
		}
	}
}

func refOf(info *jetstream.StreamInfo, own bool) streamRef {
	return streamRef{name: info.Config.Name, own: own, ttl: info.Config.AllowMsgTTL}
}

// streamConfig is the configuration of a stream the broker creates.
// Per-message TTLs are asked for; servers before 2.11 ignore the field, and
// the stream's info then says they are not allowed.
func (b *Broker) streamConfig(name, topic string) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:        name,
		Description: "Created by Mecha (pubsub.jetstream) for topic " + topic,
		Subjects:    []string{topic},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		Replicas:    b.cfg.Replicas,
		MaxAge:      b.cfg.StreamMaxAge,
		MaxBytes:    -1,
		MaxMsgs:     -1,
		AllowMsgTTL: true,
	}
	if b.cfg.MemoryStorage {
		cfg.Storage = jetstream.MemoryStorage
	}
	if b.cfg.StreamMaxBytes > 0 {
		cfg.MaxBytes = b.cfg.StreamMaxBytes
	}
	return cfg
}

// consumerConfig is the durable consumer of this broker's group on topic
// in stream ref.
func (b *Broker) consumerConfig(ref streamRef, topic string) jetstream.ConsumerConfig {
	name := b.cfg.Group
	if !ref.own {
		name += "_" + topic
	}
	c := b.cfg
	cfg := jetstream.ConsumerConfig{
		Durable:       nameFor(name),
		Description:   fmt.Sprintf("Mecha consumer group %q on topic %q", c.Group, topic),
		DeliverPolicy: c.DeliverPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: topic,
		Replicas:      c.Replicas,
		MemoryStorage: c.MemoryStorage,
	}
	if c.AckNone {
		cfg.AckPolicy = jetstream.AckNonePolicy
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = -1
	}
	switch c.DeliverPolicy {
	case jetstream.DeliverByStartSequencePolicy:
		cfg.OptStartSeq = c.StartSequence
	case jetstream.DeliverByStartTimePolicy:
		t := c.StartTime
		cfg.OptStartTime = &t
	}
	return cfg
}

// consumer creates or updates the group's durable consumer on topic. When
// the server refuses the update (some settings, such as the deliver
// policy, cannot change), the existing consumer is used as it is.
func (b *Broker) consumer(ctx context.Context, ref streamRef, topic string) (jetstream.Consumer, error) {
	cfg := b.consumerConfig(ref, topic)
	cons, err := b.js.CreateOrUpdateConsumer(ctx, ref.name, cfg)
	if err == nil {
		return cons, nil
	}
	if existing, gerr := b.js.Consumer(ctx, ref.name, cfg.Durable); gerr == nil {
		b.log.Warn("the consumer exists with settings that cannot be changed; using it as it is", "stream", ref.name, "consumer", cfg.Durable, "error", err)
		return existing, nil
	}
	return nil, fmt.Errorf("pubsub.jetstream: creating consumer %q on stream %q: %w", cfg.Durable, ref.name, err)
}

// covers reports whether one of the subject filters matches subject.
func covers(filters []string, subject string) bool {
	return slices.ContainsFunc(filters, func(f string) bool { return subjectMatches(f, subject) })
}

// subjectMatches reports whether filter, a subject with NATS wildcards ('*'
// for one token, '>' for the rest), matches subject.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		switch {
		case f == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case f != "*" && f != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}
