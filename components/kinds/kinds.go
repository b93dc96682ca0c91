// Package kinds groups one registry per component kind. The runtime consumes
// a *Registries; the binary's main decides what is registered in it
// (components/all registers the built-ins).
package kinds

import (
	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/components/state"
)

// Registries holds a registry per component kind. A bindings.* type may be
// registered as an input, an output, or both.
type Registries struct {
	State          *components.Registry[state.Store]
	SecretStores   *components.Registry[secretstores.Store]
	Lock           *components.Registry[lock.Store]
	Configuration  *components.Registry[configuration.Store]
	InputBindings  *components.Registry[bindings.Input]
	OutputBindings *components.Registry[bindings.Output]
	// NameResolution holds the nameresolution.* resolvers; the runtime
	// creates one, chosen by the Configuration's spec.nameResolution.
	NameResolution *components.Registry[nameresolution.Resolver]
	PubSub         *components.Registry[pubsub.Broker]
}

// New returns empty registries.
func New() *Registries {
	return &Registries{
		State:          components.NewRegistry[state.Store](),
		SecretStores:   components.NewRegistry[secretstores.Store](),
		Lock:           components.NewRegistry[lock.Store](),
		Configuration:  components.NewRegistry[configuration.Store](),
		InputBindings:  components.NewRegistry[bindings.Input](),
		OutputBindings: components.NewRegistry[bindings.Output](),
		NameResolution: components.NewRegistry[nameresolution.Resolver](),
		PubSub:         components.NewRegistry[pubsub.Broker](),
	}
}
