// Package sqlite is the configuration.sqlite component, Mecha's embedded
// configuration store: items are rows of a table in a SQLite database file,
// written by whatever manages the configuration (the sqlite3 CLI, a deploy
// script, another program), and read and watched by the sidecar. It uses
// the pure-Go modernc.org/sqlite driver (no cgo). Dapr has no such
// component; the schema is Mecha's own:
//
//	key TEXT PRIMARY KEY, value TEXT NOT NULL, version TEXT NOT NULL DEFAULT '', metadata TEXT (a JSON object, or NULL)
//
// Versions are kept by triggers the component creates with the table: a row
// inserted with an empty version, or updated without a new version, gets
// the next number of a counter kept in <table>_versions. Writers can thus
// ignore versions (INSERT, INSERT OR REPLACE and upserts all work), or set
// their own:
//
//	sqlite3 config.db "INSERT INTO configuration(key, value) VALUES('orderTimeout', '30s')
//	  ON CONFLICT(key) DO UPDATE SET value = excluded.value"
//
// # Why subscriptions poll
//
// SQLite has no cross-process change notification: update hooks only see
// writes made through the same connection, and the writers here are other
// processes. So subscriptions poll, and make polling cheap: every
// pollInterval (default 1s) one dedicated connection reads PRAGMA
// data_version, an in-memory counter that changes exactly when another
// connection has committed to the file; that costs no I/O on the table.
// Only when it changed is the table read again and compared with the
// previous snapshot; each changed or deleted key (deleted: an item with an
// empty value) is then reported to the subscriptions that watch it, one
// event per key. A column-based scheme (MAX(version), an updated_at index)
// would miss deletions and depend on every writer's discipline;
// data_version needs neither. Nothing is polled while there are no
// subscriptions. Changes closer together than one interval may be
// coalesced: a subscriber sees the latest value, in order.
//
// Metadata: see config in metadata.go (connectionString, table,
// pollInterval, timeout, busyTimeout, disableWAL).
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/configuration/internal/watch"
	"github.com/mecha-dev/mecha/components/internal/sqliteconn"
)

const (
	maxConns = 4
	// chunk bounds the keys bound into one query, well under SQLite's limit
	// on host parameters.
	chunk = 500
)

// Store is the SQLite configuration store.
type Store struct {
	log   *slog.Logger
	cfg   config
	table string // quoted
	db    *sql.DB
	subs  *watch.Set

	// pollMu guards the poll connection and the snapshot subscriptions are
	// compared against.
	pollMu      sync.Mutex
	poll        *sql.Conn
	snapshot    map[string]*configuration.Item // nil: no baseline
	dataVersion int64

	stopPoll  context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ configuration.Store = (*Store)(nil)

// New returns an uninitialised store. It does no I/O.
func New(deps components.Deps) configuration.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log, subs: watch.NewSet(log)}
}

// Init opens the database, creates the table and its version triggers when
// missing, and starts the poller.
func (s *Store) Init(ctx context.Context, md components.Metadata) (err error) {
	if s.cfg, err = parseConfig(md); err != nil {
		return err
	}
	if err := s.cfg.EnsureDir(); err != nil {
		return err
	}
	s.table = `"` + s.cfg.Table + `"`
	if s.db, err = sqliteconn.Open(s.cfg.DSN(), maxConns); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := sqliteconn.RetryBusy(ctx, func() error { return s.setup(ctx) }); err != nil {
		return err
	}
	if s.poll, err = s.db.Conn(ctx); err != nil {
		return fmt.Errorf("open database %s: %w", s.cfg.Path, err)
	}
	pctx, stop := context.WithCancel(context.Background())
	s.stopPoll = stop
	s.wg.Go(func() { s.pollLoop(pctx) })
	s.log.Debug("sqlite configuration store ready", "path", s.cfg.Path, "table", s.cfg.Table, "pollInterval", s.cfg.PollInterval)
	return nil
}

// setup switches the file to WAL (readers then never block the writers,
// and the reverse) and creates the schema, in one immediate transaction so
// that sidecars starting together do not trip over each other.
func (s *Store) setup(ctx context.Context) error {
	if !s.cfg.DisableWAL { // else the file keeps the journal its writers chose
		if err := s.cfg.SetJournalMode(ctx, s.db, s.log); err != nil {
			return err
		}
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open database %s: %w", s.cfg.Path, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	if _, err := conn.ExecContext(ctx, s.schema()); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	// A table of that name made by something else must still have the
	// columns read here.
	if _, err := s.db.ExecContext(ctx, "SELECT key, value, version, metadata FROM "+s.table+" LIMIT 0"); err != nil {
		return fmt.Errorf("table %s exists but lacks the columns key, value, version, metadata: %w", s.table, err)
	}
	return nil
}

func (s *Store) schema() string {
	t := s.table
	name := s.cfg.Table
	seq := `"` + name + `_versions"`
	bump := `UPDATE ` + seq + ` SET n = n + 1;
	UPDATE ` + t + ` SET version = CAST((SELECT n FROM ` + seq + `) AS TEXT) WHERE key = NEW.key;`
	return `CREATE TABLE IF NOT EXISTS ` + t + ` (
	key      TEXT NOT NULL PRIMARY KEY,
	value    TEXT NOT NULL,
	version  TEXT NOT NULL DEFAULT '',
	metadata TEXT
);
CREATE TABLE IF NOT EXISTS ` + seq + ` (n INTEGER NOT NULL);
INSERT INTO ` + seq + `(n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM ` + seq + `);
CREATE TRIGGER IF NOT EXISTS "` + name + `_version_insert" AFTER INSERT ON ` + t + ` WHEN NEW.version = ''
BEGIN
	` + bump + `
END;
CREATE TRIGGER IF NOT EXISTS "` + name + `_version_update" AFTER UPDATE OF value, metadata ON ` + t + ` WHEN NEW.version = OLD.version
BEGIN
	` + bump + `
END;`
}

// querier is *sql.DB or *sql.Conn.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Get reads keys, or every item.
func (s *Store) Get(ctx context.Context, req configuration.GetRequest) (map[string]*configuration.Item, error) {
	if s.db == nil {
		return nil, errors.New("sqlite: store is not initialised")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	items := map[string]*configuration.Item{}
	if len(req.Keys) == 0 {
		return items, s.read(ctx, s.db, items, "")
	}
	for start := 0; start < len(req.Keys); start += chunk {
		batch := req.Keys[start:min(start+chunk, len(req.Keys))]
		args := make([]any, len(batch))
		for i, k := range batch {
			args[i] = k
		}
		where := " WHERE key IN (?" + strings.Repeat(",?", len(batch)-1) + ")"
		if err := s.read(ctx, s.db, items, where, args...); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// read adds the rows matching where to into.
func (s *Store) read(ctx context.Context, q querier, into map[string]*configuration.Item, where string, args ...any) error {
	rows, err := q.QueryContext(ctx, "SELECT key, value, version, metadata FROM "+s.table+where, args...)
	if err != nil {
		return fmt.Errorf("sqlite: read %s: %w", s.table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, value, version string
		var md sql.NullString
		if err := rows.Scan(&key, &value, &version, &md); err != nil {
			return fmt.Errorf("sqlite: read %s: %w", s.table, err)
		}
		into[key] = &configuration.Item{Value: value, Version: version, Metadata: s.parseMetadata(key, md.String)}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: read %s: %w", s.table, err)
	}
	return nil
}

// parseMetadata decodes the metadata column: a JSON object whose string
// values are taken as they are and other values as their JSON text.
func (s *Store) parseMetadata(key, raw string) map[string]string {
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == "null" {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil {
		s.log.Warn("ignoring configuration metadata that is not a JSON object", "key", key, "error", err)
		return nil
	}
	md := make(map[string]string, len(obj))
	for k, v := range obj {
		var str string
		if json.Unmarshal(v, &str) == nil {
			md[k] = str
		} else {
			md[k] = string(v)
		}
	}
	return md
}

// Subscribe registers a subscription; the poller reports changes made
// after it returns. The snapshot is brought up to date first (reporting
// pending changes to the existing subscriptions), so that the new one is
// compared against the table as it was when it subscribed.
func (s *Store) Subscribe(ctx context.Context, req configuration.SubscribeRequest, handler configuration.UpdateHandler) (string, error) {
	if s.db == nil {
		return "", errors.New("sqlite: store is not initialised")
	}
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.refresh(rctx); err != nil {
		return "", err
	}
	sub, err := s.subs.Add(ctx, req, handler)
	if err != nil {
		return "", err
	}
	return sub.ID, nil
}

// baseline records the current data version and rows. pollMu is held.
func (s *Store) baseline(ctx context.Context) error {
	v, err := s.readDataVersion(ctx)
	if err != nil {
		return err
	}
	snap := map[string]*configuration.Item{}
	if err := s.read(ctx, s.poll, snap, ""); err != nil {
		return err
	}
	s.dataVersion, s.snapshot = v, snap
	return nil
}

func (s *Store) readDataVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.poll.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read data_version: %w", err)
	}
	return v, nil
}

func (s *Store) pollLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.pollOnce(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("checking the configuration table for changes failed", "table", s.cfg.Table, "error", err)
			}
		}
	}
}

// pollOnce reports what changed since the last look.
func (s *Store) pollOnce(ctx context.Context) error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.subs.Len() == 0 {
		s.snapshot = nil // nobody watches: stop tracking
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.refresh(ctx)
}

// refresh takes a baseline when there is none, and otherwise reports the
// changes since the snapshot to the subscriptions. pollMu is held.
func (s *Store) refresh(ctx context.Context) error {
	if s.snapshot == nil {
		return s.baseline(ctx)
	}
	v, err := s.readDataVersion(ctx)
	if err != nil || v == s.dataVersion {
		return err
	}
	next := make(map[string]*configuration.Item, len(s.snapshot))
	if err := s.read(ctx, s.poll, next, ""); err != nil {
		return err
	}
	changed := diff(s.snapshot, next)
	s.dataVersion, s.snapshot = v, next
	if len(changed) == 0 {
		return nil
	}
	keys := make([]string, 0, len(changed))
	for k := range changed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, sub := range s.subs.All() {
		for _, k := range keys {
			if sub.Watches(k) {
				it := *changed[k]
				sub.Deliver(map[string]*configuration.Item{k: &it})
			}
		}
	}
	return nil
}

// diff returns the items that are new or different in next, and the
// deleted ones as empty items.
func diff(prev, next map[string]*configuration.Item) map[string]*configuration.Item {
	out := map[string]*configuration.Item{}
	for k, it := range next {
		if old, ok := prev[k]; !ok || !sameItem(old, it) {
			out[k] = it
		}
	}
	for k := range prev {
		if _, ok := next[k]; !ok {
			out[k] = &configuration.Item{}
		}
	}
	return out
}

func sameItem(a, b *configuration.Item) bool {
	if a.Value != b.Value || a.Version != b.Version || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if w, ok := b.Metadata[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Unsubscribe ends the subscription id.
func (s *Store) Unsubscribe(_ context.Context, id string) error {
	return s.subs.Stop(id)
}

// Close ends every subscription, stops the poller and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.subs.Close()
		if s.stopPoll != nil {
			s.stopPoll()
		}
		s.wg.Wait()
		var errs []error
		s.pollMu.Lock() // a Subscribe may still be taking its baseline
		if s.poll != nil {
			errs = append(errs, s.poll.Close())
		}
		s.pollMu.Unlock()
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
