package mqttconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
)

func parse(kv ...string) (Settings, error) {
	p := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	r := props.New(components.Metadata{Properties: p}, time.Second)
	s := Parse(r)
	return s, r.Err()
}

func TestDefaults(t *testing.T) {
	s, err := parse("url", "tcp://broker:1883")
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{Broker: "tcp://broker:1883", QoS: 1}
	if s.Broker != want.Broker || s.QoS != 1 || s.Retain || s.CleanSession || s.TLS != nil || s.Username != "" || s.Password != "" {
		t.Fatalf("settings = %+v, want %+v", s, want)
	}
}

func TestProperties(t *testing.T) {
	tests := []struct {
		name  string
		kv    []string
		check func(t *testing.T, s Settings)
	}{
		{"mqtt scheme is tcp", []string{"url", "mqtt://h:1"}, func(t *testing.T, s Settings) {
			if s.Broker != "tcp://h:1" {
				t.Errorf("Broker = %q, want tcp://h:1", s.Broker)
			}
		}},
		{"mqtts scheme is ssl with TLS", []string{"URL", "mqtts://h:8883"}, func(t *testing.T, s Settings) {
			if s.Broker != "ssl://h:8883" || s.TLS == nil || s.TLS.MinVersion < 0x0303 {
				t.Errorf("Broker = %q, TLS = %+v; want ssl://h:8883 and TLS 1.2+", s.Broker, s.TLS)
			}
		}},
		{"websocket path kept", []string{"url", "ws://h:9001/mqtt"}, func(t *testing.T, s Settings) {
			if s.Broker != "ws://h:9001/mqtt" || s.TLS != nil {
				t.Errorf("Broker = %q, TLS = %v", s.Broker, s.TLS)
			}
		}},
		{"credentials from the URL", []string{"url", "tcp://user:p%40ss@h:1"}, func(t *testing.T, s Settings) {
			if s.Username != "user" || s.Password != "p@ss" || s.Broker != "tcp://h:1" {
				t.Errorf("Username, Password, Broker = %q, %q, %q", s.Username, s.Password, s.Broker)
			}
		}},
		{"qos, retain, cleanSession", []string{"url", "tcp://h:1", "qos", "2", "retain", "true", "cleansession", "1"}, func(t *testing.T, s Settings) {
			if s.QoS != 2 || !s.Retain || !s.CleanSession {
				t.Errorf("QoS, Retain, CleanSession = %d, %v, %v; want 2, true, true", s.QoS, s.Retain, s.CleanSession)
			}
		}},
		{"qos 0", []string{"url", "tcp://h:1", "qos", "0"}, func(t *testing.T, s Settings) {
			if s.QoS != 0 {
				t.Errorf("QoS = %d, want 0", s.QoS)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parse(tt.kv...)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestTLS(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	s, err := parse("url", "ssl://h:8883", "caCert", certPEM, "clientCert", certPEM, "clientKey", keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if s.TLS == nil || s.TLS.RootCAs == nil || len(s.TLS.Certificates) != 1 {
		t.Fatalf("TLS = %+v, want a CA pool and one client certificate", s.TLS)
	}
	// A CA alone turns TLS on whatever the scheme says, as Dapr does.
	s, err = parse("url", "tcp://h:1", "caCert", certPEM)
	if err != nil || s.TLS == nil || s.TLS.RootCAs == nil {
		t.Fatalf("TLS = %+v, %v; want a CA pool", s.TLS, err)
	}
}

func TestErrors(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	tests := []struct {
		name string
		kv   []string
		want []string
	}{
		{"no url", nil, []string{`"url"`, "required"}},
		{"not a URL", []string{"url", "broker:1883"}, []string{`"url"`}},
		{"bad scheme", []string{"url", "http://h:1"}, []string{`"url"`, "scheme"}},
		{"qos 3", []string{"url", "tcp://h:1", "qos", "3"}, []string{`"qos"`}},
		{"qos not a number", []string{"url", "tcp://h:1", "qos", "one"}, []string{`"qos"`}},
		{"bad retain", []string{"url", "tcp://h:1", "retain", "perhaps"}, []string{`"retain"`}},
		{"bad cleanSession", []string{"url", "tcp://h:1", "cleanSession", "sometimes"}, []string{`"cleanSession"`}},
		{"bad ca", []string{"url", "ssl://h:1", "caCert", "nope"}, []string{`"caCert"`}},
		{"cert without key", []string{"url", "ssl://h:1", "clientCert", certPEM}, []string{`"clientCert"`, "together"}},
		{"mismatched pair", []string{"url", "ssl://h:1", "clientCert", keyPEM, "clientKey", certPEM}, []string{`"clientCert"`}},
		{"all at once", []string{"qos", "9", "retain", "x"}, []string{`"url"`, `"qos"`, `"retain"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.kv...)
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

func TestPasswordNeverInErrors(t *testing.T) {
	for _, raw := range []string{"tcp://user:hunter2@", "http://user:hunter2@h:1", "user:hunter2@h:1"} {
		_, err := parse("url", raw)
		if err == nil {
			t.Fatalf("url %q accepted, want an error", raw)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("url %q: error leaks the password: %v", raw, err)
		}
	}
}

func TestClientOptions(t *testing.T) {
	s, err := parse("url", "ssl://u:pw@h:8883", "cleanSession", "true")
	if err != nil {
		t.Fatal(err)
	}
	o := s.ClientOptions("app-1", slog.New(slog.DiscardHandler))
	if len(o.Servers) != 1 || o.Servers[0].String() != "ssl://h:8883" {
		t.Errorf("Servers = %v, want ssl://h:8883", o.Servers)
	}
	if o.ClientID != "app-1" || !o.CleanSession || !o.AutoReconnect || o.Username != "u" || o.Password != "pw" || o.TLSConfig == nil {
		t.Errorf("options = client %q clean %v reconnect %v user %q password set %v TLS %v",
			o.ClientID, o.CleanSession, o.AutoReconnect, o.Username, o.Password != "", o.TLSConfig != nil)
	}
	if o.ConnectTimeout != ConnectTimeout || o.OnConnectionLost == nil {
		t.Errorf("ConnectTimeout = %v, OnConnectionLost set = %v", o.ConnectTimeout, o.OnConnectionLost != nil)
	}
}

// token is a paho token completed by the test.
type token struct {
	done chan struct{}
	err  error
}

func (k *token) Wait() bool                     { <-k.done; return true }
func (k *token) WaitTimeout(time.Duration) bool { return true }
func (k *token) Done() <-chan struct{}          { return k.done }
func (k *token) Error() error                   { return k.err }

func TestWait(t *testing.T) {
	failed := &token{done: make(chan struct{}), err: errors.New("refused")}
	close(failed.done)
	if err := Wait(context.Background(), failed, time.Minute, "x"); err == nil || err.Error() != "refused" {
		t.Errorf("Wait on a failed token = %v, want its error", err)
	}
	pending := &token{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, pending, time.Minute, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled ctx = %v, want context.Canceled", err)
	}
	if err := Wait(context.Background(), pending, time.Millisecond, "subscribing"); err == nil || !strings.Contains(err.Error(), "subscribing") {
		t.Errorf("Wait past its timeout = %v, want an error naming the operation", err)
	}
}

// selfSigned returns a PEM certificate and its PEM key.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mqttconn-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}
