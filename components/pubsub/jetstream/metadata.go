package jetstream

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
)

// Unit is the unit of a duration given as a bare number: seconds, as Dapr's
// metadata decoder reads them for this component ("ackWait: 10" is 10s).
const Unit = time.Second

// Defaults of the broker's own properties.
const (
	// DefaultName is the connection name servers show (name).
	DefaultName = "mecha - pubsub.jetstream"
	// DefaultInitialBackOff and DefaultMaxBackOff bound the wait before a
	// message whose handler failed comes back when backOff is not set: it
	// doubles from the first to the second with each failed delivery.
	// Dapr NAKs without a delay there, which makes the server redeliver at
	// once, in a hot loop.
	DefaultInitialBackOff = time.Second
	DefaultMaxBackOff     = 30 * time.Second
	// DefaultParallelism is how many handler calls a subscription runs at
	// once with concurrency "parallel".
	DefaultParallelism = 64
)

// settings is the decoded component metadata. The property names are
// Dapr's (pubsub.jetstream); the few that are Mecha's say so.
type settings struct {
	// URL is natsURL: one or more comma-separated server URLs. Required.
	URL string
	// Name is name, the connection name (default DefaultName).
	Name string

	// Authentication, at most one of: jwt with seedKey (decentralised
	// auth), token, user with password (Mecha's; or in the URL), and in
	// addition TLS: tls_client_cert with tls_client_key for client
	// certificates and tls_ca_cert (Mecha's) for the servers' CA.
	JWT, SeedKey                string
	Token                       string
	User, Password              string
	TLSClientCert, TLSClientKey string
	TLSCACert                   string

	// Domain and APIPrefix are domain and apiPrefix, for a JetStream in
	// another domain or account (leaf nodes, imports).
	Domain, APIPrefix string

	// Group is the consumer group: durableName, else queueGroupName, else
	// consumerID (which the runtime sets to the app id). Every sidecar of a
	// group pulls from one durable consumer per topic, so they share its
	// messages. Dapr's push consumers needed both names for that; a pull
	// consumer is shared by whoever pulls from it.
	Group string

	// StreamName is streamName: the stream that holds every topic of this
	// component. It is created with the first topic if it does not exist,
	// and topics are added to its subjects as they are used. Without it,
	// a topic goes to the stream whose subjects cover it (one you created,
	// as Dapr requires), or to a stream of its own created on first use.
	StreamName string
	// MemoryStorage is memoryStorage: streams created by the broker keep
	// messages in memory rather than in files (and so lose them when the
	// server restarts); consumers are kept in memory too.
	MemoryStorage bool
	// Replicas is replicas, for streams and consumers the broker creates
	// (0: the server's default, 1).
	Replicas int
	// StreamMaxAge and StreamMaxBytes (Mecha's) bound the streams the
	// broker creates: older messages, or the oldest beyond the size, are
	// removed, acknowledged or not. 0, the default, keeps everything.
	StreamMaxAge   time.Duration
	StreamMaxBytes int64

	// Consumer settings, applied when the durable consumer is created or
	// updated.
	DeliverPolicy jetstream.DeliverPolicy // deliverPolicy: all (default), last, new, sequence, time
	StartSequence uint64                  // startSequence, for deliverPolicy sequence
	StartTime     time.Time               // startTime (Unix seconds), for deliverPolicy time
	// AckWait is ackWait: how long the server waits for an acknowledgement
	// before delivering a message again (0: the server's default, 30s).
	// While a handler runs, the broker tells the server every AckWait/2
	// that it is still working, so a slow handler is not raced by a
	// redelivery.
	AckWait time.Duration
	// MaxDeliver is maxDeliver: how many times a message is delivered at
	// most (0: without end).
	MaxDeliver int
	// BackOff is backOff, comma-separated durations: the wait before a
	// message whose handler failed comes back, the n-th for its n-th
	// failure, the last one repeating. Unlike Dapr it is not set as the
	// consumer's BackOff, which the server also uses as the ack wait of a
	// running handler (a first back-off of 50ms would make every handler
	// slower than that be raced by a redelivery).
	BackOff []time.Duration
	// MaxAckPending is maxAckPending: how many messages a group may hold
	// unacknowledged at once (0: the server's default, 1000).
	MaxAckPending int
	// AckNone is ackPolicy none: messages are not acknowledged, so a
	// failed handler loses its message (at most once).
	AckNone bool

	// Concurrency is concurrency: how many handler calls of one
	// subscription run at once. "single" (1, the default, as Dapr's) keeps
	// publish order; "parallel" runs DefaultParallelism; a number (Mecha's)
	// sets it.
	Concurrency int
}

// knownProperties are the properties the broker reads, and Dapr's that it
// knowingly ignores: flowControl, rateLimit and heartbeat configure push
// consumers, which it does not use.
var knownProperties = []string{
	"consumerID", "natsURL", "name", "jwt", "seedKey", "token", "user", "password",
	"tls_client_cert", "tls_client_key", "tls_ca_cert", "domain", "apiPrefix",
	"durableName", "queueGroupName", "streamName", "memoryStorage", "replicas",
	"streamMaxAge", "streamMaxBytes",
	"deliverPolicy", "startSequence", "startTime", "ackWait", "maxDeliver", "backOff",
	"maxAckPending", "ackPolicy", "concurrency",
	"flowControl", "rateLimit", "heartbeat",
}

// parseSettings decodes md. It reports every invalid property at once, and
// returns warnings for properties it does not know or ignores.
func parseSettings(md components.Metadata) (settings, []string, error) {
	r := props.New(md, Unit)
	s := settings{
		URL:            strings.TrimSpace(r.String("natsURL")),
		Name:           r.String("name"),
		JWT:            r.String("jwt"),
		SeedKey:        r.String("seedKey"),
		Token:          r.String("token"),
		User:           r.String("user"),
		Password:       r.String("password"),
		TLSClientCert:  r.String("tls_client_cert"),
		TLSClientKey:   r.String("tls_client_key"),
		TLSCACert:      r.String("tls_ca_cert"),
		Domain:         r.String("domain"),
		APIPrefix:      r.String("apiPrefix"),
		Group:          strings.TrimSpace(r.String("durableName", "queueGroupName", "consumerID")),
		StreamName:     strings.TrimSpace(r.String("streamName")),
		MemoryStorage:  r.Bool("memoryStorage"),
		Replicas:       r.Int(0, "replicas"),
		StreamMaxAge:   r.Duration(0, "streamMaxAge"),
		StreamMaxBytes: int64(r.Int(0, "streamMaxBytes")),
		AckWait:        r.Duration(0, "ackWait"),
		MaxDeliver:     r.Int(0, "maxDeliver"),
		MaxAckPending:  r.Int(0, "maxAckPending"),
		Concurrency:    1,
	}
	if s.Name == "" {
		s.Name = DefaultName
	}
	var warnings []string

	switch {
	case s.URL == "":
		r.Fail("natsURL", "is required")
	default:
		for _, u := range strings.Split(s.URL, ",") {
			if _, err := url.Parse(strings.TrimSpace(u)); err != nil || strings.TrimSpace(u) == "" {
				r.Fail("natsURL", fmt.Sprintf("%q is not a URL", u))
			}
		}
	}
	if s.Group == "" {
		r.Fail("consumerID", "is required (or durableName, or queueGroupName)")
	}
	if (s.JWT == "") != (s.SeedKey == "") {
		r.Fail("jwt", "jwt and seedKey go together")
	}
	if (s.TLSClientCert == "") != (s.TLSClientKey == "") {
		r.Fail("tls_client_cert", "tls_client_cert and tls_client_key go together")
	}
	if s.Password != "" && s.User == "" {
		r.Fail("password", "needs user")
	}
	auth := 0
	for _, set := range []bool{s.JWT != "", s.Token != "", s.User != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		r.Fail("jwt", "set one of jwt/seedKey, token and user/password")
	}
	if s.StreamName != "" && !validName(s.StreamName) {
		r.Fail("streamName", fmt.Sprintf("%q is not a valid stream name (no spaces, '.', '*', '>', '/' or '\\')", s.StreamName))
	}

	switch p := strings.ToLower(strings.TrimSpace(r.String("deliverPolicy"))); p {
	case "", "all":
		s.DeliverPolicy = jetstream.DeliverAllPolicy
	case "last":
		s.DeliverPolicy = jetstream.DeliverLastPolicy
	case "new":
		s.DeliverPolicy = jetstream.DeliverNewPolicy
	case "sequence":
		s.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	case "time":
		s.DeliverPolicy = jetstream.DeliverByStartTimePolicy
	default:
		r.Fail("deliverPolicy", fmt.Sprintf("%q is not one of all, last, new, sequence, time", p))
	}
	if v := strings.TrimSpace(r.String("startSequence")); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			r.Fail("startSequence", fmt.Sprintf("%q is not a sequence number", v))
		}
		s.StartSequence = n
	}
	if v := strings.TrimSpace(r.String("startTime")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			r.Fail("startTime", fmt.Sprintf("%q is not a Unix time in seconds", v))
		}
		s.StartTime = time.Unix(n, 0)
	}
	if s.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && s.StartSequence == 0 {
		r.Fail("startSequence", "is required with deliverPolicy sequence")
	}
	if s.DeliverPolicy == jetstream.DeliverByStartTimePolicy && s.StartTime.IsZero() {
		r.Fail("startTime", "is required with deliverPolicy time")
	}

	switch p := strings.ToLower(strings.TrimSpace(r.String("ackPolicy"))); p {
	case "", "explicit":
	case "none":
		s.AckNone = true
	case "all":
		// Acknowledging one message would acknowledge every earlier one,
		// including those still being handled or failed: wrong for
		// handlers that run in parallel or fail.
		warnings = append(warnings, `ackPolicy "all" is treated as "explicit": each message is acknowledged on its own`)
	default:
		r.Fail("ackPolicy", fmt.Sprintf("%q is not one of explicit, none", p))
	}

	if v := strings.TrimSpace(r.String("backOff")); v != "" {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			d, err := components.Metadata{Properties: map[string]string{"backOff": part}}.Duration("backOff", Unit, 0)
			if err != nil || d <= 0 {
				r.Fail("backOff", fmt.Sprintf("%q is not a positive duration", part))
				continue
			}
			s.BackOff = append(s.BackOff, d)
		}
	}

	switch c := strings.ToLower(strings.TrimSpace(r.String("concurrency"))); c {
	case "", "single":
		s.Concurrency = 1
	case "parallel":
		s.Concurrency = DefaultParallelism
	default:
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			r.Fail("concurrency", fmt.Sprintf("%q is not single, parallel or a positive number", c))
		}
		s.Concurrency = n
	}

	for _, p := range []struct {
		name string
		v    int64
	}{
		{"ackWait", int64(s.AckWait)}, {"maxDeliver", int64(s.MaxDeliver)}, {"maxAckPending", int64(s.MaxAckPending)},
		{"replicas", int64(s.Replicas)}, {"streamMaxAge", int64(s.StreamMaxAge)}, {"streamMaxBytes", s.StreamMaxBytes},
	} {
		if p.v < 0 {
			r.Fail(p.name, "must not be negative")
		}
	}
	for _, name := range []string{"flowControl", "rateLimit", "heartbeat"} {
		if r.Name(name) != "" {
			warnings = append(warnings, fmt.Sprintf("ignoring %q: it configures push consumers, and this broker pulls", name))
		}
	}
	warnings = append(warnings, props.Unknown(md, knownProperties...)...)
	return s, warnings, r.Err()
}

// nakDelay is how long a message whose handler failed waits before it
// comes back, after its delivered-th delivery (1 for the first).
func (s settings) nakDelay(delivered uint64) time.Duration {
	if delivered < 1 {
		delivered = 1
	}
	if len(s.BackOff) > 0 {
		return s.BackOff[min(int(delivered-1), len(s.BackOff)-1)]
	}
	d := DefaultInitialBackOff
	for i := uint64(1); i < delivered && d < DefaultMaxBackOff; i++ {
		d *= 2
	}
	return min(d, DefaultMaxBackOff)
}
