// Package configuration is the contract for configuration store components
// (configuration.redis, configuration.postgresql, configuration.sqlite):
// versioned key/value items an app reads and subscribes to.
package configuration

import (
	"context"
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
	Init(ctx context.Context, md components.Metadata) error
	// Get returns the items for keys; no keys means every item. Missing
	// keys are absent from the result.
	Get(ctx context.Context, req GetRequest) (map[string]*Item, error)
	// Subscribe calls handler with changed items (a deleted key arrives with
	// an empty Value) until Unsubscribe or Close. It returns a subscription
	// id unique within the store.
	Subscribe(ctx context.Context, req SubscribeRequest, handler UpdateHandler) (string, error)
	Unsubscribe(ctx context.Context, id string) error
	io.Closer
}

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
	ID    string
	Items map[string]*Item
}

// UpdateHandler receives updates; it must not block for long.
type UpdateHandler func(ctx context.Context, e *UpdateEvent) error
