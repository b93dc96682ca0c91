// Package redisconn is the connection half of Dapr's Redis component
// metadata, shared by the built-in Redis components (state, lock,
// configuration, bindings) so that one manifest means the same server,
// credentials, TLS, timeouts and pool to each of them, is checked by the
// same rules with the same errors, and yields a client set up the same way.
//
// What differs between the components stays in their packages: their own
// properties (ttlInSeconds, ...) and their retry defaults, which differ on
// purpose (a lock or unlock must not be replayed).
//
// Only a single Redis node is supported: cluster, failover (Sentinel) and
// Entra ID settings are refused with an error naming the property.
package redisconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/mecha-dev/mecha/components/internal/props"
)

// Unit is the unit of a duration given as a bare number, as Dapr's Redis
// components read them ("500" is 500ms).
const Unit = time.Millisecond

// Defaults for the connection settings. They are short on purpose: a sidecar
// should report an unreachable or stalled Redis promptly rather than hang its
// callers.
const (
	DefaultPort        = "6379"
	DefaultDialTimeout = 5 * time.Second
	DefaultReadTimeout = 3 * time.Second
)

// Defaults are the retry settings a component chooses for itself, used when
// the metadata leaves them out. Zero means go-redis's own default (3 retries,
// waits between 10ms and 1s); -1 means none.
type Defaults struct {
	MaxRetries                       int
	MinRetryBackoff, MaxRetryBackoff time.Duration
}

// Settings are the decoded connection properties. Property names are Dapr's
// (matched case-insensitively); where Dapr has two spellings both are
// accepted. Durations are Go durations ("5s") or bare integers read as
// milliseconds, as Dapr reads them.
type Settings struct {
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
	// failed command is retried (default: the component's; -1 disables
	// retries).
	MaxRetries int
	// MinRetryBackoff and MaxRetryBackoff are redisMinRetryInterval and
	// maxRetryBackoff (alias redisMaxRetryInterval): the bounds of the wait
	// between retries (defaults: the component's; -1 disables the wait).
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
}

// Properties are the names Parse reads, and the Dapr Redis connection
// properties it knowingly ignores: idleCheckFrequency (go-redis v9 has no
// such setting) and sentinelMasterName (failover is refused). A component
// adds its own names when it warns about unknown properties.
var Properties = []string{
	"redisHost", "redisPort", "redisUsername", "redisPassword", "redisDB",
	"enableTLS", "insecureSkipTLSVerify", "clientCert", "clientKey",
	"maxRetries", "redisMaxRetries", "redisMinRetryInterval", "maxRetryBackoff", "redisMaxRetryInterval",
	"dialTimeout", "readTimeout", "writeTimeout",
	"poolSize", "minIdleConns", "poolTimeout", "idleTimeout", "connMaxIdleTime", "maxConnAge", "connMaxLifetime",
	"redisType", "failover", "useEntraID", "useAzureAD",
	"idleCheckFrequency", "sentinelMasterName",
}

// Parse reads the connection properties with r, which must read durations
// in Unit, and records every invalid one in r.
func Parse(r *props.Reader, def Defaults) Settings {
	s := Settings{
		Username:        r.String("redisUsername"),
		Password:        r.String("redisPassword"),
		DB:              r.Int(0, "redisDB"),
		MaxRetries:      r.Int(def.MaxRetries, "maxRetries", "redisMaxRetries"),
		MinRetryBackoff: duration(r, def.MinRetryBackoff, true, "redisMinRetryInterval"),
		MaxRetryBackoff: duration(r, def.MaxRetryBackoff, true, "maxRetryBackoff", "redisMaxRetryInterval"),
		DialTimeout:     duration(r, DefaultDialTimeout, false, "dialTimeout"),
		PoolSize:        r.Int(0, "poolSize"),
		MinIdleConns:    r.Int(0, "minIdleConns"),
		PoolTimeout:     duration(r, 0, false, "poolTimeout"),
		ConnMaxIdleTime: duration(r, 0, true, "idleTimeout", "connMaxIdleTime"),
		ConnMaxLifetime: duration(r, 0, false, "maxConnAge", "connMaxLifetime"),
	}
	s.ReadTimeout = duration(r, DefaultReadTimeout, true, "readTimeout")
	s.WriteTimeout = duration(r, s.ReadTimeout, true, "writeTimeout")
	s.Addr = addr(r)
	s.TLS = tlsConfig(r, s.Addr)

	for _, p := range []struct {
		name string
		v    int
	}{{"redisDB", s.DB}, {"poolSize", s.PoolSize}, {"minIdleConns", s.MinIdleConns}} {
		if p.v < 0 {
			r.Fail(p.name, "must not be negative")
		}
	}
	if s.MaxRetries < -1 {
		r.Fail("maxRetries", "must be -1 (no retries) or more")
	}
	if t := r.String("redisType"); t != "" && !strings.EqualFold(t, "node") {
		r.Fail("redisType", fmt.Sprintf("%q is not supported (only a single node)", t))
	}
	if r.Bool("failover") {
		r.Fail("failover", "is not supported (only a single node)")
	}
	for _, unsupported := range []string{"useEntraID", "useAzureAD"} {
		if r.Bool(unsupported) {
			r.Fail(unsupported, "is not supported")
		}
	}
	return s
}

// duration reads a duration. A negative value means "disabled" (go-redis's
// -1) when allowDisable is set, and is an error otherwise.
func duration(r *props.Reader, def time.Duration, allowDisable bool, names ...string) time.Duration {
	v := r.Duration(def, names...)
	switch {
	case v >= 0:
		return v
	case allowDisable:
		return -1
	}
	r.Fail(r.Name(names...), "must not be negative")
	return def
}

// addr builds "host:port" from redisHost and redisPort.
func addr(r *props.Reader) string {
	host := strings.TrimSpace(r.String("redisHost"))
	if host == "" {
		r.Fail("redisHost", "is required")
		return ""
	}
	if strings.Contains(host, ",") {
		r.Fail("redisHost", "lists several hosts; only a single node is supported")
		return ""
	}
	port := strings.TrimSpace(r.String("redisPort"))
	if port != "" {
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			r.Fail("redisPort", fmt.Sprintf("%q is not a port number", port))
			return ""
		}
	}
	h, p, err := net.SplitHostPort(host)
	if err != nil {
		// No port (or a bare IPv6 address): add one.
		if port == "" {
			port = DefaultPort
		}
		return net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	if h == "" || p == "" {
		r.Fail("redisHost", fmt.Sprintf("%q is not host:port", host))
		return ""
	}
	if port != "" && port != p {
		r.Fail("redisHost", fmt.Sprintf("%q has port %s but redisPort is %s", host, p, port))
	}
	return host
}

// tlsConfig builds the TLS configuration, or nil when enableTLS is off.
func tlsConfig(r *props.Reader, addr string) *tls.Config {
	if !r.Bool("enableTLS") {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: r.Bool("insecureSkipTLSVerify")} //nolint:gosec // opt-in
	if h, _, err := net.SplitHostPort(addr); err == nil {
		cfg.ServerName = h
	}
	cert, key := r.String("clientCert"), r.String("clientKey")
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		r.Fail("clientCert", "clientCert and clientKey must be set together")
	default:
		pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			r.Fail("clientCert", fmt.Sprintf("invalid certificate or key: %v", err))
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	return cfg
}

// Options are the go-redis options for s.
func (s Settings) Options() *goredis.Options {
	return &goredis.Options{
		Addr:            s.Addr,
		Username:        s.Username,
		Password:        s.Password,
		DB:              s.DB,
		TLSConfig:       s.TLS,
		MaxRetries:      s.MaxRetries,
		MinRetryBackoff: s.MinRetryBackoff,
		MaxRetryBackoff: s.MaxRetryBackoff,
		DialTimeout:     s.DialTimeout,
		// One dial per attempt: commands are already retried maxRetries
		// times, and a second layer of retries would multiply the time an
		// unreachable Redis takes to report.
		DialerRetries:         1,
		ReadTimeout:           s.ReadTimeout,
		WriteTimeout:          s.WriteTimeout,
		ContextTimeoutEnabled: true, // honour the callers' deadlines
		PoolSize:              s.PoolSize,
		MinIdleConns:          s.MinIdleConns,
		PoolTimeout:           s.PoolTimeout,
		ConnMaxIdleTime:       s.ConnMaxIdleTime,
		ConnMaxLifetime:       s.ConnMaxLifetime,
		// A single node sends no maintenance notifications; don't probe.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// Connect creates a client for s and pings Redis. It fails when Redis does
// not answer before ctx is done, or within dialTimeout+readTimeout (at least
// 10s) when ctx has no deadline; nothing is left open then. On success it
// logs the server it reached to log.
func Connect(ctx context.Context, log *slog.Logger, s Settings) (*goredis.Client, error) {
	client := goredis.NewClient(s.Options())
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(10*time.Second, s.DialTimeout+s.ReadTimeout))
		defer cancel()
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis: cannot reach %s: %w", s.Addr, err)
	}
	log.Info("connected to redis", "addr", s.Addr, "db", s.DB, "tls", s.TLS != nil)
	return client, nil
}
