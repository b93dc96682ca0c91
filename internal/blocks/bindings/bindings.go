// Package bindings is the bindings building block: the app invokes output
// bindings by name, and input bindings deliver external events to the app
// (HTTP POST /{route} or gRPC OnBindingEvent) once it is ready and has said
// it wants them.
//
// The block validates output requests (name, operation) and maps every
// failure to ERR_INVOKE_OUTPUT_BINDING as daprd does. For input bindings it
// owns one goroutine per binding: it waits for the app, asks whether the app
// subscribes (OPTIONS /{route} for HTTP apps, ListInputBindings for gRPC
// apps), runs the component's Read, and honours the app's optional fan-out
// answer ("to": output bindings to invoke with the returned data).
//
// It knows nothing about the sidecar's own HTTP or gRPC API; it does use
// net/http and the gRPC callback client, because that is how the app channel
// is spoken to.
package bindings

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	cbindings "github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
	"github.com/mecha-dev/mecha/internal/channel"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// Block serves the bindings API and runs input bindings.
type Block struct {
	outputs *compset.Set[*output]
	app     *channel.App // nil when the sidecar has no app port
	log     *slog.Logger

	mu      sync.Mutex
	inputs  []*input
	started bool
	cancel  context.CancelFunc // stops the input loops; set by Start
	// wg owns the input loops and parallel fan-out invocations.
	wg sync.WaitGroup

	// grpcSubs caches the gRPC app's ListInputBindings answer.
	grpcSubsMu sync.Mutex
	grpcSubs   map[string]bool
	// saveState persists state an app returns from an input event.
	saveState StateSaver
	// res supplies the bindings' resiliency policies (nil: none).
	res *resiliency.Provider
	// obs are told about calls and deliveries (nil funcs: nothing is).
	obs Observers
}

// output is an output binding with its operations, probed once at Add.
type output struct {
	cbindings.Output
	ops []cbindings.Operation
}

// input is an input binding and how it reaches the app.
type input struct {
	name    string
	binding cbindings.Input
	// route is the app path events are POSTed to ("/" + name, or the
	// component's route metadata).
	route string
	// explicit is set when the component's direction metadata names
	// "input": the app is then not asked whether it subscribes, as daprd.
	explicit bool
}

// New returns an empty block; app may be nil.
func New(app *channel.App, log *slog.Logger) *Block {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Block{outputs: compset.New[*output](), app: app, log: log}
}

// AddOutput registers an initialised output binding.
func (b *Block) AddOutput(name string, o cbindings.Output) error {
	return b.outputs.Add(name, &output{Output: o, ops: o.Operations()})
}

// AddInput registers an initialised input binding; md is its component
// metadata (route, direction). It starts reading in Start.
func (b *Block) AddInput(name string, in cbindings.Input, md components.Metadata) error {
	route := strings.TrimSpace(md.String("route", ""))
	if route == "" {
		route = name
	}
	if !strings.HasPrefix(route, "/") {
		route = "/" + route
	}
	explicit := false
	for _, d := range strings.Split(md.String("direction", ""), ",") {
		if strings.EqualFold(strings.TrimSpace(d), "input") {
			explicit = true
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return fmt.Errorf("input binding %s added after input bindings were started", name)
	}
	for _, i := range b.inputs {
		if i.name == name {
			return fmt.Errorf("an input binding named %s is already registered", name)
		}
	}
	b.inputs = append(b.inputs, &input{name: name, binding: in, route: route, explicit: explicit})
	return nil
}

// OutputNames lists the output bindings, sorted.
func (b *Block) OutputNames() []string { return b.outputs.Names() }

// Start begins delivering input binding events to the app once it is ready.
// It returns at once; the goroutines stop when ctx ends or Close is called.
// Without an app there is nowhere to deliver to, and nothing is started.
func (b *Block) Start(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return
	}
	b.started = true
	if len(b.inputs) == 0 {
		return
	}
	if b.app == nil {
		for _, in := range b.inputs {
			b.log.Warn("input binding not started: the sidecar has no app port to deliver events to (set --app-port)", "binding", in.name)
		}
		return
	}
	ctx, b.cancel = context.WithCancel(ctx)
	for _, in := range b.inputs {
		b.wg.Go(func() { b.run(ctx, in) })
	}
}

// Close stops the input bindings, waits for their goroutines and closes
// every binding. It is safe to call more than once.
func (b *Block) Close() error {
	b.mu.Lock()
	b.started = true // no Start after Close
	cancel := b.cancel
	inputs := b.inputs
	b.inputs = nil
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	var errs []error
	// Closing an input also stops a Read that does not watch its ctx.
	for _, in := range inputs {
		if err := in.binding.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close input binding %s: %w", in.name, err))
		}
	}
	b.wg.Wait()
	errs = append(errs, b.outputs.Close())
	return errors.Join(errs...)
}

// SetResiliency applies the bindings' resiliency policies: outbound to
// output binding calls, inbound to input binding deliveries to the app.
// Call it before the block serves; nil (the default) applies none.
func (b *Block) SetResiliency(p *resiliency.Provider) { b.res = p }

// Observers are told about the block's work (metrics); a nil func
// observes nothing and reads no clock.
type Observers struct {
	// Output is told about every call of an output binding: the binding,
	// the operation, whether it succeeded and how long the binding took
	// (resiliency retries included). A request refused before the binding
	// is called (no such binding, an operation it does not declare) is not
	// a call, so clients cannot make up label values.
	Output func(binding, op string, success bool, elapsed time.Duration)
	// Input is told about every event of an input binding handed to the
	// app: whether the app accepted it and how long it took (retries under
	// the inbound policy, and what the app's answer asks for, included).
	Input func(binding string, success bool, elapsed time.Duration)
}

// SetObservers sets the block's observers. Call it before the block
// serves.
func (b *Block) SetObservers(o Observers) { b.obs = o }
