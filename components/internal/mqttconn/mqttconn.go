// Package mqttconn is the connection half of the metadata of Dapr's MQTT 3
// components (bindings.mqtt3, pubsub.mqtt3), shared so that one manifest
// means the same broker, credentials, TLS and QoS to each of them, is
// checked by the same rules with the same errors, and yields a paho client
// set up the same way.
//
// What differs stays in the components: their own properties (topic,
// consumerID, backOffMaxRetries, ...), how they name their client ids, and
// the paho options that follow from how they consume messages (ordering,
// resumed subscriptions, reconnect intervals).
package mqttconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mecha-dev/mecha/components/internal/props"
)

// ConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK).
const ConnectTimeout = 10 * time.Second

// Properties are the property names Parse reads.
var Properties = []string{"url", "qos", "retain", "cleanSession", "caCert", "clientCert", "clientKey"}

// Settings are the decoded connection properties (Dapr's names, matched
// case-insensitively).
type Settings struct {
	// Broker is url with Dapr's scheme aliases applied (mqtt → tcp; mqtts,
	// tcps, tls → ssl); user and password in the URL are the credentials.
	// Required.
	Broker             string
	Username, Password string
	// QoS is qos (0, 1 or 2; default 1), for publishing and subscribing.
	QoS byte
	// Retain is retain (default false): published messages are retained by
	// the broker as the topic's last known value.
	Retain bool
	// CleanSession is cleanSession (default false, as Dapr since 1.11).
	// With false the broker keeps the client's session (its subscriptions
	// and the QoS 1/2 messages not yet acknowledged) while it is
	// disconnected, and resumes it when a client with the same id
	// connects again.
	CleanSession bool
	// TLS holds caCert, clientCert and clientKey (PEM); nil when none is
	// set and the scheme is not ssl or wss.
	TLS *tls.Config
}

// Parse reads the connection properties with r, which collects the errors,
// each naming its property; a password never appears in them.
func Parse(r *props.Reader) Settings {
	var s Settings
	raw := strings.TrimSpace(r.String("url"))
	if raw == "" {
		r.Fail("url", "is required (for example tcp://localhost:1883)")
	} else if u, err := url.Parse(raw); err != nil || u.Host == "" {
		r.Fail("url", fmt.Sprintf("%q is not a broker URL such as tcp://host:1883", Redact(raw)))
	} else {
		scheme := strings.ToLower(u.Scheme)
		switch scheme {
		case "mqtt":
			scheme = "tcp"
		case "mqtts", "tcps", "tls":
			scheme = "ssl"
		case "tcp", "ssl", "ws", "wss":
		default:
			r.Fail("url", fmt.Sprintf("scheme %q is not one of tcp, mqtt, ssl, mqtts, tcps, tls, ws, wss", u.Scheme))
		}
		s.Broker = scheme + "://" + u.Host + u.Path
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	qos := r.Int(1, "qos")
	if qos < 0 || qos > 2 {
		r.Fail("qos", fmt.Sprintf("%d is not 0, 1 or 2", qos))
		qos = 1
	}
	s.QoS = byte(qos)
	s.Retain = r.Bool("retain")
	s.CleanSession = r.Bool("cleanSession")
	secure := strings.HasPrefix(s.Broker, "ssl") || strings.HasPrefix(s.Broker, "wss")
	tlsCfg, err := tlsConfig(r.String("caCert"), r.String("clientCert"), r.String("clientKey"), secure)
	if err != nil {
		r.Add(err)
	}
	s.TLS = tlsCfg
	return s
}

func tlsConfig(ca, cert, key string, secure bool) (*tls.Config, error) {
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

// ClientOptions returns the paho options every MQTT 3 component starts
// from: the broker, credentials and TLS, clientID with the clean-session
// flag, automatic reconnection, and a warning logged when the connection
// is lost. Components add what depends on how they consume.
func (s Settings) ClientOptions(clientID string, log *slog.Logger) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker(s.Broker).
		SetClientID(clientID).
		SetCleanSession(s.CleanSession).
		SetAutoReconnect(true).
		SetConnectTimeout(ConnectTimeout).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			log.Warn("MQTT connection lost; reconnecting", "broker", s.Broker, "clientID", clientID, "error", err)
		})
	if s.Username != "" {
		o.SetUsername(s.Username)
	}
	if s.Password != "" {
		o.SetPassword(s.Password)
	}
	if s.TLS != nil {
		o.SetTLSConfig(s.TLS)
	}
	return o
}

// Wait waits for tok to complete, ctx to end or timeout to pass, whichever
// comes first; paho tokens take no context, so this is how a caller's
// deadline applies to them.
func Wait(ctx context.Context, tok mqtt.Token, timeout time.Duration, what string) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%s did not complete within %v", what, timeout)
	}
}

// Redact hides a password in a URL, for messages.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.Index(raw, "@"); i >= 0 {
			return "…" + raw[i:]
		}
		return raw
	}
	return u.Redacted()
}
