package all

import (
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/lock/inmemory"
	"github.com/mecha-dev/mecha/components/lock/postgres"
	"github.com/mecha-dev/mecha/components/lock/redis"
	"github.com/mecha-dev/mecha/components/lock/sqlite"
)

func registerLock(r *kinds.Registries) {
	r.Lock.Register("lock.in-memory", inmemory.New)
	r.Lock.Register("lock.redis", redis.New)
	r.Lock.Register("lock.sqlite", sqlite.New)
	r.Lock.Register("lock.postgresql", postgres.New)
}
