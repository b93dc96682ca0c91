package redis

import (
	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
)

// retryDefaults: no retries, because neither a lock nor an unlock can be
// replayed safely (see the package doc); the waits are go-redis's.
var retryDefaults = redisconn.Defaults{}

// knownProperties are the connection properties, and Dapr lock.redis
// properties with no meaning for a single-node lock (keyPrefix is the
// runtime's).
var knownProperties = append([]string{"keyPrefix", "ttlInSeconds", "processingTimeout"}, redisconn.Properties...)

// parseSettings decodes md (see redisconn.Settings for the properties),
// reporting every invalid property at once, and returns warnings for
// unknown ones (manifests often carry properties meant for other
// components).
func parseSettings(md components.Metadata) (redisconn.Settings, []string, error) {
	r := props.New(md, redisconn.Unit)
	s := redisconn.Parse(r, retryDefaults)
	if s.DialTimeout == 0 {
		r.Fail("dialTimeout", "must be positive")
	}
	return s, props.Unknown(md, knownProperties...), r.Err()
}
