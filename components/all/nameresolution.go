package all

import (
	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/kubernetes"
	"github.com/mecha-dev/mecha/components/nameresolution/mdns"
	"github.com/mecha-dev/mecha/components/nameresolution/sqlite"
)

func registerNameResolution(r *kinds.Registries) {
	r.NameResolution.Register("nameresolution.sqlite", sqlite.New)
	r.NameResolution.Register("nameresolution.mdns", resolver(mdns.New))
	r.NameResolution.Register("nameresolution.kubernetes", resolver(kubernetes.New))
}

// resolver adapts a constructor returning a concrete type to the
// registry's factory type.
func resolver[T nameresolution.Resolver](f func(components.Deps) T) components.Factory[nameresolution.Resolver] {
	return func(d components.Deps) nameresolution.Resolver { return f(d) }
}
