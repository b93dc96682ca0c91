// Package configuration is the contract for configuration store components
// (configuration.redis, configuration.postgresql, configuration.sqlite):
// versioned key/value items an app reads and subscribes to.
//
// Stores are read-only from the runtime's point of view: items are written
// by operators and other programs straight into the backend, and stores
// report those writes to subscribers. The runtime (the configuration
// building block) owns what happens next: it queues updates per subscription,
// in order, and delivers them to the app.
package configuration

import (
	"context"
	"errors"
	"io"

	"github.com/mecha-dev/mecha/components"
)

// Item is one configuration value.
type Item struct {
	Value    string
	Version  string
	Metadata map[string]string
}

// Store is what every configuration store implements.
type Store interface {
	// Init configures the store and connects to its backend. It is called
	// once, before any other method; ctx bounds Init only.
	Init(ctx context.Context, md components.Metadata) error
	// Get returns the items for keys; no keys means every item. Missing
	// keys are absent from the result.
	Get(ctx context.Context, req GetRequest) (map[string]*Item, error)
	// Subscribe watches req.Keys (no keys: every key) and calls handler with
	// the items that change, until Unsubscribe, Close, or the end of ctx: ctx
	// is the subscription's lifetime, not a bound on the call. Changes made
	// after Subscribe returns are reported. A deleted key arrives as an item
	// with an empty Value.
	//
	// The handler is called for one subscription at a time, never
	// concurrently, in the order the store observed the changes; it is
	// passed a context that ends with the subscription. Subscribe returns an
	// id unique within the store.
	Subscribe(ctx context.Context, req SubscribeRequest, handler UpdateHandler) (string, error)
	// Unsubscribe ends the subscription id. When it returns, the handler of
	// that subscription is not running and will not be called again. An
	// unknown (or already ended) id is an error wrapping
	// ErrSubscriptionNotFound.
	Unsubscribe(ctx context.Context, id string) error
	// Close ends every subscription, waits for the store's goroutines and
	// releases its connections. It is idempotent and safe after a failed
	// Init.
	io.Closer
}

// ErrSubscriptionNotFound is returned (wrapped) by Unsubscribe for an id the
// store does not know.
var ErrSubscriptionNotFound = errors.New("subscription does not exist")

// GetRequest reads items.
type GetRequest struct {
	Keys     []string
	Metadata map[string]string
}

// SubscribeRequest watches keys; no keys means every key.
type SubscribeRequest struct {
	Keys     []string
	Metadata map[string]string
}

// UpdateEvent carries changed items for one subscription.
type UpdateEvent struct {
	// ID is the subscription id Subscribe returned.
	ID    string
	Items map[string]*Item
}

// UpdateHandler receives updates; it must not block for long, and should
// return promptly once ctx ends.
type UpdateHandler func(ctx context.Context, e *UpdateEvent) error
