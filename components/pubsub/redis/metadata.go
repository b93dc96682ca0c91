package redis

import (
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
)

// retryDefaults: a failed command is retried 3 times, waiting 8ms to 512ms
// between attempts. A replayed XADD may add a message twice, which
// at-least-once delivery allows; XACK and XAUTOCLAIM are idempotent.
var retryDefaults = redisconn.Defaults{
	MaxRetries:      3,
	MinRetryBackoff: 8 * time.Millisecond,
	MaxRetryBackoff: 512 * time.Millisecond,
}

// Defaults of the broker's own properties, Dapr's.
const (
	DefaultProcessingTimeout = 60 * time.Second
	DefaultRedeliverInterval = 15 * time.Second
	DefaultQueueDepth        = 100
	DefaultConcurrency       = 10
)

// settings is the decoded component metadata: the connection properties
// (see redisconn.Settings) and the broker's own. Durations are Go durations
// or bare numbers of milliseconds, as Dapr reads them.
type settings struct {
	redisconn.Settings
	// ConsumerID is consumerID, the consumer group: the runtime sets it to
	// the app id, so that the sidecars of one app share the messages.
	// Required.
	ConsumerID string
	// ProcessingTimeout is processingTimeout: how long a message may stay
	// unacknowledged (its handler failed, or its sidecar died) before it is
	// delivered again, and the deadline of each handler call (default 60s).
	// 0 disables redelivery.
	ProcessingTimeout time.Duration
	// RedeliverInterval is redeliverInterval: how often the pending
	// messages are checked for ones idle longer than ProcessingTimeout
	// (default 15s). 0 disables redelivery.
	RedeliverInterval time.Duration
	// QueueDepth is queueDepth: how many messages one read fetches, and how
	// many wait for a free handler in each subscription (default 100).
	QueueDepth int
	// Concurrency is concurrency: how many handler calls of one
	// subscription run at once (default 10).
	Concurrency int
	// MaxLenApprox is maxLenApprox: each publish trims the stream to about
	// this many entries (XADD MAXLEN ~); 0, the default, keeps them all.
	MaxLenApprox int64
	// StreamTTL is streamTTL: each publish trims entries older than this
	// (XADD MINID ~); 0, the default, keeps them.
	StreamTTL time.Duration
	// AckOnError is ackOnError: acknowledge a message even when its handler
	// fails, leaving retries to the runtime's resiliency policy.
	AckOnError bool
}

// knownProperties are the broker's own properties, and the Dapr ones it
// knowingly ignores (useEntraID and the cluster/failover settings are
// refused by redisconn).
var knownProperties = append([]string{
	"consumerID", "processingTimeout", "redeliverInterval", "queueDepth", "concurrency",
	"maxLenApprox", "streamTTL", "ackOnError",
	"sentinelUsername", "sentinelPassword",
}, redisconn.Properties...)

// parseSettings decodes md. It reports every invalid property at once, and
// returns warnings for properties it does not know.
func parseSettings(md components.Metadata) (settings, []string, error) {
	r := props.New(md, redisconn.Unit)
	s := settings{
		Settings:          redisconn.Parse(r, retryDefaults),
		ConsumerID:        r.String("consumerID"),
		ProcessingTimeout: r.Duration(DefaultProcessingTimeout, "processingTimeout"),
		RedeliverInterval: r.Duration(DefaultRedeliverInterval, "redeliverInterval"),
		QueueDepth:        r.Int(DefaultQueueDepth, "queueDepth"),
		Concurrency:       r.Int(DefaultConcurrency, "concurrency"),
		MaxLenApprox:      int64(r.Int(0, "maxLenApprox")),
		StreamTTL:         r.Duration(0, "streamTTL"),
		AckOnError:        r.Bool("ackOnError"),
	}
	if s.ConsumerID == "" {
		r.Fail("consumerID", "is required")
	}
	for _, p := range []struct {
		name string
		v    time.Duration
	}{{"processingTimeout", s.ProcessingTimeout}, {"redeliverInterval", s.RedeliverInterval}, {"streamTTL", s.StreamTTL}} {
		if p.v < 0 {
			r.Fail(p.name, "must not be negative")
		}
	}
	if s.QueueDepth < 1 {
		r.Fail("queueDepth", "must be at least 1")
	}
	if s.Concurrency < 1 {
		r.Fail("concurrency", "must be at least 1")
	}
	if s.MaxLenApprox < 0 {
		r.Fail("maxLenApprox", "must not be negative")
	}
	return s, props.Unknown(md, knownProperties...), r.Err()
}

// redelivers reports whether pending messages are reclaimed.
func (s settings) redelivers() bool { return s.ProcessingTimeout > 0 && s.RedeliverInterval > 0 }
