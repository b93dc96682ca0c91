package all

import "github.com/mecha-dev/mecha/components/kinds"

// registerPubSub registers the pub/sub brokers, one line each.
func registerPubSub(r *kinds.Registries) {}
