package all

import (
	"github.com/mecha-dev/mecha/components/configuration/postgres"
	"github.com/mecha-dev/mecha/components/configuration/redis"
	"github.com/mecha-dev/mecha/components/configuration/sqlite"
	"github.com/mecha-dev/mecha/components/kinds"
)

func registerConfiguration(r *kinds.Registries) {
	r.Configuration.Register("configuration.redis", redis.New)
	r.Configuration.Register("configuration.postgresql", postgres.New)
	r.Configuration.Register("configuration.sqlite", sqlite.New)
}
