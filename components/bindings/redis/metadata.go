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

// settings is the decoded component metadata: the connection part of
// Dapr's Redis metadata (names matched case-insensitively). Durations are Go
// durations ("5s") or bare milliseconds.
type settings struct {
	// Addr is redisHost ("host:port"; a bare host gets redisPort or 6379).
	// Required.
	Addr string
	// Username and Password are redisUsername and redisPassword.
	Username, Password string
	// DB is redisDB (default 0).
	DB int
	// TLS is set by enableTLS (insecureSkipTLSVerify turns off certificate
	// verification).
	TLS *tls.Config
	// DialTimeout, ReadTimeout and WriteTimeout are dialTimeout (default
	// 5s), readTimeout (default 3s) and writeTimeout (default readTimeout).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// MaxRetries is maxRetries (alias redisMaxRetries; default 3).
	MaxRetries int
	// PoolSize is poolSize (default: go-redis's).
	PoolSize int
}

func parseSettings(md components.Metadata) (settings, error) {
	var errs []error
	fail := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("metadata %q: %s", name, fmt.Sprintf(format, args...)))
	}
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	s := settings{Username: md.String("redisUsername", ""), Password: md.String("redisPassword", "")}
	var err error
	s.DB, err = md.Int("redisDB", 0)
	keep(err)
	if s.DB < 0 {
		fail("redisDB", "must not be negative")
	}
	s.DialTimeout, err = md.Duration("dialTimeout", time.Millisecond, 5*time.Second)
	keep(err)
	s.ReadTimeout, err = md.Duration("readTimeout", time.Millisecond, 3*time.Second)
	keep(err)
	s.WriteTimeout, err = md.Duration("writeTimeout", time.Millisecond, s.ReadTimeout)
	keep(err)
	retriesKey := "maxRetries"
	if v, ok := md.Get("redisMaxRetries"); ok && v != "" {
		retriesKey = "redisMaxRetries"
	}
	s.MaxRetries, err = md.Int(retriesKey, 3)
	keep(err)
	s.PoolSize, err = md.Int("poolSize", 0)
	keep(err)
	if s.PoolSize < 0 {
		fail("poolSize", "must not be negative")
	}
	enableTLS, err := md.Bool("enableTLS", false)
	keep(err)
	skipVerify, err := md.Bool("insecureSkipTLSVerify", false)
	keep(err)
	if t := md.String("redisType", ""); t != "" && !strings.EqualFold(t, "node") {
		fail("redisType", "%q is not supported (only a single node)", t)
	}

	host := strings.TrimSpace(md.String("redisHost", ""))
	port := strings.TrimSpace(md.String("redisPort", ""))
	switch {
	case host == "":
		fail("redisHost", "is required")
	case strings.Contains(host, ","):
		fail("redisHost", "lists several hosts; only a single node is supported")
	default:
		if port != "" {
			if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
				fail("redisPort", "%q is not a port number", port)
			}
		}
		if h, p, err := net.SplitHostPort(host); err == nil {
			if port != "" && port != p {
				fail("redisHost", "%q has port %s but redisPort is %s", host, p, port)
			}
			s.Addr = net.JoinHostPort(h, p)
		} else {
			if port == "" {
				port = "6379"
			}
			s.Addr = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
	}
	if enableTLS {
		h, _, _ := net.SplitHostPort(s.Addr)
		s.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: h, InsecureSkipVerify: skipVerify} //nolint:gosec // opt-in
	}
	return s, errors.Join(errs...)
}
