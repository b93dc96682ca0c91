// Package sqlite is the lock.sqlite component, Mecha's embedded lock store:
// locks are rows in a SQLite file, so sidecars on one host exclude each
// other with no server, across processes. It uses the pure-Go
// modernc.org/sqlite driver (no cgo).
//
// Each lock is one row (resource PRIMARY KEY, owner, expires_at in unix
// milliseconds). TryLock is a single conditional upsert: it inserts the row,
// or takes over an existing row only when that row has expired, so a live
// lock is never overwritten and the database's write lock serialises racing
// callers in any process. Unlock deletes the row only for its owner, and
// tells LockDoesNotExist from LockBelongsToOthers in the same IMMEDIATE
// transaction. Expired rows are ignored by every check and deleted every
// cleanupInterval.
//
// The file runs in WAL mode; each process waits up to busyTimeout for
// another's write lock. Each store uses one connection: SQLite has one writer
// at a time anyway, and queueing in Go is cheaper than spinning on
// SQLITE_BUSY.
//
// Metadata (case-insensitive):
//
//	connectionString  required: "locks.db", "/var/lib/mecha/locks.db", a "file:" URI, or ":memory:";
//	                  a missing directory is created
//	tableName         default "locks"
//	timeout           per operation, default 20s
//	busyTimeout       how long to wait for another process's write lock, default 5s
//	cleanupInterval   how often expired rows are deleted, default 1h; 0 disables
//	disableWAL        use the rollback journal (network file systems), default false
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/sqliteconn"
	"github.com/mecha-dev/mecha/components/lock"
)

// cleanupBatch is how many expired rows one cleanup statement deletes, so
// the sweep never holds the write lock for long.
const cleanupBatch = 1000

// Store is the SQLite lock store.
type Store struct {
	log *slog.Logger
	now func() time.Time

	cfg config
	db  *sql.DB
	q   queries

	stopCleanup context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
}

// queries are built once in Init; only the validated, quoted table name is
// spliced into SQL.
type queries struct {
	tryLock, deleteOwned, owner, deleteExpired string
}

func newQueries(table string) queries {
	t := `"` + table + `"`
	return queries{
		// Insert, or take over a row only when it has expired.
		tryLock: `INSERT INTO ` + t + ` (resource, owner, expires_at) VALUES (?, ?, ?)
ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE ` + t + `.expires_at <= ?`,
		deleteOwned:   `DELETE FROM ` + t + ` WHERE resource = ? AND owner = ? AND expires_at > ?`,
		owner:         `SELECT owner FROM ` + t + ` WHERE resource = ? AND expires_at > ?`,
		deleteExpired: `DELETE FROM ` + t + ` WHERE resource IN (SELECT resource FROM ` + t + ` WHERE expires_at <= ? LIMIT ` + strconv.Itoa(cleanupBatch) + `)`,
	}
}

var _ lock.Store = (*Store)(nil)

// New returns an uninitialised store. It does no I/O.
func New(deps components.Deps) lock.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log, now: time.Now}
}

// Init opens (creating when missing) the database and the table, and starts
// the expired-row sweeper.
func (s *Store) Init(ctx context.Context, md components.Metadata) (err error) {
	if s.cfg, err = parseConfig(md); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.cfg.EnsureDir(); err != nil {
		return err
	}
	s.q = newQueries(s.cfg.TableName)
	if s.db, err = sqliteconn.Open(s.cfg.DSN(sqliteconn.SyncNormal, sqliteconn.TxImmediate), 1); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.cfg.Setup(ctx, s.db, s.log, s.createSchema); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if s.cfg.CleanupInterval > 0 {
		cctx, stop := context.WithCancel(context.Background())
		s.stopCleanup = stop
		s.wg.Go(func() { s.cleanupLoop(cctx, s.cfg.CleanupInterval) })
	}
	s.log.Debug("sqlite lock store ready", "path", s.cfg.Path, "table", s.cfg.TableName, "inMemory", s.cfg.InMemory)
	return nil
}

func (s *Store) createSchema(ctx context.Context) error {
	t := `"` + s.cfg.TableName + `"`
	table := `CREATE TABLE IF NOT EXISTS ` + t + ` (
	resource   TEXT    NOT NULL PRIMARY KEY,
	owner      TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID`
	if _, err := s.db.ExecContext(ctx, table); err != nil {
		return fmt.Errorf("create table %s: %w", t, err)
	}
	// A table of that name made by something else is refused with a
	// message that says so.
	if _, err := s.db.ExecContext(ctx, `SELECT resource, owner, expires_at FROM `+t+` LIMIT 0`); err != nil {
		return fmt.Errorf("table %s exists with a schema this component does not know (was it made by another program?): %w", t, err)
	}
	index := `CREATE INDEX IF NOT EXISTS "` + s.cfg.TableName + `_expires_at" ON ` + t + ` (expires_at)`
	if _, err := s.db.ExecContext(ctx, index); err != nil {
		return fmt.Errorf("create index on %s: %w", t, err)
	}
	return nil
}

// conn waits for the store's connection under ctx and the timeout. The
// statements then run with ctx's cancellation stripped: each touches one
// row and can only be held up by another process's write lock, which
// busyTimeout bounds, and an interrupted statement would leave the outcome
// of a lock operation unknown.
func (s *Store) conn(ctx context.Context) (*sql.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, err := s.db.Conn(wctx)
	if err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			return nil, fmt.Errorf("sqlite lock store busy: no connection free after %v: %w", s.cfg.Timeout, err)
		}
		return nil, err
	}
	return c, nil
}

// TryLock inserts the lock row, or takes over an expired one.
func (s *Store) TryLock(ctx context.Context, req lock.TryLockRequest) (bool, error) {
	if req.Expiry <= 0 {
		return false, fmt.Errorf("sqlite: lock expiry must be positive, got %v", req.Expiry)
	}
	c, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	now := s.now()
	res, err := c.ExecContext(context.WithoutCancel(ctx), s.q.tryLock,
		req.ResourceID, req.LockOwner, now.Add(req.Expiry).UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("sqlite lock: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite lock: %w", err)
	}
	return n == 1, nil
}

// Unlock deletes the row if req.LockOwner holds it; otherwise it reads who
// does, in the same transaction.
func (s *Store) Unlock(ctx context.Context, req lock.UnlockRequest) (st lock.UnlockStatus, err error) {
	c, err := s.conn(ctx)
	if err != nil {
		return lock.InternalError, err
	}
	defer c.Close()
	ctx = context.WithoutCancel(ctx)
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return lock.InternalError, fmt.Errorf("sqlite unlock: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	now := s.now().UnixMilli()
	res, err := tx.ExecContext(ctx, s.q.deleteOwned, req.ResourceID, req.LockOwner, now)
	if err != nil {
		return lock.InternalError, fmt.Errorf("sqlite unlock: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return lock.InternalError, fmt.Errorf("sqlite unlock: %w", err)
	}
	st = lock.Success
	if n == 0 {
		var owner string
		err = tx.QueryRowContext(ctx, s.q.owner, req.ResourceID, now).Scan(&owner)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			st = lock.LockDoesNotExist
		case err != nil:
			return lock.InternalError, fmt.Errorf("sqlite unlock: %w", err)
		default:
			st = lock.LockBelongsToOthers
		}
	}
	if err = tx.Commit(); err != nil {
		return lock.InternalError, fmt.Errorf("sqlite unlock: %w", err)
	}
	return st, nil
}

func (s *Store) cleanupLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.deleteExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("sqlite lock cleanup failed", "error", err)
		case n > 0:
			s.log.Debug("sqlite lock cleanup", "deleted", n)
		}
	}
}

// deleteExpired deletes expired rows in batches and returns how many.
func (s *Store) deleteExpired(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := func() (int64, error) {
			c, err := s.conn(ctx)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			res, err := c.ExecContext(context.WithoutCancel(ctx), s.q.deleteExpired, s.now().UnixMilli())
			if err != nil {
				return 0, err
			}
			return res.RowsAffected()
		}()
		total += n
		if err != nil || n < cleanupBatch {
			return total, err
		}
	}
}

// Close stops the sweeper and closes the database. It is idempotent and safe
// after a failed Init.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopCleanup != nil {
			s.stopCleanup()
			s.wg.Wait()
		}
		if s.db != nil {
			s.closeErr = s.db.Close()
		}
	})
	return s.closeErr
}
