// Package pubsub is the contract for publish/subscribe broker components
// (pubsub.in-memory, pubsub.jetstream, pubsub.redis, pubsub.mqtt3, ...).
//
// Brokers move opaque bytes: CloudEvents wrapping, routing, dead-lettering
// and delivery to the app are the runtime's job (internal/blocks/pubsub).
// The runtime subscribes once per topic per sidecar; brokers share the
// messages of a topic among all sidecars with the same consumer group (the
// "consumerID" metadata, which the runtime defaults to the app id) and give
// every distinct group all of them.
package pubsub

import (
	"context"
	"io"
	"slices"

	"github.com/mecha-dev/mecha/components"
)

// Feature is a capability a broker declares; names are Dapr's.
type Feature string

const (
	// FeatureMessageTTL means the broker expires messages itself
	// (metadata ttlInSeconds); otherwise the runtime stamps an expiration
	// into the CloudEvent and drops expired events on delivery.
	FeatureMessageTTL Feature = "MESSAGE_TTL"
	// FeatureSubscribeWildcards means topics may contain the broker's
	// wildcards.
	FeatureSubscribeWildcards Feature = "SUBSCRIBE_WILDCARDS"
	// FeatureBulkPublish means the broker implements BulkPublisher.
	FeatureBulkPublish Feature = "BULK_PUBLISH"
)

// Broker is what every pub/sub component implements.
type Broker interface {
	// Init configures the broker and connects. md.Properties always holds
	// "consumerID" (the consumer group).
	Init(ctx context.Context, md components.Metadata) error
	Features() []Feature
	// Publish sends one message; it returns once the broker has accepted it
	// (durably, for brokers that persist).
	Publish(ctx context.Context, req *PublishRequest) error
	// Subscribe starts delivering the messages of req.Topic to handler, in
	// goroutines owned by the broker, until ctx ends or Close is called. It
	// returns once the subscription is established, so that messages
	// published after it returns are delivered.
	//
	// A nil handler result acknowledges the message. An error means it was
	// not processed: the broker redelivers it later (at least once), with
	// back-off, as many times as it is configured to. Handlers may be called
	// concurrently unless the broker promises ordering. The ctx a handler
	// gets ends when its subscription does (ctx cancelled, or Close). No
	// handler call starts after that; messages not handled yet stay with
	// the broker, for brokers that keep them, for the group's other or
	// later subscribers.
	Subscribe(ctx context.Context, req SubscribeRequest, handler Handler) error
	// Close ends every subscription, waits for the broker's goroutines
	// (running handlers included) to return, and releases its connections.
	// It is idempotent and safe after a failed or partial Init; Publish and
	// Subscribe fail after it.
	io.Closer
}

// PublishRequest is one message to publish.
type PublishRequest struct {
	Topic       string
	Data        []byte
	ContentType string
	// Metadata holds per-request metadata ("metadata.*" query parameters),
	// e.g. ttlInSeconds or broker-specific keys.
	Metadata map[string]string
}

// SubscribeRequest names a topic to consume.
type SubscribeRequest struct {
	Topic string
	// Metadata is the subscription's metadata (Subscription spec.metadata or
	// the programmatic subscription's), e.g. rawPayload or broker keys.
	Metadata map[string]string
}

// Message is one delivered message. Handlers must not modify Data: a broker
// may share it between the groups it delivers to.
type Message struct {
	Topic string
	Data  []byte
	// Metadata carries broker message metadata (headers, ids); the runtime
	// forwards it to the app.
	Metadata map[string]string
}

// Handler processes one delivered message.
type Handler func(ctx context.Context, msg *Message) error

// BulkPublisher brokers publish many messages in one call, reporting
// failures per entry. The runtime publishes one by one for others.
//
// A nil error with FailedEntries lists the entries that were not published;
// the others were. A non-nil error means the call failed as a whole: the
// runtime reports every entry as failed (some may have been published
// anyway, which at-least-once delivery allows).
type BulkPublisher interface {
	BulkPublish(ctx context.Context, req *BulkPublishRequest) (BulkPublishResponse, error)
}

// BulkPublishRequest is a batch for one topic.
type BulkPublishRequest struct {
	Topic   string
	Entries []BulkEntry
	// Metadata applies to every entry; an entry's own Metadata wins key by
	// key.
	Metadata map[string]string
}

// BulkEntry is one message of a batch.
type BulkEntry struct {
	EntryID     string
	Data        []byte
	ContentType string
	Metadata    map[string]string
}

// BulkPublishResponse lists the entries that failed.
type BulkPublishResponse struct {
	FailedEntries []BulkFailedEntry
}

// BulkFailedEntry is an entry that was not published.
type BulkFailedEntry struct {
	EntryID string
	Error   error
}

// Has reports whether f is in the feature list.
func Has(features []Feature, f Feature) bool { return slices.Contains(features, f) }
