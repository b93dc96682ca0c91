// Package sqliteconn is what the built-in SQLite components (state, lock,
// configuration) share about their database file, so that they read the
// same properties by the same rules and open the file the same way: the
// connection properties (connectionString, timeout, busyTimeout,
// disableWAL, table names), the connection string rules (in-memory
// databases, "file:" URIs, options the component manages itself), the
// driver DSN with its per-connection pragmas, the connection pools, and
// the setup of a file that other sidecars may be opening at the same time.
//
// It uses the pure-Go modernc.org/sqlite driver (no cgo), registered as
// "sqlite".
package sqliteconn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mecha-dev/mecha/components/internal/props"
)

// Unit is the unit of a duration given as a bare number ("5" is 5s), as in
// Dapr's SQLite components.
const Unit = time.Second

// DefaultTimeout is the default of the timeout property.
const DefaultTimeout = 20 * time.Second

// Parameters a component may pass to DSN.
const (
	// SyncNormal sets synchronous=NORMAL on every connection: safe with WAL,
	// and much faster than FULL. It is left out when the connection string
	// chooses synchronous itself.
	SyncNormal = "_pragma=synchronous(NORMAL)"
	// TxImmediate begins transactions with BEGIN IMMEDIATE, so that they
	// take the write lock up front (waiting for it under the busy timeout)
	// instead of failing to upgrade a read lock (SQLITE_BUSY without retry)
	// when another process writes concurrently. Components that pass it set
	// Options.TxLock.
	TxImmediate = "_txlock=immediate"
	// QueryOnly makes a connection read-only.
	QueryOnly = "_query_only=1"
)

// Options are what a component decides about the common properties.
type Options struct {
	// BusyTimeout is the default of busyTimeout.
	BusyTimeout time.Duration
	// Example completes the error for a missing connectionString: what the
	// component accepts, such as `a file path such as "data.db", a "file:"
	// URI, or ":memory:"`.
	Example string
	// TxLock is set when the component passes TxImmediate to DSN, so that
	// the connection string may not set _txlock.
	TxLock bool
}

// Settings are the decoded connection properties, named as in Dapr
// (case-insensitive).
type Settings struct {
	// ConnectionString is connectionString: a file path ("data.db",
	// "/var/lib/mecha/state.db"), a SQLite "file:" URI, or ":memory:".
	// Required. The busy timeout and the journal mode are set with their
	// own properties, not in it.
	ConnectionString string
	// Timeout is timeout (alias timeoutInSeconds), default 20s: the bound
	// of the component's operations and of its setup in Init.
	Timeout time.Duration
	// BusyTimeout is busyTimeout: how long a connection waits for a lock
	// held by another connection or process before failing with
	// SQLITE_BUSY (default: the component's).
	BusyTimeout time.Duration
	// DisableWAL is disableWAL: use the rollback journal instead of WAL,
	// for file systems without shared memory support (network mounts).
	DisableWAL bool

	// InMemory is true for in-memory databases (":memory:", or a "file:"
	// URI with mode=memory): every connection to one is a separate
	// database, and nothing is written to a file.
	InMemory bool
	// Path is the database file, "" in memory.
	Path string
	// userSync is true when the connection string sets synchronous itself.
	userSync bool
}

// Parse reads the connection properties with r, which must read durations
// in Unit, and records every invalid one in r.
func Parse(r *props.Reader, opts Options) Settings {
	s := Settings{
		ConnectionString: strings.TrimSpace(r.String("connectionString")),
		Timeout:          r.Duration(DefaultTimeout, "timeout", "timeoutInSeconds"),
		BusyTimeout:      r.Duration(opts.BusyTimeout, "busyTimeout"),
		DisableWAL:       r.Bool("disableWAL"),
	}
	if s.ConnectionString == "" {
		r.Add(fmt.Errorf(`metadata "connectionString" is required (%s)`, opts.Example))
	}
	if s.Timeout <= 0 {
		r.Fail(r.Name("timeout", "timeoutInSeconds"), fmt.Sprintf("%v must be positive", s.Timeout))
	}
	if s.BusyTimeout < 0 {
		r.Fail("busyTimeout", fmt.Sprintf("%v must not be negative", s.BusyTimeout))
	}
	if s.ConnectionString != "" {
		if err := s.parseConnectionString(opts.TxLock); err != nil {
			r.Add(err)
		}
	}
	return s
}

// Table reads a table name from the first of names that is set, or returns
// def. The name must be a plain identifier, so that it can be quoted into
// statements safely, and not one SQLite reserves.
func Table(r *props.Reader, def string, names ...string) string {
	name := strings.TrimSpace(r.String(names...))
	if name == "" {
		return def
	}
	if !validTable(name) {
		r.Fail(r.Name(names...), fmt.Sprintf(`%q is not a valid table name (letters, digits and underscores, not starting with a digit or "sqlite_")`, name))
	}
	return name
}

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

// managedOptions are the driver's DSN options for what the components set
// with their own properties (busyTimeout, disableWAL).
var managedOptions = []string{"_busy_timeout", "_timeout", "_journal_mode", "_journal"}

// parseConnectionString works out whether the database is in memory and, if
// not, which file it lives in. It rejects DSN options that would fight the
// settings the component manages.
func (s *Settings) parseConnectionString(txLock bool) error {
	cs := s.ConnectionString
	name, query, _ := strings.Cut(cs, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf(`metadata "connectionString": bad query %q: %w`, query, err)
	}
	s.userSync = q.Has("_synchronous") || q.Has("_sync")
	for _, p := range q["_pragma"] {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case strings.HasPrefix(p, "synchronous"):
			s.userSync = true
		case strings.HasPrefix(p, "busy_timeout"):
			return errors.New(`metadata "connectionString": set the busy timeout with the "busyTimeout" property, not _pragma=busy_timeout`)
		case strings.HasPrefix(p, "journal_mode"):
			return errors.New(`metadata "connectionString": choose the journal with the "disableWAL" property, not _pragma=journal_mode`)
		}
	}
	managed := managedOptions
	if txLock {
		managed = append(managed[:len(managed):len(managed)], "_txlock")
	}
	for _, k := range managed {
		if q.Has(k) {
			return fmt.Errorf(`metadata "connectionString": option %s is managed by the component and may not be set`, k)
		}
	}

	if name == ":memory:" {
		s.InMemory = true
		return nil
	}
	if rest, ok := strings.CutPrefix(name, "file:"); ok {
		if strings.EqualFold(q.Get("mode"), "memory") || rest == ":memory:" {
			s.InMemory = true
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
	s.Path = name
	return nil
}

// EnsureDir creates the directory holding the database file.
func (s Settings) EnsureDir() error {
	if s.InMemory {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o750); err != nil {
		return fmt.Errorf("create directory for the database: %w", err)
	}
	return nil
}

// DSN returns the driver data source name: the connection string, the busy
// timeout (a per-connection setting, so it goes on every connection) and
// params, such as SyncNormal and TxImmediate. The journal mode is
// persistent and set once, by SetJournalMode.
func (s Settings) DSN(params ...string) string {
	var b strings.Builder
	b.WriteString(s.ConnectionString)
	sep := "?"
	if strings.Contains(s.ConnectionString, "?") {
		sep = "&"
	}
	add := func(kv string) {
		b.WriteString(sep)
		b.WriteString(kv)
		sep = "&"
	}
	add("_pragma=busy_timeout(" + strconv.FormatInt(s.BusyTimeout.Milliseconds(), 10) + ")")
	for _, p := range params {
		if p == SyncNormal && s.userSync {
			continue
		}
		add(p)
	}
	return b.String()
}

// Open returns a pool of at most conns connections to dsn. A pool of one
// keeps its connection forever (an in-memory database lives as long as its
// connection, and a writer gains nothing from reconnecting); larger pools
// close connections idle for five minutes.
func Open(dsn string, conns int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	if conns > 1 {
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	return db, nil
}

// SetJournalMode switches the database file to WAL, or to the rollback
// journal when DisableWAL is set, unless it is in that mode already. The
// mode is kept in the file, so this is done once, in Init. It does nothing
// for an in-memory database. When SQLite keeps another mode (a file system
// that cannot do WAL) it logs a warning and carries on.
func (s Settings) SetJournalMode(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	if s.InMemory {
		return nil
	}
	want := "wal"
	if s.DisableWAL {
		want = "delete"
	}
	var got string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&got); err != nil {
		return fmt.Errorf("open database %s: %w", s.Path, err)
	}
	if strings.EqualFold(got, want) {
		return nil
	}
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode = "+want).Scan(&got); err != nil {
		return fmt.Errorf("open database %s: set journal_mode %s: %w", s.Path, want, err)
	}
	if !strings.EqualFold(got, want) {
		log.Warn("sqlite could not switch journal mode", "want", want, "got", got, "path", s.Path)
	}
	return nil
}

// Setup readies the file for the component within ctx: it sets the
// journal mode (see SetJournalMode) and runs schema, retrying both while
// other sidecars starting together hold the file (see RetryBusy).
func (s Settings) Setup(ctx context.Context, db *sql.DB, log *slog.Logger, schema func(context.Context) error) error {
	return RetryBusy(ctx, func() error {
		if err := s.SetJournalMode(ctx, db, log); err != nil {
			return err
		}
		return schema(ctx)
	})
}

// RetryBusy calls f until it returns something other than SQLITE_BUSY or
// ctx is done. Sidecars started together race to create the file, switch it
// to WAL and create their tables; a journal mode switch reports SQLITE_BUSY
// without waiting for the busy timeout, so setup is retried.
func RetryBusy(ctx context.Context, f func() error) error {
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := f()
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait + rand.N(wait)):
		}
	}
}
