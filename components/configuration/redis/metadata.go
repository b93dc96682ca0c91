package redis

import (
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
)

// retryDefaults: reads are retried 3 times, waiting at most 512ms between
// attempts.
var retryDefaults = redisconn.Defaults{MaxRetries: 3, MaxRetryBackoff: 512 * time.Millisecond}

// settings is the decoded component metadata: only connection properties
// (see redisconn.Settings). DB also selects the keyspace notification
// channel, __keyspace@<db>__.
type settings struct {
	redisconn.Settings
}

// parseSettings decodes md, reporting every invalid property at once and
// returning warnings for unknown ones.
func parseSettings(md components.Metadata) (settings, []string, error) {
	r := props.New(md, redisconn.Unit)
	s := settings{redisconn.Parse(r, retryDefaults)}
	return s, props.Unknown(md, redisconn.Properties...), r.Err()
}
