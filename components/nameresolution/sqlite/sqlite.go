// Package sqlite is nameresolution.sqlite, Mecha's self-hosted default name
// resolver: a registry table in a SQLite file that every sidecar of the host
// opens (~/.mecha/nameresolution.db unless configured). Each sidecar writes
// its own row (app id, namespace, internal gRPC address, ports, pids,
// command) and refreshes it every updateInterval from a goroutine the
// resolver owns; Resolve reads the rows of an app whose heartbeat is younger
// than ttl. Rows older than ttl belong to sidecars that died without
// deregistering; the heartbeat purges them. Close deletes the own row.
//
// Unlike mDNS it needs no multicast (which VPNs and cloud networks drop), and
// it lists what runs on the host for `mecha list` (it implements Lister).
// Several processes share the file: it runs in WAL mode and waits up to
// busyTimeout for another writer.
//
// Metadata (spec.nameResolution.configuration, case-insensitive):
//
//	connectionString  the registry file ("/home/me/.mecha/nameresolution.db" or a
//	                  "file:" URI); the runtime supplies the default
//	updateInterval    heartbeat period, default 2s
//	ttl               age after which an entry is ignored and purged, default 3 × updateInterval
//	busyTimeout       how long to wait for another process's write lock, default 5s
//	timeout           per database operation, default 5s
//	tableName         default "instances"
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
)

// Resolver is the SQLite registry.
type Resolver struct {
	log *slog.Logger
	now func() time.Time

	cfg config
	db  *sql.DB

	stResolve *sql.Stmt
	stUpsert  *sql.Stmt

	// hbMu orders heartbeats and Deregister, so that a heartbeat never
	// re-creates a withdrawn entry.
	hbMu    sync.Mutex
	mu      sync.Mutex
	self    *nameresolution.Instance // nil until Register, and after Deregister
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
	started bool // the heartbeat goroutine runs
}

var (
	_ nameresolution.Resolver     = (*Resolver)(nil)
	_ nameresolution.Lister       = (*Resolver)(nil)
	_ nameresolution.Deregisterer = (*Resolver)(nil)
)

// New returns an uninitialised resolver.
func New(d components.Deps) nameresolution.Resolver {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{log: log, now: time.Now, stop: make(chan struct{})}
}

// Init opens (creating if needed) the registry file and its table.
func (r *Resolver) Init(ctx context.Context, md components.Metadata) (err error) {
	if r.cfg, err = parseConfig(md); err != nil {
		return err
	}
	if err := r.cfg.ensureDir(); err != nil {
		return err
	}
	if r.db, err = sql.Open("sqlite", r.cfg.dsn()); err != nil {
		return fmt.Errorf("open registry %s: %w", r.cfg.path, err)
	}
	// A few connections: WAL lets reads run beside the one writer.
	r.db.SetMaxOpenConns(4)
	r.db.SetMaxIdleConns(4)
	r.db.SetConnMaxIdleTime(5 * time.Minute)
	defer func() {
		if err != nil {
			r.db.Close()
			r.db = nil
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	// Sidecars started together race to create the file and switch it to
	// WAL; the switch answers SQLITE_BUSY without waiting, so retry.
	if err := retryBusy(ctx, func() error { return r.setup(ctx) }); err != nil {
		return err
	}
	t := `"` + r.cfg.TableName + `"`
	if r.stResolve, err = r.db.PrepareContext(ctx, `SELECT address FROM `+t+` WHERE namespace = ? AND app_id = ? AND heartbeat_at >= ? ORDER BY instance_id`); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if r.stUpsert, err = r.db.PrepareContext(ctx, `INSERT INTO `+t+` (instance_id, app_id, namespace, address, http_port, grpc_port, internal_port, app_port, app_protocol, pid, app_pid, command, started_at, heartbeat_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (instance_id) DO UPDATE SET app_id = excluded.app_id, namespace = excluded.namespace, address = excluded.address,
  http_port = excluded.http_port, grpc_port = excluded.grpc_port, internal_port = excluded.internal_port, app_port = excluded.app_port,
  app_protocol = excluded.app_protocol, pid = excluded.pid, app_pid = excluded.app_pid, command = excluded.command,
  started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	r.log.Debug("name resolution registry ready", "path", r.cfg.path, "updateInterval", r.cfg.UpdateInterval, "ttl", r.cfg.TTL)
	return nil
}

func (r *Resolver) setup(ctx context.Context) error {
	var mode string
	if err := r.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("open registry %s: %w", r.cfg.path, err)
	}
	if mode != "wal" {
		if err := r.db.QueryRowContext(ctx, "PRAGMA journal_mode = wal").Scan(&mode); err != nil {
			return fmt.Errorf("open registry %s: set WAL: %w", r.cfg.path, err)
		}
	}
	t := `"` + r.cfg.TableName + `"`
	if _, err := r.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t+` (
	instance_id   TEXT    NOT NULL PRIMARY KEY,
	app_id        TEXT    NOT NULL,
	namespace     TEXT    NOT NULL,
	address       TEXT    NOT NULL,
	http_port     INTEGER NOT NULL DEFAULT 0,
	grpc_port     INTEGER NOT NULL DEFAULT 0,
	internal_port INTEGER NOT NULL DEFAULT 0,
	app_port      INTEGER NOT NULL DEFAULT 0,
	app_protocol  TEXT    NOT NULL DEFAULT '',
	pid           INTEGER NOT NULL DEFAULT 0,
	app_pid       INTEGER NOT NULL DEFAULT 0,
	command       TEXT    NOT NULL DEFAULT '',
	started_at    INTEGER NOT NULL,
	heartbeat_at  INTEGER NOT NULL
)`); err != nil {
		return fmt.Errorf("create table %s: %w", t, err)
	}
	if _, err := r.db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS "`+r.cfg.TableName+`_by_app" ON `+t+` (namespace, app_id, heartbeat_at)`); err != nil {
		return fmt.Errorf("create index on %s: %w", t, err)
	}
	return nil
}

func retryBusy(ctx context.Context, f func() error) error {
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

// Register writes the own entry and starts the heartbeat. Called again, it
// replaces the entry.
func (r *Resolver) Register(ctx context.Context, self nameresolution.Instance) error {
	if self.InstanceID == "" || self.AppID == "" || self.Address == "" {
		return errors.New("nameresolution.sqlite: Register needs an instance id, an app id and an address")
	}
	if self.StartedAt.IsZero() {
		self.StartedAt = r.now()
	}
	r.mu.Lock()
	if r.closed || r.db == nil {
		r.mu.Unlock()
		return errors.New("nameresolution.sqlite: not initialised or closed")
	}
	r.self = &self
	start := !r.started
	r.started = true
	r.mu.Unlock()

	if err := r.heartbeat(ctx); err != nil {
		return err
	}
	if start {
		r.wg.Go(r.loop)
	}
	return nil
}

// loop refreshes the own entry and purges dead ones until Close.
func (r *Resolver) loop() {
	t := time.NewTicker(r.cfg.UpdateInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
		if err := r.heartbeat(ctx); err != nil {
			r.log.Warn("name resolution heartbeat failed; other sidecars may stop finding this one", "error", err, "registry", r.cfg.path)
		}
		cancel()
	}
}

// heartbeat upserts the own entry (re-creating it if another sidecar purged
// it while this process was paused) and deletes expired entries.
func (r *Resolver) heartbeat(ctx context.Context) error {
	r.hbMu.Lock()
	defer r.hbMu.Unlock()
	r.mu.Lock()
	self := r.self
	r.mu.Unlock()
	if self == nil {
		return nil
	}
	now := r.now()
	if _, err := r.stUpsert.ExecContext(ctx, self.InstanceID, self.AppID, self.Namespace, self.Address,
		self.HTTPPort, self.GRPCPort, self.InternalPort, self.AppPort, self.AppProtocol,
		self.PID, self.AppPID, self.Command, self.StartedAt.UnixMilli(), now.UnixMilli()); err != nil {
		return fmt.Errorf("nameresolution.sqlite: register %s in %s: %w", self.AppID, r.cfg.path, err)
	}
	if _, err := r.db.ExecContext(ctx, `DELETE FROM "`+r.cfg.TableName+`" WHERE heartbeat_at < ?`, r.cutoff(now)); err != nil {
		return fmt.Errorf("nameresolution.sqlite: purge expired entries: %w", err)
	}
	return nil
}

func (r *Resolver) cutoff(now time.Time) int64 { return now.Add(-r.cfg.TTL).UnixMilli() }

// Resolve returns the addresses of the app's live sidecars, ordered by
// instance id.
func (r *Resolver) Resolve(ctx context.Context, req nameresolution.ResolveRequest) ([]string, error) {
	if r.stResolve == nil {
		return nil, errors.New("nameresolution.sqlite: not initialised")
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	rows, err := r.stResolve.QueryContext(ctx, req.Namespace, req.ID, r.cutoff(r.now()))
	if err != nil {
		return nil, fmt.Errorf("nameresolution.sqlite: resolve %s: %w", req.ID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("nameresolution.sqlite: resolve %s: %w", req.ID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("nameresolution.sqlite: resolve %s: %w", req.ID, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no sidecar with app id %q in namespace %q is registered in %s (is it running on this host?)", nameresolution.ErrNotFound, req.ID, req.Namespace, r.cfg.path)
	}
	return out, nil
}

// List returns every live entry, oldest first.
func (r *Resolver) List(ctx context.Context) ([]nameresolution.Instance, error) {
	if r.db == nil {
		return nil, errors.New("nameresolution.sqlite: not initialised")
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	rows, err := r.db.QueryContext(ctx, `SELECT instance_id, app_id, namespace, address, http_port, grpc_port, internal_port, app_port, app_protocol, pid, app_pid, command, started_at, heartbeat_at
FROM "`+r.cfg.TableName+`" WHERE heartbeat_at >= ? ORDER BY started_at, instance_id`, r.cutoff(r.now()))
	if err != nil {
		return nil, fmt.Errorf("nameresolution.sqlite: list: %w", err)
	}
	defer rows.Close()
	var out []nameresolution.Instance
	for rows.Next() {
		var in nameresolution.Instance
		var started, seen int64
		if err := rows.Scan(&in.InstanceID, &in.AppID, &in.Namespace, &in.Address, &in.HTTPPort, &in.GRPCPort, &in.InternalPort,
			&in.AppPort, &in.AppProtocol, &in.PID, &in.AppPID, &in.Command, &started, &seen); err != nil {
			return nil, fmt.Errorf("nameresolution.sqlite: list: %w", err)
		}
		in.StartedAt, in.LastSeen = time.UnixMilli(started), time.UnixMilli(seen)
		out = append(out, in)
	}
	return out, rows.Err()
}

// Deregister deletes the own entry and stops refreshing it; Resolve keeps
// working until Close.
func (r *Resolver) Deregister(ctx context.Context) error {
	r.hbMu.Lock()
	defer r.hbMu.Unlock()
	r.mu.Lock()
	self := r.self
	r.self = nil
	closed := r.closed
	r.mu.Unlock()
	if self == nil || closed {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if _, err := r.db.ExecContext(ctx, `DELETE FROM "`+r.cfg.TableName+`" WHERE instance_id = ?`, self.InstanceID); err != nil {
		return fmt.Errorf("nameresolution.sqlite: deregister: %w", err)
	}
	return nil
}

// Close stops the heartbeat, deletes the own entry and closes the file.
func (r *Resolver) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	self := r.self
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
	if r.db == nil {
		return nil
	}
	var errs []error
	if self != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
		if _, err := r.db.ExecContext(ctx, `DELETE FROM "`+r.cfg.TableName+`" WHERE instance_id = ?`, self.InstanceID); err != nil {
			errs = append(errs, fmt.Errorf("nameresolution.sqlite: deregister: %w", err))
		}
		cancel()
	}
	r.closeStmts()
	errs = append(errs, r.db.Close())
	return errors.Join(errs...)
}

// abandon stops the heartbeat and closes the file without deleting the own
// entry, as a crashed process would (tests).
func (r *Resolver) abandon() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
	if r.db != nil {
		r.closeStmts()
		r.db.Close()
	}
}

func (r *Resolver) closeStmts() {
	for _, st := range []*sql.Stmt{r.stResolve, r.stUpsert} {
		if st != nil {
			st.Close()
		}
	}
}
