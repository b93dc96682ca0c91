package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Defaults: short, so that an unreachable Redis is reported promptly.
const (
	defaultPort         = "6379"
	defaultDialTimeout  = 5 * time.Second
	defaultReadTimeout  = 3 * time.Second
	defaultMaxRetries   = 3
	defaultMaxRetryWait = 512 * time.Millisecond
)

// settings is the decoded component metadata. Names are Dapr's (matched
// case-insensitively). Durations are Go durations ("5s") or bare integers
// read as milliseconds, as Dapr's Redis components read them.
type settings struct {
	// Addr is redisHost, "host:port" (required); a host without a port gets
	// redisPort, or 6379.
	Addr string
	// Username and Password are redisUsername and redisPassword.
	Username, Password string
	// DB is redisDB (default 0); it also selects the keyspace notification
	// channel, __keyspace@<db>__.
	DB int
	// TLS is set by enableTLS; insecureSkipTLSVerify turns off certificate
	// checks; clientCert and clientKey (PEM) add a client certificate.
	TLS *tls.Config
	// MaxRetries is maxRetries (default 3; -1 disables retries) and
	// MaxRetryBackoff is maxRetryBackoff (default 512ms).
	MaxRetries      int
	MaxRetryBackoff time.Duration
	// DialTimeout, ReadTimeout and WriteTimeout are dialTimeout (5s),
	// readTimeout (3s) and writeTimeout (readTimeout).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is poolSize (default: go-redis's).
	PoolSize int
}

func isKnownProperty(name string) bool {
	switch strings.ToLower(name) {
	case "redishost", "redisport", "redisusername", "redispassword", "redisdb",
		"enabletls", "insecureskiptlsverify", "clientcert", "clientkey",
		"maxretries", "redismaxretries", "maxretrybackoff", "redismaxretryinterval",
		"dialtimeout", "readtimeout", "writetimeout", "poolsize", "redistype", "failover",
		"sentinelmastername":
		return true
	}
	return false
}

// parseSettings decodes md, reporting every invalid property at once and
// returning warnings for unknown ones.
func parseSettings(md components.Metadata) (settings, []string, error) {
	d := decoder{md: md}
	s := settings{
		Username:        d.str("redisUsername"),
		Password:        d.str("redisPassword"),
		DB:              d.int(0, "redisDB"),
		MaxRetries:      d.int(defaultMaxRetries, "maxRetries", "redisMaxRetries"),
		MaxRetryBackoff: d.dur(defaultMaxRetryWait, "maxRetryBackoff", "redisMaxRetryInterval"),
		DialTimeout:     d.dur(defaultDialTimeout, "dialTimeout"),
		ReadTimeout:     d.dur(defaultReadTimeout, "readTimeout"),
		PoolSize:        d.int(0, "poolSize"),
	}
	s.WriteTimeout = d.dur(s.ReadTimeout, "writeTimeout")
	s.Addr = d.addr()
	s.TLS = d.tlsConfig(s.Addr)
	if s.DB < 0 {
		d.fail("redisDB", "must not be negative")
	}
	if s.MaxRetries < -1 {
		d.fail("maxRetries", "must be -1 (no retries) or more")
	}
	if s.PoolSize < 0 {
		d.fail("poolSize", "must not be negative")
	}
	if t := d.str("redisType"); t != "" && !strings.EqualFold(t, "node") {
		d.fail("redisType", fmt.Sprintf("%q is not supported (only a single node)", t))
	}
	if d.bool("failover") {
		d.fail("failover", "is not supported")
	}
	var warnings []string
	for k := range md.Properties {
		if !isKnownProperty(k) {
			warnings = append(warnings, fmt.Sprintf("ignoring unknown metadata property %q", k))
		}
	}
	return s, warnings, errors.Join(d.errs...)
}

type decoder struct {
	md   components.Metadata
	errs []error
}

func (d *decoder) fail(name, msg string) {
	d.errs = append(d.errs, fmt.Errorf("metadata %q: %s", name, msg))
}

// name returns the first of names set to a non-empty value, or "".
func (d *decoder) name(names ...string) string {
	for _, n := range names {
		if v, ok := d.md.Get(n); ok && strings.TrimSpace(v) != "" {
			return n
		}
	}
	return ""
}

func (d *decoder) str(names ...string) string {
	n := d.name(names...)
	if n == "" {
		return ""
	}
	v, _ := d.md.Get(n)
	return v
}

func (d *decoder) int(def int, names ...string) int {
	n := d.name(names...)
	if n == "" {
		return def
	}
	v, err := d.md.Int(n, def)
	if err != nil {
		d.errs = append(d.errs, err)
	}
	return v
}

func (d *decoder) bool(names ...string) bool {
	n := d.name(names...)
	if n == "" {
		return false
	}
	v, err := d.md.Bool(n, false)
	if err != nil {
		d.errs = append(d.errs, err)
	}
	return v
}

// dur reads a duration; negative values mean "disabled" (go-redis's -1).
func (d *decoder) dur(def time.Duration, names ...string) time.Duration {
	n := d.name(names...)
	if n == "" {
		return def
	}
	v, err := d.md.Duration(n, time.Millisecond, def)
	if err != nil {
		d.errs = append(d.errs, err)
		return def
	}
	if v < 0 {
		return -1
	}
	return v
}

// addr builds "host:port" from redisHost and redisPort.
func (d *decoder) addr() string {
	host := strings.TrimSpace(d.str("redisHost"))
	if host == "" {
		d.fail("redisHost", "is required")
		return ""
	}
	if strings.Contains(host, ",") {
		d.fail("redisHost", "lists several hosts; only a single node is supported")
		return ""
	}
	port := strings.TrimSpace(d.str("redisPort"))
	if port != "" {
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			d.fail("redisPort", fmt.Sprintf("%q is not a port number", port))
			return ""
		}
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if h == "" || p == "" {
			d.fail("redisHost", fmt.Sprintf("%q is not host:port", host))
			return ""
		}
		return host
	}
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// tlsConfig builds the TLS configuration, or nil when enableTLS is off.
func (d *decoder) tlsConfig(addr string) *tls.Config {
	if !d.bool("enableTLS") {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: d.bool("insecureSkipTLSVerify")} //nolint:gosec // opt-in
	if h, _, err := net.SplitHostPort(addr); err == nil {
		cfg.ServerName = h
	}
	cert, key := d.str("clientCert"), d.str("clientKey")
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		d.fail("clientCert", "clientCert and clientKey must be set together")
	default:
		pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			d.fail("clientCert", fmt.Sprintf("invalid certificate or key: %v", err))
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	return cfg
}
