// Package pubsub is the publish/subscribe building block: everything
// between the API and the brokers (components/pubsub).
//
// Publishing wraps the payload in daprd's CloudEvents 1.0 envelope (unless
// it already is a CloudEvent or the request asks for a raw payload),
// applies the component's topic scoping and hands the bytes to the broker.
//
// Subscribing comes in daprd's three forms, all served by one delivery
// path: declarative Subscription resources and the app's programmatic
// answer (GET /dapr/subscribe, or ListTopicSubscriptions for gRPC apps)
// deliver to the app through the app channel, one broker subscription per
// pubsub and topic; streaming subscriptions (SubscribeTopicEventsAlpha1)
// deliver to a gRPC stream of the client's. For each message the block
// decodes the CloudEvent, drops expired ones, picks the route with the
// subscription's CEL rules, delivers, and maps the app's answer to an
// acknowledgement, a redelivery (an error returned to the broker, which
// redelivers with back-off) or a drop, publishing to the dead-letter topic
// as daprd does.
//
// Brokers only move bytes; the block owns every goroutine it starts and
// stops them in StopSubscriptions and Close.
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
	"github.com/mecha-dev/mecha/internal/channel"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// DefaultMaxConcurrency bounds the messages of one subscription that are
// being delivered at the same time, so that a broker that pushes fast
// cannot pile up unbounded work in front of a slow app.
const DefaultMaxConcurrency = 64

// Options configure the block.
type Options struct {
	AppID string
	// Namespace prefixes topics of namespace-scoped components.
	Namespace string
	// App is the channel to the app; nil when the sidecar has no app port
	// (then only streaming subscriptions can receive).
	App    *channel.App
	Logger *slog.Logger
	// ResourceError, when set, is told about subscriptions that were
	// rejected (an invalid routing rule, an unknown pubsub, a forbidden
	// topic), for the metadata API's resourceErrors.
	ResourceError func(kind, name, message string)
	// MaxConcurrency bounds in-flight deliveries per subscription
	// (default DefaultMaxConcurrency).
	MaxConcurrency int
	// Resiliency supplies the components' policies: outbound for
	// publishing, inbound for deliveries to the receiver (nil: none).
	Resiliency *resiliency.Provider
	// OnPublish and OnDeliver, when set, are told about every message
	// published to a broker and every delivery to a receiver, with its
	// outcome (OutcomeSuccess, OutcomeRetry, OutcomeDrop) and how long it
	// took (metrics).
	OnPublish func(pubsub, topic string, success bool, elapsed time.Duration)
	OnDeliver func(pubsub, topic, outcome string, elapsed time.Duration)
}

// Block is the pub/sub building block.
type Block struct {
	opts    Options
	log     *slog.Logger
	brokers *compset.Set[*broker]

	mu sync.Mutex
	// declared are the declarative subscriptions, in load order, until
	// Start subscribes them.
	declared []*subscription
	// app holds the app subscriptions being delivered, by pubsub||topic,
	// and order their insertion order (for the metadata API).
	app   map[string]*running
	order []string
	// streams are the live streaming subscriptions.
	streams map[*Stream]struct{}
	started bool
	stopped bool
	cancel  context.CancelFunc // ends every subscription; set by Start
	// wg owns the programmatic discovery and bulk batching goroutines.
	wg sync.WaitGroup
}

// New returns an empty block.
func New(o Options) *Block {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = DefaultMaxConcurrency
	}
	return &Block{
		opts:    o,
		log:     o.Logger,
		brokers: compset.New[*broker](),
		app:     map[string]*running{},
		streams: map[*Stream]struct{}{},
	}
}

// broker is one initialised pub/sub component with what the block needs
// to know about it, probed once at Add.
type broker struct {
	cpubsub.Broker
	name     string
	features []cpubsub.Feature
	bulk     cpubsub.BulkPublisher // nil: publish one by one
	scopes   scopes
	// namespaced brokers share their server among namespaces: topics are
	// prefixed with the sidecar's namespace, as daprd does for components
	// whose metadata uses the {namespace} template.
	namespaced bool
}

// ComponentOptions describe how a pub/sub component is used.
type ComponentOptions struct {
	// Metadata is the component's resolved metadata; the scoping keys
	// publishingScopes, subscriptionScopes, allowedTopics and
	// protectedTopics are read from it.
	Metadata components.Metadata
	// NamespaceScoped says a metadata value used the {namespace} template.
	NamespaceScoped bool
}

// Add registers an initialised broker under name.
func (b *Block) Add(name string, br cpubsub.Broker, o ComponentOptions) error {
	item := &broker{
		Broker:     br,
		name:       name,
		features:   br.Features(),
		scopes:     parseScopes(b.opts.AppID, o.Metadata.Properties),
		namespaced: o.NamespaceScoped,
	}
	if bp, ok := br.(cpubsub.BulkPublisher); ok {
		item.bulk = bp
	}
	return b.brokers.Add(name, item)
}

// Names lists the pub/sub components, sorted.
func (b *Block) Names() []string { return b.brokers.Names() }

// topic is the broker-side name of topic: namespaced components prefix it.
func (b *Block) topic(br *broker, topic string) string {
	if br.namespaced {
		return b.opts.Namespace + topic
	}
	return topic
}

// reportRejected logs a subscription that cannot be served and records it
// for the metadata API.
func (b *Block) reportRejected(name string, err error) {
	b.log.Error("subscription rejected", "subscription", name, "error", err)
	if b.opts.ResourceError != nil {
		b.opts.ResourceError("Subscription", name, err.Error())
	}
}

// StopSubscriptions ends every subscription: app deliveries stop (the
// messages being delivered are abandoned, so that the broker redelivers
// them) and streaming subscriptions end. The runtime calls it first on
// shutdown, before the servers drain. It is safe to call more than once.
func (b *Block) StopSubscriptions() {
	b.mu.Lock()
	b.stopped = true
	cancel := b.cancel
	subs := make([]*running, 0, len(b.app))
	for _, k := range b.order {
		subs = append(subs, b.app[k])
	}
	b.app = map[string]*running{}
	b.order = nil
	streams := make([]*Stream, 0, len(b.streams))
	for s := range b.streams {
		streams = append(streams, s)
	}
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	var wg sync.WaitGroup
	for _, r := range subs {
		wg.Go(r.stop)
	}
	for _, s := range streams {
		wg.Go(s.Close)
	}
	wg.Wait()
	b.wg.Wait()
}

// Close stops every subscription and closes every broker. It is safe to
// call more than once.
func (b *Block) Close() error {
	b.StopSubscriptions()
	return b.brokers.Close()
}

// errClosed is returned to brokers for messages that arrive while a
// subscription is being stopped: they are not processed, so they must be
// redelivered.
var errClosed = errors.New("subscription closed")

// key identifies an app subscription.
func key(pubsubName, topic string) string { return pubsubName + "||" + topic }

// validName reports whether s is usable as a pubsub or topic name.
func validName(s string) bool { return strings.TrimSpace(s) != "" }

// describe names a subscription in logs and resource errors.
func describe(s *subscription) string {
	if s.name != "" {
		return s.name
	}
	return fmt.Sprintf("%s/%s (%s)", s.pubsubName, s.topic, strings.ToLower(string(s.typ)))
}
