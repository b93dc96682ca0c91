// Package configuration is the configuration building block: reads items
// from configuration stores and manages subscriptions whose updates reach the
// app (HTTP callbacks or gRPC streams).
package configuration

import (
	"log/slog"

	cconfig "github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
	"github.com/mecha-dev/mecha/internal/channel"
)

// Block serves the configuration API.
type Block struct {
	stores *compset.Set[cconfig.Store]
	app    *channel.App // nil when the sidecar has no app port
	log    *slog.Logger
}

// New returns an empty block; app may be nil.
func New(app *channel.App, log *slog.Logger) *Block {
	return &Block{stores: compset.New[cconfig.Store](), app: app, log: log}
}

// Add registers an initialised configuration store.
func (b *Block) Add(name string, s cconfig.Store) error { return b.stores.Add(name, s) }

// Close closes every store (ending their subscriptions).
func (b *Block) Close() error { return b.stores.Close() }
