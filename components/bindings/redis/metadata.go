package redis

import (
	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
)

// retryDefaults: a failed command is retried 3 times, with go-redis's waits.
var retryDefaults = redisconn.Defaults{MaxRetries: 3}

// parseSettings decodes the connection part of Dapr's Redis metadata (see
// redisconn.Settings), reporting every invalid property at once.
func parseSettings(md components.Metadata) (redisconn.Settings, error) {
	r := props.New(md, redisconn.Unit)
	s := redisconn.Parse(r, retryDefaults)
	return s, r.Err()
}
