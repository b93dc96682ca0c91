package mqtt3

import (
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/mqttconn"
	"github.com/mecha-dev/mecha/components/internal/props"
)

// Defaults of the broker's own properties.
const (
	DefaultConcurrency    = 10
	DefaultInitialBackOff = 100 * time.Millisecond
	DefaultMaxBackOff     = 5 * time.Second
)

// settings is the decoded component metadata: the connection properties
// (see mqttconn.Settings: url, qos, retain, cleanSession, caCert,
// clientCert, clientKey) and the broker's own. Durations are Go durations
// or bare numbers of milliseconds.
type settings struct {
	mqttconn.Settings
	// ConsumerID is consumerID, the consumer group: the runtime sets it to
	// the app id. It names the shared subscription ($share/<consumerID>/...)
	// so the sidecars of one app share a topic's messages. Required; it
	// must not contain '/', '+' or '#'.
	ConsumerID string
	// ClientID is clientID: the MQTT client id, which must be unique among
	// the broker's connected clients. Empty (the default) means
	// "<consumerID>-<8 random hex digits>", new at each Init. Set it to a
	// name stable across restarts and unique per sidecar (for example
	// "{podName}" in a StatefulSet) to have the broker keep the session,
	// and the messages in it, while the sidecar restarts. See the package
	// documentation for why consumerID alone cannot be the client id.
	ClientID string
	// SharedSubscriptions is sharedSubscriptions (default true): subscribe
	// through "$share/<consumerID>/<topic>", so that the sidecars of one
	// app share messages. False subscribes to the topic itself, and every
	// sidecar gets every message, as Dapr's pubsub.mqtt3 does; use it for
	// brokers without shared subscriptions for MQTT 3.1.1 clients.
	SharedSubscriptions bool
	// Concurrency is concurrency: how many handler calls of one
	// subscription run at once (default 10). 1 keeps the order the broker
	// delivers in (see the package documentation).
	Concurrency int
	// MaxRetries is backOffMaxRetries: how many times a message whose
	// handler failed is handed to the handler again, in process; -1, the
	// default, means until it succeeds. After that it stays
	// unacknowledged, and the broker delivers it again when this client
	// next connects.
	MaxRetries int
	// InitialBackOff and MaxBackOff are backOffInitialInterval and
	// backOffMaxInterval: the wait before handing a failed message to the
	// handler again starts at InitialBackOff (default 100ms) and doubles up
	// to MaxBackOff (default 5s).
	InitialBackOff, MaxBackOff time.Duration
}

// knownProperties are the properties the broker reads.
var knownProperties = append([]string{
	"consumerID", "clientID", "sharedSubscriptions", "concurrency",
	"backOffMaxRetries", "backOffInitialInterval", "backOffMaxInterval",
}, mqttconn.Properties...)

// parseSettings decodes md. It reports every invalid property at once, and
// returns warnings for properties it does not know.
func parseSettings(md components.Metadata) (settings, []string, error) {
	r := props.New(md, time.Millisecond)
	s := settings{
		Settings:            mqttconn.Parse(r),
		ConsumerID:          strings.TrimSpace(r.String("consumerID")),
		ClientID:            strings.TrimSpace(r.String("clientID")),
		SharedSubscriptions: true,
		Concurrency:         r.Int(DefaultConcurrency, "concurrency"),
		MaxRetries:          r.Int(-1, "backOffMaxRetries"),
		InitialBackOff:      r.Duration(DefaultInitialBackOff, "backOffInitialInterval"),
		MaxBackOff:          r.Duration(DefaultMaxBackOff, "backOffMaxInterval"),
	}
	if r.Name("sharedSubscriptions") != "" {
		s.SharedSubscriptions = r.Bool("sharedSubscriptions")
	}
	switch {
	case s.ConsumerID == "":
		r.Fail("consumerID", "is required")
	case strings.ContainsAny(s.ConsumerID, "/+#"):
		// It is a topic level of $share/<consumerID>/<topic>.
		r.Fail("consumerID", "must not contain '/', '+' or '#'")
	}
	if s.Concurrency < 1 {
		r.Fail("concurrency", "must be at least 1")
	}
	if s.MaxRetries < -1 {
		r.Fail("backOffMaxRetries", "must be -1 (without end) or more")
	}
	if s.InitialBackOff <= 0 {
		r.Fail("backOffInitialInterval", "must be positive")
	}
	if s.MaxBackOff < s.InitialBackOff {
		r.Fail("backOffMaxInterval", "must not be less than backOffInitialInterval")
	}
	return s, props.Unknown(md, knownProperties...), r.Err()
}
