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
	defaultTableName       = "locks"
	defaultTimeout         = 20 * time.Second
	defaultBusyTimeout     = 5 * time.Second
	defaultCleanupInterval = time.Hour
)

// config is the decoded component metadata (Dapr-style names, matched
// case-insensitively). keyPrefix is the runtime's and is ignored here.
type config struct {
	// ConnectionString is a file path ("locks.db"), a SQLite "file:" URI or
	// ":memory:" (locks private to this store). Required.
	ConnectionString string
	// TableName is the table holding the locks; created when missing.
	TableName string
	// Timeout bounds every operation, including the wait for the store's
	// connection (default 20s).
	Timeout time.Duration
	// BusyTimeout is how long a statement waits for another process's
	// write lock on the file before failing (default 5s).
	BusyTimeout time.Duration
	// CleanupInterval is how often expired rows are deleted (default 1h;
	// zero disables). Expired rows never count as held either way.
	CleanupInterval time.Duration
	// DisableWAL keeps the rollback journal, for file systems without
	// shared memory (network mounts).
	DisableWAL bool

	inMemory bool
	path     string // the database file, "" in memory
}

func parseConfig(md components.Metadata) (config, error) {
	c := config{
		ConnectionString: strings.TrimSpace(md.String("connectionString", "")),
		TableName:        strings.TrimSpace(md.String("tableName", defaultTableName)),
	}
	var errs []error
	if c.ConnectionString == "" {
		errs = append(errs, errors.New(`metadata "connectionString" is required (a file path such as "locks.db", a "file:" URI, or ":memory:")`))
	}
	if !validTableName(c.TableName) {
		errs = append(errs, fmt.Errorf(`metadata "tableName": %q is not a valid table name (letters, digits and underscores, not starting with a digit or "sqlite_")`, c.TableName))
	}
	var err error
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
	if c.CleanupInterval, err = duration(md, defaultCleanupInterval, "cleanupInterval", "cleanupIntervalInSeconds"); err != nil {
		errs = append(errs, err)
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

// validTableName reports whether name is a plain identifier (safe to quote
// into statements) that SQLite does not reserve.
func validTableName(name string) bool {
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

// duration reads the first of names that is set; bare integers are seconds.
func duration(md components.Metadata, def time.Duration, names ...string) (time.Duration, error) {
	for _, n := range names {
		if v, ok := md.Get(n); ok && strings.TrimSpace(v) != "" {
			return md.Duration(n, time.Second, def)
		}
	}
	return def, nil
}

// parseConnectionString finds the database file (or notices an in-memory
// database) and refuses DSN options this component manages itself.
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
			return errors.New(`metadata "connectionString": set the busy timeout and journal with the "busyTimeout" and "disableWAL" properties, not _pragma`)
		}
	}
	for _, k := range []string{"_busy_timeout", "_timeout", "_journal_mode", "_journal", "_txlock"} {
		if q.Has(k) {
			return fmt.Errorf(`metadata "connectionString": option %s is managed by the component and may not be set`, k)
		}
	}
	if name == ":memory:" {
		c.inMemory = true
		return nil
	}
	if rest, ok := strings.CutPrefix(name, "file:"); ok {
		if strings.EqualFold(q.Get("mode"), "memory") || rest == ":memory:" {
			c.inMemory = true
			return nil
		}
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
		name = rest
	}
	if name == "" {
		return fmt.Errorf(`metadata "connectionString": %q names no file`, cs)
	}
	c.path = name
	return nil
}

// ensureDir creates the directory holding the database file.
func (c *config) ensureDir() error {
	if c.inMemory {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o750); err != nil {
		return fmt.Errorf("create directory for the database: %w", err)
	}
	return nil
}

// dsn is the driver data source name: every connection waits BusyTimeout
// for another process's lock, and transactions begin with BEGIN IMMEDIATE so
// that they take the write lock up front (waiting for it under the busy
// timeout) instead of failing to upgrade a read lock.
func (c *config) dsn() string {
	var b strings.Builder
	b.WriteString(c.ConnectionString)
	sep := "?"
	if strings.Contains(c.ConnectionString, "?") {
		sep = "&"
	}
	for _, kv := range []string{
		"_pragma=busy_timeout(" + strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10) + ")",
		"_pragma=synchronous(NORMAL)",
		"_txlock=immediate",
	} {
		b.WriteString(sep)
		b.WriteString(kv)
		sep = "&"
	}
	return b.String()
}
