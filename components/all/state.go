package all

import (
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/state/inmemory"
	"github.com/mecha-dev/mecha/components/state/postgres"
	"github.com/mecha-dev/mecha/components/state/redis"
	"github.com/mecha-dev/mecha/components/state/sqlite"
)

func registerState(r *kinds.Registries) {
	r.State.Register("state.in-memory", inmemory.New)
	r.State.Register("state.redis", redis.New)
	r.State.Register("state.sqlite", sqlite.New)
	r.State.Register("state.postgresql", postgres.New, "v1", "v2")
}
