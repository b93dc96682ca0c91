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

// Defaults.
const (
	defaultTable        = "configuration"
	defaultPollInterval = time.Second
	defaultTimeout      = 20 * time.Second
	defaultBusyTimeout  = 2 * time.Second
	minPollInterval     = 10 * time.Millisecond
)

// config is the decoded component metadata (names case-insensitive;
// durations are Go durations or bare seconds).
type config struct {
	// ConnectionString is connectionString: a file path ("config.db"), or a
	// SQLite "file:" URI. Required. In-memory databases are refused: their
	// items could only be written by this process, which never writes.
	ConnectionString string
	// Table is table (alias tableName), default "configuration"; created
	// with its version triggers when missing.
	Table string
	// PollInterval is pollInterval, how often subscriptions check for
	// changes (default 1s, at least 10ms).
	PollInterval time.Duration
	// Timeout is timeout (alias timeoutInSeconds), bounding every read and
	// the schema setup (default 20s).
	Timeout time.Duration
	// BusyTimeout is busyTimeout: how long to wait for a lock held by a
	// writer (default 2s).
	BusyTimeout time.Duration
	// DisableWAL keeps the rollback journal instead of switching the file
	// to WAL (network file systems).
	DisableWAL bool

	path string // the database file
}

func parseConfig(md components.Metadata) (config, error) {
	c := config{
		ConnectionString: strings.TrimSpace(md.String("connectionString", "")),
		Table:            md.String("table", md.String("tableName", defaultTable)),
	}
	var errs []error
	if c.ConnectionString == "" {
		errs = append(errs, errors.New(`metadata "connectionString" is required (a database file such as "config.db", or a "file:" URI)`))
	}
	if !validTable(c.Table) {
		errs = append(errs, fmt.Errorf(`metadata "table": %q is not a valid table name (letters, digits and underscores, not starting with a digit or "sqlite_")`, c.Table))
	}
	var err error
	if c.PollInterval, err = md.Duration("pollInterval", time.Second, defaultPollInterval); err != nil {
		errs = append(errs, err)
	} else if c.PollInterval < minPollInterval {
		errs = append(errs, fmt.Errorf(`metadata "pollInterval": %v is shorter than %v`, c.PollInterval, minPollInterval))
	}
	if c.Timeout, err = duration(md, defaultTimeout, "timeout", "timeoutInSeconds"); err != nil {
		errs = append(errs, err)
	} else if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "timeout": %v must be positive`, c.Timeout))
	}
	if c.BusyTimeout, err = duration(md, defaultBusyTimeout, "busyTimeout"); err != nil {
		errs = append(errs, err)
	} else if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf(`metadata "busyTimeout": %v must not be negative`, c.BusyTimeout))
	}
	if c.DisableWAL, err = md.Bool("disableWAL", false); err != nil {
		errs = append(errs, err)
	}
	if c.ConnectionString != "" {
		if err := c.parseConnectionString(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

func duration(md components.Metadata, def time.Duration, names ...string) (time.Duration, error) {
	for _, n := range names {
		if v, ok := md.Get(n); ok && strings.TrimSpace(v) != "" {
			return md.Duration(n, time.Second, def)
		}
	}
	return def, nil
}

// validTable reports whether name is a plain identifier, safe to quote into
// statements, and not one SQLite reserves.
func validTable(name string) bool {
	if name == "" || len(name) > 64 || strings.HasPrefix(strings.ToLower(name), "sqlite_") {
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

// parseConnectionString finds the database file and rejects in-memory
// databases and options the component manages.
func (c *config) parseConnectionString() error {
	cs := c.ConnectionString
	name, query, _ := strings.Cut(cs, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf(`metadata "connectionString": bad query %q: %w`, query, err)
	}
	for _, p := range q["_pragma"] {
		p = strings.ToLower(strings.TrimSpace(p))
		if strings.HasPrefix(p, "busy_timeout") || strings.HasPrefix(p, "journal_mode") {
			return fmt.Errorf(`metadata "connectionString": _pragma=%s is managed by the component (use busyTimeout or disableWAL)`, p)
		}
	}
	inMemory := name == ":memory:" || strings.EqualFold(q.Get("mode"), "memory")
	if rest, ok := strings.CutPrefix(name, "file:"); ok && !inMemory {
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
		inMemory = rest == ":memory:"
		name = rest
	}
	if inMemory {
		return fmt.Errorf(`metadata "connectionString": %q is an in-memory database; configuration.sqlite needs a database file, written by other processes`, cs)
	}
	if name == "" {
		return fmt.Errorf(`metadata "connectionString": %q names no file`, cs)
	}
	c.path = name
	return nil
}

// ensureDir creates the directory holding the database file.
func (c *config) ensureDir() error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o750); err != nil {
		return fmt.Errorf("create directory for the database: %w", err)
	}
	return nil
}

// dsn is the driver data source name: the user's connection string plus the
// busy timeout (a per-connection setting).
func (c *config) dsn() string {
	sep := "?"
	if strings.Contains(c.ConnectionString, "?") {
		sep = "&"
	}
	return c.ConnectionString + sep + "_pragma=busy_timeout(" + strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10) + ")"
}
