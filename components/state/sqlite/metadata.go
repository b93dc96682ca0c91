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

// Defaults, named as in Dapr's state.sqlite documentation.
const (
	defaultTableName       = "state"
	defaultTimeout         = 20 * time.Second
	defaultCleanupInterval = time.Hour
	defaultBusyTimeout     = 2 * time.Second
)

// config is the decoded component metadata. Dapr's actorStateStore and
// keyPrefix are handled by the runtime, and metadataTableName has no use
// here (this component keeps no metadata table); all three are accepted and
// ignored.
type config struct {
	// ConnectionString is a file path ("data.db", "/var/lib/mecha/state.db"),
	// a SQLite "file:" URI, or ":memory:". Required.
	ConnectionString string
	// TableName is the table holding the state; created when missing.
	TableName string
	// Timeout bounds every operation (default 20s): transactions, bulk reads
	// and the sweep as a whole; single-key reads and writes in their wait
	// for a connection, after which their one statement is bounded by
	// BusyTimeout (see gate in sqlite.go).
	Timeout time.Duration
	// CleanupInterval is how often expired rows are deleted (default 1h);
	// zero or negative disables the sweep. Reads never return expired rows.
	CleanupInterval time.Duration
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection or process before failing with SQLITE_BUSY (default 2s).
	BusyTimeout time.Duration
	// DisableWAL uses the rollback journal instead of WAL, for file systems
	// without shared memory support (network mounts).
	DisableWAL bool

	// inMemory is true for ":memory:" databases (one connection, no file).
	inMemory bool
	// path is the database file path, empty for in-memory databases.
	path string
	// userSync is true when the connection string sets synchronous itself.
	userSync bool
}

func parseConfig(md components.Metadata) (config, error) {
	c := config{
		ConnectionString: strings.TrimSpace(md.String("connectionString", "")),
		TableName:        md.String("tableName", defaultTableName),
	}
	var errs []error
	if c.ConnectionString == "" {
		errs = append(errs, errors.New(`metadata "connectionString" is required (a file path such as "data.db", a "file:" URI, or ":memory:")`))
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
	if c.CleanupInterval, err = duration(md, defaultCleanupInterval, "cleanupInterval", "cleanupIntervalInSeconds"); err != nil {
		errs = append(errs, err)
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

// validTableName reports whether name is a plain SQL identifier (so it can
// be quoted into statements safely) and not one SQLite reserves.
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

// duration reads the first of names that is set; bare integers are seconds,
// as in Dapr.
func duration(md components.Metadata, def time.Duration, names ...string) (time.Duration, error) {
	for _, n := range names {
		if v, ok := md.Get(n); ok && strings.TrimSpace(v) != "" {
			return md.Duration(n, time.Second, def)
		}
	}
	return def, nil
}

// parseConnectionString works out whether the database is in memory and, if
// not, which file it lives in. It rejects DSN options that would fight the
// settings this component manages.
func (c *config) parseConnectionString() error {
	cs := c.ConnectionString
	name, query, _ := strings.Cut(cs, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf(`metadata "connectionString": bad query %q: %w`, query, err)
	}
	c.userSync = q.Has("_synchronous") || q.Has("_sync")
	for _, p := range q["_pragma"] {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case strings.HasPrefix(p, "synchronous"):
			c.userSync = true
		case strings.HasPrefix(p, "busy_timeout"):
			return errors.New(`metadata "connectionString": set the busy timeout with the "busyTimeout" property, not _pragma=busy_timeout`)
		case strings.HasPrefix(p, "journal_mode"):
			return errors.New(`metadata "connectionString": choose the journal with the "disableWAL" property, not _pragma=journal_mode`)
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
	dir := filepath.Dir(c.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create directory for the database: %w", err)
	}
	return nil
}

// dsn returns the driver data source name for one of the two pools. Every
// connection gets the busy timeout and synchronous=NORMAL (both are
// per-connection settings); the writer begins transactions with BEGIN
// IMMEDIATE so that it takes the write lock up front and waits for it under
// the busy timeout, instead of failing to upgrade a read lock (SQLITE_BUSY
// without retry) when another process writes concurrently. The journal mode
// is persistent and set once in Init.
func (c *config) dsn(writer bool) string {
	var b strings.Builder
	b.WriteString(c.ConnectionString)
	sep := "?"
	if strings.Contains(c.ConnectionString, "?") {
		sep = "&"
	}
	add := func(kv string) {
		b.WriteString(sep)
		b.WriteString(kv)
		sep = "&"
	}
	add("_pragma=busy_timeout(" + strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10) + ")")
	if !c.userSync {
		add("_pragma=synchronous(NORMAL)")
	}
	if writer {
		add("_txlock=immediate")
	} else {
		add("_query_only=1")
	}
	return b.String()
}
