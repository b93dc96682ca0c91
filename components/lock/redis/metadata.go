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

// Defaults. Short timeouts so that an unreachable Redis is reported promptly
// instead of hanging the caller; no retries, because neither a lock nor an
// unlock can be replayed safely (see the package doc).
const (
	defaultPort        = "6379"
	defaultDialTimeout = 5 * time.Second
	defaultReadTimeout = 3 * time.Second
	defaultMaxRetries  = 0
)

// settings is the decoded component metadata. Property names are Dapr's
// Redis names, matched case-insensitively. Durations are Go durations ("5s")
// or bare integers read as milliseconds, as Dapr reads them.
type settings struct {
	// Addr is redisHost, "host:port" (a host alone gets redisPort or 6379).
	Addr string
	// Username and Password are redisUsername and redisPassword.
	Username, Password string
	// DB is redisDB (default 0).
	DB int
	// TLS is set when enableTLS is true (insecureSkipTLSVerify, clientCert
	// and clientKey refine it).
	TLS *tls.Config
	// MaxRetries is maxRetries (alias redisMaxRetries), default 0.
	MaxRetries int
	// MinRetryBackoff and MaxRetryBackoff are redisMinRetryInterval and
	// maxRetryBackoff (alias redisMaxRetryInterval); go-redis defaults.
	MinRetryBackoff, MaxRetryBackoff time.Duration
	// DialTimeout is dialTimeout (default 5s).
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout are readTimeout (default 3s) and
	// writeTimeout (default readTimeout); -1 disables them.
	ReadTimeout, WriteTimeout time.Duration
	// PoolSize, MinIdleConns, PoolTimeout, ConnMaxIdleTime (idleTimeout) and
	// ConnMaxLifetime (maxConnAge) tune the connection pool; zero values
	// keep go-redis's defaults.
	PoolSize, MinIdleConns           int
	PoolTimeout                      time.Duration
	ConnMaxIdleTime, ConnMaxLifetime time.Duration
}

// knownProperties are read here, or knowingly ignored: keyPrefix is the
// runtime's, the rest are accepted Dapr Redis settings with no meaning for a
// single-node lock.
var knownProperties = map[string]bool{
	"redishost": true, "redisport": true, "redisusername": true, "redispassword": true, "redisdb": true,
	"enabletls": true, "insecureskiptlsverify": true, "clientcert": true, "clientkey": true,
	"maxretries": true, "redismaxretries": true, "redisminretryinterval": true, "maxretrybackoff": true,
	"redismaxretryinterval": true, "dialtimeout": true, "readtimeout": true, "writetimeout": true,
	"poolsize": true, "minidleconns": true, "pooltimeout": true, "idletimeout": true, "connmaxidletime": true,
	"maxconnage": true, "connmaxlifetime": true, "redistype": true, "failover": true,
	"keyprefix": true, "idlecheckfrequency": true, "ttlinseconds": true, "processingtimeout": true,
}

// parseSettings decodes md, reporting every invalid property at once, and
// returns warnings for unknown ones (manifests often carry properties meant
// for other components).
func parseSettings(md components.Metadata) (settings, []string, error) {
	d := decoder{md: md}
	s := settings{
		Username:        d.str("redisUsername"),
		Password:        d.str("redisPassword"),
		DB:              d.int(0, "redisDB"),
		MaxRetries:      d.int(defaultMaxRetries, "maxRetries", "redisMaxRetries"),
		MinRetryBackoff: d.dur(0, "redisMinRetryInterval"),
		MaxRetryBackoff: d.dur(0, "maxRetryBackoff", "redisMaxRetryInterval"),
		DialTimeout:     d.dur(defaultDialTimeout, "dialTimeout"),
		PoolSize:        d.int(0, "poolSize"),
		MinIdleConns:    d.int(0, "minIdleConns"),
		PoolTimeout:     d.dur(0, "poolTimeout"),
		ConnMaxIdleTime: d.dur(0, "idleTimeout", "connMaxIdleTime"),
		ConnMaxLifetime: d.dur(0, "maxConnAge", "connMaxLifetime"),
	}
	s.ReadTimeout = d.dur(defaultReadTimeout, "readTimeout")
	s.WriteTimeout = d.dur(s.ReadTimeout, "writeTimeout")
	s.Addr = d.addr()
	s.TLS = d.tlsConfig(s.Addr)

	for _, p := range []struct {
		name string
		v    int
	}{{"redisDB", s.DB}, {"poolSize", s.PoolSize}, {"minIdleConns", s.MinIdleConns}} {
		if p.v < 0 {
			d.fail(p.name, "must not be negative")
		}
	}
	if s.MaxRetries < -1 {
		d.fail("maxRetries", "must be -1 (no retries) or more")
	}
	if s.DialTimeout <= 0 {
		d.fail("dialTimeout", "must be positive")
	}
	if t := d.str("redisType"); t != "" && !strings.EqualFold(t, "node") {
		d.fail("redisType", fmt.Sprintf("%q is not supported (only a single node)", t))
	}
	if d.bool("failover") {
		d.fail("failover", "is not supported (only a single node)")
	}
	var warnings []string
	for k := range md.Properties {
		if !knownProperties[strings.ToLower(k)] {
			warnings = append(warnings, fmt.Sprintf("ignoring unknown metadata property %q", k))
		}
	}
	return s, warnings, errors.Join(d.errs...)
}

// decoder reads typed properties and collects the errors.
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

func (d *decoder) bool(name string) bool {
	v, err := d.md.Bool(name, false)
	if err != nil {
		d.errs = append(d.errs, err)
	}
	return v
}

// dur reads a duration; a negative value becomes go-redis's -1 (disabled).
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
	h, p, err := net.SplitHostPort(host)
	if err != nil { // no port, or a bare IPv6 address
		if port == "" {
			port = defaultPort
		}
		return net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	if h == "" || p == "" {
		d.fail("redisHost", fmt.Sprintf("%q is not host:port", host))
		return ""
	}
	if port != "" && port != p {
		d.fail("redisHost", fmt.Sprintf("%q has port %s but redisPort is %s", host, p, port))
	}
	return host
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
