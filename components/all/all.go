// Package all registers every built-in component. It is an explicit table,
// not init-time side effects: what is listed here is what the binary has.
// Each kind has its own file.
package all

import "github.com/mecha-dev/mecha/components/kinds"

// Register adds the built-in components to r.
func Register(r *kinds.Registries) {
	registerState(r)
	registerSecretStores(r)
	registerLock(r)
	registerConfiguration(r)
	registerBindings(r)
	registerPubSub(r)
	registerNameResolution(r)
}
