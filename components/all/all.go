// Package all registers every built-in component. It is an explicit table,
// not init-time side effects: what is listed here is what the binary has.
package all

import (
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/state/inmemory"
	"github.com/mecha-dev/mecha/components/state/postgres"
	"github.com/mecha-dev/mecha/components/state/redis"
	"github.com/mecha-dev/mecha/components/state/sqlite"
)

// Register adds the built-in components to r.
func Register(r *kinds.Registries) {
	r.State.Register("state.in-memory", inmemory.New)
	r.State.Register("state.redis", redis.New)
	r.State.Register("state.sqlite", sqlite.New)
	r.State.Register("state.postgresql", postgres.New, "v1", "v2")
}
