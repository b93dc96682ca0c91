package pubsub

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Type says where a subscription comes from; the names are the metadata
// API's (runtimev1.PubsubSubscriptionType).
type Type string

// The subscription types.
const (
	Declarative  Type = "DECLARATIVE"
	Programmatic Type = "PROGRAMMATIC"
	Streaming    Type = "STREAMING"
)

// SubscriptionSpec is a subscription as declared: a Subscription resource
// or one entry of the app's programmatic answer.
type SubscriptionSpec struct {
	// Name is the Subscription resource's name (declarative only).
	Name       string
	PubsubName string
	Topic      string
	// Metadata is passed to the broker's Subscribe; rawPayload=true means
	// the messages are not CloudEvents.
	Metadata map[string]string
	// Rules are evaluated in order; Default (or v1's route) catches the
	// rest.
	Rules           []RuleSpec
	Default         string
	DeadLetterTopic string
	BulkSubscribe   BulkSubscribe
}

// RuleSpec is one routing rule: a CEL expression over `event` and the app
// path for the events it matches.
type RuleSpec struct {
	Match string
	Path  string
}

// BulkSubscribe asks for events in batches.
type BulkSubscribe struct {
	Enabled            bool
	MaxMessagesCount   int32
	MaxAwaitDurationMs int32
}

// Defaults of bulk subscriptions, as daprd's.
const (
	defaultBulkCount = 100
	defaultBulkAwait = time.Second
)

// subscription is a compiled, validated subscription.
type subscription struct {
	name            string
	typ             Type
	pubsubName      string
	topic           string
	metadata        map[string]string
	rules           []rule
	deadLetterTopic string
	raw             bool
	bulk            bool
	bulkCount       int
	bulkAwait       time.Duration
}

// compile validates a spec and compiles its rules; the error says what is
// wrong in the user's terms.
func compile(spec SubscriptionSpec, typ Type) (*subscription, error) {
	if !validName(spec.PubsubName) {
		return nil, errors.New("pubsubname is empty")
	}
	if !validName(spec.Topic) {
		return nil, errors.New("topic is empty")
	}
	s := &subscription{
		name: spec.Name, typ: typ, pubsubName: spec.PubsubName, topic: spec.Topic,
		metadata: maps.Clone(spec.Metadata), deadLetterTopic: spec.DeadLetterTopic,
	}
	raw, err := rawPayload(spec.Metadata)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	s.raw = raw
	for i, r := range spec.Rules {
		cr, err := compileRule(r.Match, r.Path)
		if err != nil {
			return nil, fmt.Errorf("routes.rules[%d]: %w", i, err)
		}
		s.rules = append(s.rules, cr)
	}
	if spec.Default != "" {
		s.rules = append(s.rules, rule{path: spec.Default})
	}
	if bs := spec.BulkSubscribe; bs.Enabled {
		if bs.MaxMessagesCount < 0 || bs.MaxAwaitDurationMs < 0 {
			return nil, errors.New("bulkSubscribe: maxMessagesCount and maxAwaitDurationMs must not be negative")
		}
		s.bulk = true
		s.bulkCount = int(bs.MaxMessagesCount)
		if s.bulkCount == 0 {
			s.bulkCount = defaultBulkCount
		}
		s.bulkAwait = time.Duration(bs.MaxAwaitDurationMs) * time.Millisecond
		if s.bulkAwait == 0 {
			s.bulkAwait = defaultBulkAwait
		}
	}
	return s, nil
}

// sameBrokerSubscription reports whether a and b subscribe to the broker
// the same way, so that one can replace the other without resubscribing.
func sameBrokerSubscription(a, b *subscription) bool {
	return a.pubsubName == b.pubsubName && a.topic == b.topic && maps.Equal(a.metadata, b.metadata) &&
		a.bulk == b.bulk && a.bulkCount == b.bulkCount && a.bulkAwait == b.bulkAwait
}

// SubscriptionInfo describes a subscription in the metadata API.
type SubscriptionInfo struct {
	PubsubName      string
	Topic           string
	Metadata        map[string]string
	Rules           []RuleInfo
	DeadLetterTopic string
	Type            Type
}

// RuleInfo is one routing rule; Match is empty for the default route.
type RuleInfo struct {
	Match string
	Path  string
}

func (s *subscription) info() SubscriptionInfo {
	out := SubscriptionInfo{
		PubsubName: s.pubsubName, Topic: s.topic, Metadata: maps.Clone(s.metadata),
		DeadLetterTopic: s.deadLetterTopic, Type: s.typ,
	}
	for _, r := range s.rules {
		out.Rules = append(out.Rules, RuleInfo{Match: r.match, Path: r.path})
	}
	return out
}

// Subscriptions lists the subscriptions being served: app subscriptions
// (declarative and programmatic, one per pubsub and topic) in the order
// they started, then streaming ones.
func (b *Block) Subscriptions() []SubscriptionInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SubscriptionInfo, 0, len(b.order)+len(b.streams))
	for _, k := range b.order {
		out = append(out, b.app[k].sub.Load().info())
	}
	streams := make([]SubscriptionInfo, 0, len(b.streams))
	for s := range b.streams {
		streams = append(streams, s.run.sub.Load().info())
	}
	// Map order is random: list streams in a stable order.
	slices.SortStableFunc(streams, func(a, b SubscriptionInfo) int {
		return cmp.Compare(key(a.PubsubName, a.Topic), key(b.PubsubName, b.Topic))
	})
	return append(out, streams...)
}
