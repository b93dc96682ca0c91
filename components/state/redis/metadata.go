package redis

import (
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
)

// retryDefaults: a failed command is retried 3 times, waiting 8ms to 512ms
// between attempts. Every write is a script whose condition is checked
// again on replay, so retries are safe.
var retryDefaults = redisconn.Defaults{
	MaxRetries:      3,
	MinRetryBackoff: 8 * time.Millisecond,
	MaxRetryBackoff: 512 * time.Millisecond,
}

// settings is the decoded component metadata: the connection properties
// (see redisconn.Settings) and the store's own.
type settings struct {
	redisconn.Settings
	// TTL is ttlInSeconds: the expiry of writes that carry no TTL of their
	// own (default: none; -1 also means none, as in Dapr).
	TTL time.Duration
}

// knownProperties are the store's own properties, and those it knowingly
// ignores because the runtime handles them (actorStateStore, keyPrefix).
var knownProperties = append([]string{"ttlInSeconds", "actorStateStore", "keyPrefix"}, redisconn.Properties...)

// parseSettings decodes md. It reports every invalid property at once, and
// returns warnings for properties it does not know.
func parseSettings(md components.Metadata) (settings, []string, error) {
	r := props.New(md, redisconn.Unit)
	s := settings{
		Settings: redisconn.Parse(r, retryDefaults),
		TTL:      time.Duration(r.Int(0, "ttlInSeconds")) * time.Second,
	}
	if s.TTL < 0 {
		s.TTL = 0 // Dapr's -1: no default expiry
	}
	return s, props.Unknown(md, knownProperties...), r.Err()
}
