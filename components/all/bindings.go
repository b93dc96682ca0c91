package all

import (
	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/cron"
	bhttp "github.com/mecha-dev/mecha/components/bindings/http"
	"github.com/mecha-dev/mecha/components/bindings/localstorage"
	"github.com/mecha-dev/mecha/components/bindings/mqtt3"
	"github.com/mecha-dev/mecha/components/bindings/postgres"
	bredis "github.com/mecha-dev/mecha/components/bindings/redis"
	"github.com/mecha-dev/mecha/components/kinds"
)

// registerBindings lists the bindings by direction; a type registered in
// both (mqtt3) gets one instance per direction its metadata asks for.
func registerBindings(r *kinds.Registries) {
	r.InputBindings.Register("bindings.cron", input(cron.New))
	r.InputBindings.Register("bindings.mqtt3", input(mqtt3.New))

	r.OutputBindings.Register("bindings.http", output(bhttp.New))
	r.OutputBindings.Register("bindings.localstorage", output(localstorage.New))
	r.OutputBindings.Register("bindings.redis", output(bredis.New))
	r.OutputBindings.Register("bindings.postgresql", output(postgres.New))
	r.OutputBindings.Register("bindings.postgres", output(postgres.New))
	r.OutputBindings.Register("bindings.mqtt3", output(mqtt3.New))
}

// input and output adapt a constructor returning a concrete type to the
// registry's factory type.
func input[T bindings.Input](f func(components.Deps) T) components.Factory[bindings.Input] {
	return func(d components.Deps) bindings.Input { return f(d) }
}

func output[T bindings.Output](f func(components.Deps) T) components.Factory[bindings.Output] {
	return func(d components.Deps) bindings.Output { return f(d) }
}
