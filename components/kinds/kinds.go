// Package kinds groups one registry per component kind. The runtime consumes
// a *Registries; the binary's main decides what is registered in it
// (components/all registers the built-ins).
package kinds

import (
	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
)

// Registries holds a registry per component kind.
type Registries struct {
	State *components.Registry[state.Store]
}

// New returns empty registries.
func New() *Registries {
	return &Registries{
		State: components.NewRegistry[state.Store](),
	}
}
