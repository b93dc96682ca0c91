package mqtt3

import (
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/mqttconn"
	"github.com/mecha-dev/mecha/components/internal/props"
)

// settings is the decoded component metadata (Dapr's names, matched
// case-insensitively): the connection properties (see mqttconn.Settings:
// url, qos, retain, cleanSession, caCert, clientCert, clientKey) and the
// binding's own.
type settings struct {
	mqttconn.Settings
	// Topic is topic: what the input side subscribes to (wildcards
	// allowed) and where the output side publishes unless a request names
	// its own "topic". Required.
	Topic string
	// ClientID is consumerID (alias clientID): the base of the client ids,
	// "<consumerID>-consumer" and "<consumerID>-producer". It must be
	// stable and unique per app: the broker keeps the input side's session,
	// and unacknowledged messages, under it. Required; Dapr's {uuid}
	// template is expanded by the runtime.
	ClientID string
	// BackOffMaxRetries is backOffMaxRetries (default 0): how many times a
	// rejected event is handed to the app again, with a back-off, before
	// the binding gives up on it for this connection; -1 retries until the
	// app accepts it.
	BackOffMaxRetries int
}

// knownProperties are the properties the binding reads.
var knownProperties = append([]string{"topic", "consumerID", "clientID", "backOffMaxRetries"}, mqttconn.Properties...)

func parseSettings(md components.Metadata) (settings, error) {
	r := props.New(md, time.Second)
	s := settings{
		Settings:          mqttconn.Parse(r),
		Topic:             r.String("topic"),
		ClientID:          r.String("consumerID", "clientID"),
		BackOffMaxRetries: r.Int(0, "backOffMaxRetries"),
	}
	if s.Topic == "" {
		r.Fail("topic", "is required")
	}
	if s.ClientID == "" {
		r.Fail("consumerID", "is required: a stable client id, unique per app (Dapr's {uuid} template works)")
	}
	if s.BackOffMaxRetries < -1 {
		r.Fail("backOffMaxRetries", "must be -1 (no limit) or more")
	}
	return s, r.Err()
}
