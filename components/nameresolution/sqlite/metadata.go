package sqlite

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Defaults, as in Dapr's nameresolution.sqlite where it has the same knob.
const (
	defaultUpdateInterval = 2 * time.Second
	defaultBusyTimeout    = 5 * time.Second
	defaultTimeout        = 5 * time.Second
	defaultTableName      = "instances"
)

type config struct {
	ConnectionString string
	// UpdateInterval is how often the own entry is refreshed.
	UpdateInterval time.Duration
	// TTL is how old an entry may get before Resolve ignores it and it is
	// purged: 3 × UpdateInterval unless set.
	TTL         time.Duration
	BusyTimeout time.Duration
	Timeout     time.Duration
	TableName   string

	path string
}

func parseConfig(md components.Metadata) (config, error) {
	c := config{ConnectionString: strings.TrimSpace(md.String("connectionString", ""))}
	var errs []error
	var err error
	if c.ConnectionString == "" {
		errs = append(errs, errors.New(`metadata "connectionString" is required: the path of the registry file shared by the sidecars of this host`))
	}
	if c.UpdateInterval, err = md.Duration("updateInterval", time.Second, defaultUpdateInterval); err != nil {
		errs = append(errs, err)
	} else if c.UpdateInterval <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "updateInterval": %v must be positive`, c.UpdateInterval))
	}
	if c.TTL, err = md.Duration("ttl", time.Second, 3*c.UpdateInterval); err != nil {
		errs = append(errs, err)
	} else if c.TTL <= c.UpdateInterval && c.UpdateInterval > 0 {
		errs = append(errs, fmt.Errorf(`metadata "ttl": %v must be longer than updateInterval %v`, c.TTL, c.UpdateInterval))
	}
	if c.BusyTimeout, err = md.Duration("busyTimeout", time.Second, defaultBusyTimeout); err != nil {
		errs = append(errs, err)
	} else if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf(`metadata "busyTimeout": %v must not be negative`, c.BusyTimeout))
	}
	if c.Timeout, err = md.Duration("timeout", time.Second, defaultTimeout); err != nil {
		errs = append(errs, err)
	} else if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "timeout": %v must be positive`, c.Timeout))
	}
	c.TableName = md.String("tableName", defaultTableName)
	if !validIdent(c.TableName) {
		errs = append(errs, fmt.Errorf(`metadata "tableName": %q is not a valid table name (letters, digits, _)`, c.TableName))
	}
	if len(errs) == 0 {
		if err := c.parsePath(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

func validIdent(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// parsePath finds the file the registry lives in. An in-memory database
// cannot be shared between processes, which is the point of this resolver.
func (c *config) parsePath() error {
	cs := c.ConnectionString
	name, query, _ := strings.Cut(cs, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf(`metadata "connectionString": bad query %q: %w`, query, err)
	}
	for _, p := range q["_pragma"] {
		p = strings.ToLower(strings.TrimSpace(p))
		if strings.HasPrefix(p, "busy_timeout") || strings.HasPrefix(p, "journal_mode") {
			return fmt.Errorf(`metadata "connectionString": _pragma=%s is managed by the component (use "busyTimeout")`, p)
		}
	}
	if rest, ok := strings.CutPrefix(name, "file:"); ok {
		rest, _, _ = strings.Cut(rest, "#")
		if auth, ok := strings.CutPrefix(rest, "//"); ok {
			host, p, _ := strings.Cut(auth, "/")
			if host != "" && !strings.EqualFold(host, "localhost") {
				return fmt.Errorf(`metadata "connectionString": %q names a remote host`, cs)
			}
			rest = "/" + p
		}
		if rest, err = url.PathUnescape(rest); err != nil {
			return fmt.Errorf(`metadata "connectionString": %q: %w`, cs, err)
		}
		if strings.EqualFold(q.Get("mode"), "memory") {
			rest = ":memory:"
		}
		name = rest
	}
	if name == "" || name == ":memory:" {
		return fmt.Errorf(`metadata "connectionString": %q must name a file that every sidecar of the host can open (an in-memory database is private to one process)`, cs)
	}
	c.path = name
	return nil
}

func (c *config) ensureDir() error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o750); err != nil {
		return fmt.Errorf("create directory for the registry: %w", err)
	}
	return nil
}

// dsn adds the busy timeout (a per-connection setting) to the connection
// string; the WAL journal mode is persistent and set once in Init.
func (c *config) dsn() string {
	cs := c.ConnectionString
	sep := "?"
	if strings.Contains(cs, "?") {
		sep = "&"
	}
	return cs + sep + "_pragma=busy_timeout(" + strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10) + ")&_pragma=synchronous(NORMAL)"
}
