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

// Defaults for the connection settings. They are short on purpose: a sidecar
// should report an unreachable or stalled Redis promptly rather than hang its
// callers.
const (
	defaultPort         = "6379"
	defaultDialTimeout  = 5 * time.Second
	defaultReadTimeout  = 3 * time.Second
	defaultMaxRetries   = 3
	defaultMinRetryWait = 8 * time.Millisecond
	defaultMaxRetryWait = 512 * time.Millisecond
)

// settings is the decoded component metadata. Property names are Dapr's
// (matched case-insensitively); where Dapr has two spellings both are
// accepted. Durations are Go durations ("5s") or bare integers read as
// milliseconds, as Dapr reads them.
type settings struct {
	// Addr is redisHost, "host:port". Required. A host without a port gets
	// redisPort, or 6379.
	Addr string
	// Username and Password are redisUsername and redisPassword (ACL AUTH).
	Username, Password string
	// DB is redisDB, the database number (default 0).
	DB int
	// TLS is set when enableTLS is true. insecureSkipTLSVerify turns off
	// certificate verification; clientCert and clientKey (PEM) add a client
	// certificate.
	TLS *tls.Config
	// MaxRetries is maxRetries (alias redisMaxRetries): how many times a
	// failed command is retried (default 3, -1 disables retries).
	MaxRetries int
	// MinRetryBackoff and MaxRetryBackoff are redisMinRetryInterval and
	// maxRetryBackoff (alias redisMaxRetryInterval): the bounds of the wait
	// between retries (defaults 8ms and 512ms; -1 disables the wait).
	MinRetryBackoff, MaxRetryBackoff time.Duration
	// DialTimeout is dialTimeout (default 5s).
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout are readTimeout (default 3s) and
	// writeTimeout (default: readTimeout); -1 means no timeout.
	ReadTimeout, WriteTimeout time.Duration
	// PoolSize is poolSize, the maximum number of connections (default:
	// go-redis's, 10 per GOMAXPROCS).
	PoolSize int
	// MinIdleConns is minIdleConns (default 0).
	MinIdleConns int
	// PoolTimeout is poolTimeout: how long a call waits for a free
	// connection (default: readTimeout + 1s).
	PoolTimeout time.Duration
	// ConnMaxIdleTime is idleTimeout (alias connMaxIdleTime): idle
	// connections older than this are closed (default 30m; -1 disables).
	ConnMaxIdleTime time.Duration
	// ConnMaxLifetime is maxConnAge (alias connMaxLifetime): connections
	// older than this are closed (default: never).
	ConnMaxLifetime time.Duration
	// TTL is ttlInSeconds: the expiry of writes that carry no TTL of their
	// own (default: none).
	TTL time.Duration
}

// isKnownProperty reports whether the component reads or knowingly ignores
// the metadata property name. Anything else draws a warning, not an error:
// Dapr users' manifests carry properties for other components and versions.
func isKnownProperty(name string) bool {
	switch strings.ToLower(name) {
	case "redishost", "redisport", "redisusername", "redispassword", "redisdb",
		"enabletls", "insecureskiptlsverify", "clientcert", "clientkey",
		"maxretries", "redismaxretries", "redisminretryinterval", "maxretrybackoff",
		"redismaxretryinterval", "dialtimeout", "readtimeout", "writetimeout",
		"poolsize", "minidleconns", "pooltimeout", "idletimeout", "connmaxidletime",
		"maxconnage", "connmaxlifetime", "ttlinseconds", "redistype", "failover",
		"useentraid", "useazuread",
		// Handled by the runtime, not by the store.
		"actorstatestore", "keyprefix",
		// Accepted for compatibility; go-redis v9 has no such setting.
		"idlecheckfrequency":
		return true
	}
	return false
}

// parseSettings decodes md. It reports every invalid property at once, and
// returns warnings for properties it does not know.
func parseSettings(md components.Metadata) (settings, []string, error) {
	d := decoder{md: md}
	s := settings{
		Username:        d.str("redisUsername"),
		Password:        d.str("redisPassword"),
		DB:              d.int(0, "redisDB"),
		MaxRetries:      d.int(defaultMaxRetries, "maxRetries", "redisMaxRetries"),
		MinRetryBackoff: d.dur(defaultMinRetryWait, true, "redisMinRetryInterval"),
		MaxRetryBackoff: d.dur(defaultMaxRetryWait, true, "maxRetryBackoff", "redisMaxRetryInterval"),
		DialTimeout:     d.dur(defaultDialTimeout, false, "dialTimeout"),
		PoolSize:        d.int(0, "poolSize"),
		MinIdleConns:    d.int(0, "minIdleConns"),
		PoolTimeout:     d.dur(0, false, "poolTimeout"),
		ConnMaxIdleTime: d.dur(0, true, "idleTimeout", "connMaxIdleTime"),
		ConnMaxLifetime: d.dur(0, false, "maxConnAge", "connMaxLifetime"),
		TTL:             time.Duration(d.int(0, "ttlInSeconds")) * time.Second,
	}
	s.ReadTimeout = d.dur(defaultReadTimeout, true, "readTimeout")
	s.WriteTimeout = d.dur(s.ReadTimeout, true, "writeTimeout")
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
	if s.MinIdleConns < 0 {
		d.fail("minIdleConns", "must not be negative")
	}
	if s.TTL < 0 {
		s.TTL = 0 // Dapr's -1: no default expiry
	}
	if t := d.str("redisType"); t != "" && !strings.EqualFold(t, "node") {
		d.fail("redisType", fmt.Sprintf("%q is not supported (only a single node)", t))
	}
	for _, unsupported := range []string{"failover", "useEntraID", "useAzureAD"} {
		if d.bool(unsupported) {
			d.fail(unsupported, "is not supported")
		}
	}

	var warnings []string
	for k := range md.Properties {
		if !isKnownProperty(k) {
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

// name returns the first of names that is set to a non-empty value, or "".
func (d *decoder) name(names ...string) string {
	for _, n := range names {
		if v, ok := d.md.Get(n); ok && v != "" {
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

// dur reads a duration. A negative value means "disabled" (go-redis's -1)
// when allowDisable is set, and is an error otherwise.
func (d *decoder) dur(def time.Duration, allowDisable bool, names ...string) time.Duration {
	n := d.name(names...)
	if n == "" {
		return def
	}
	v, err := d.md.Duration(n, time.Millisecond, def)
	switch {
	case err != nil:
		d.errs = append(d.errs, err)
	case v < 0 && allowDisable:
		return -1
	case v < 0:
		d.fail(n, "must not be negative")
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
	if err != nil {
		// No port (or a bare IPv6 address): add one.
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
