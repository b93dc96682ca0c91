package mqtt3

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/mecha-dev/mecha/components"
)

// settings is the decoded component metadata (Dapr's names, matched
// case-insensitively).
type settings struct {
	// Broker is url with Dapr's scheme aliases applied (mqtt → tcp; mqtts,
	// tcps, tls → ssl); user and password in the URL are the credentials.
	// Required.
	Broker             string
	Username, Password string
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
	// QoS is qos (0, 1 or 2; default 1).
	QoS byte
	// Retain is retain (default false): published messages are retained.
	Retain bool
	// CleanSession is cleanSession (default false, as Dapr since 1.11).
	// With false the broker keeps the subscription and redelivers
	// unacknowledged messages when the input side reconnects.
	CleanSession bool
	// BackOffMaxRetries is backOffMaxRetries (default 0): how many times a
	// rejected event is handed to the app again, with a back-off, before
	// the binding gives up on it for this connection; -1 retries until the
	// app accepts it.
	BackOffMaxRetries int
	// TLS holds caCert, clientCert and clientKey (PEM); nil when none is
	// set and the scheme is not ssl/wss.
	TLS *tls.Config
}

func parseSettings(md components.Metadata) (settings, error) {
	var errs []error
	fail := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("metadata %q: %s", name, fmt.Sprintf(format, args...)))
	}
	var s settings
	raw := strings.TrimSpace(md.String("url", ""))
	if raw == "" {
		fail("url", "is required (for example tcp://localhost:1883)")
	} else if u, err := url.Parse(raw); err != nil || u.Host == "" {
		fail("url", "%q is not a broker URL such as tcp://host:1883", redact(raw))
	} else {
		scheme := strings.ToLower(u.Scheme)
		switch scheme {
		case "mqtt":
			scheme = "tcp"
		case "mqtts", "tcps", "tls":
			scheme = "ssl"
		case "tcp", "ssl", "ws", "wss":
		default:
			fail("url", "scheme %q is not one of tcp, mqtt, ssl, mqtts, tcps, tls, ws, wss", u.Scheme)
		}
		s.Broker = scheme + "://" + u.Host + u.Path
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	if s.Topic = md.String("topic", ""); s.Topic == "" {
		fail("topic", "is required")
	}
	if s.ClientID = md.String("consumerID", md.String("clientID", "")); s.ClientID == "" {
		fail("consumerID", "is required: a stable client id, unique per app (Dapr's {uuid} template works)")
	}
	qos, err := md.Int("qos", 1)
	if err != nil {
		errs = append(errs, err)
	} else if qos < 0 || qos > 2 {
		fail("qos", "%d is not 0, 1 or 2", qos)
	}
	s.QoS = byte(qos)
	if s.Retain, err = md.Bool("retain", false); err != nil {
		errs = append(errs, err)
	}
	if s.CleanSession, err = md.Bool("cleanSession", false); err != nil {
		errs = append(errs, err)
	}
	if s.BackOffMaxRetries, err = md.Int("backOffMaxRetries", 0); err != nil {
		errs = append(errs, err)
	} else if s.BackOffMaxRetries < -1 {
		fail("backOffMaxRetries", "must be -1 (no limit) or more")
	}
	s.TLS, err = tlsConfig(md, strings.HasPrefix(s.Broker, "ssl") || strings.HasPrefix(s.Broker, "wss"))
	if err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

func tlsConfig(md components.Metadata, secure bool) (*tls.Config, error) {
	ca, cert, key := md.String("caCert", ""), md.String("clientCert", ""), md.String("clientKey", "")
	if ca == "" && cert == "" && key == "" && !secure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM([]byte(ca)) {
			return nil, errors.New(`metadata "caCert": no PEM certificate found`)
		}
	}
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		return nil, errors.New(`metadata "clientCert": clientCert and clientKey must be set together`)
	default:
		pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			return nil, fmt.Errorf(`metadata "clientCert": %w`, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.Index(raw, "@"); i >= 0 {
			return "…" + raw[i:]
		}
		return raw
	}
	return u.Redacted()
}
