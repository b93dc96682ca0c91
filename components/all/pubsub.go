package all

import (
	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/pubsub"
	psinmemory "github.com/mecha-dev/mecha/components/pubsub/inmemory"
	psjetstream "github.com/mecha-dev/mecha/components/pubsub/jetstream"
	psredis "github.com/mecha-dev/mecha/components/pubsub/redis"
)

// registerPubSub registers the pub/sub brokers, one line each.
func registerPubSub(r *kinds.Registries) {
	r.PubSub.Register("pubsub.in-memory", broker(psinmemory.New))
	r.PubSub.Register("pubsub.jetstream", broker(psjetstream.New))
	r.PubSub.Register("pubsub.redis", broker(psredis.New))
}

// broker adapts a constructor returning a concrete type to the registry's
// factory type.
func broker[T pubsub.Broker](f func(components.Deps) T) components.Factory[pubsub.Broker] {
	return func(d components.Deps) pubsub.Broker { return f(d) }
}
