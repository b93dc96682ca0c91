// Package postgres is the lock.postgresql component: distributed locks as
// rows of one PostgreSQL table, for deployments that already run PostgreSQL
// and want locks shared by sidecars on many hosts.
//
// Each lock is one row (resource PRIMARY KEY, owner, expires_at). All times
// are the server's, so the sidecars' clocks do not matter. TryLock is one
// conditional upsert: it inserts the row, or takes over an existing row only
// when that row has expired; the primary key and the row lock make racing
// callers on any host see exactly one winner. Unlock is one statement that
// locks the live row, deletes it when the caller owns it, and returns Dapr's
// unlock status. Expired rows are ignored by every check and deleted every
// cleanupInterval.
//
// Nothing is retried: a lock or unlock whose reply was lost cannot safely be
// replayed. Connections come from a pgxpool pool, so a backend restart only
// fails the calls made during the outage.
//
// Metadata (case-insensitive): connectionString (required), tableName
// (default "locks"), timeout (default 20s), cleanupInterval (default 1h).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/lock"
)

// Store is the PostgreSQL lock store.
type Store struct {
	log  *slog.Logger
	cfg  config
	pool *pgxpool.Pool
	q    queries

	stopCleanup context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
}

var _ lock.Store = (*Store)(nil)

// New returns an uninitialised store. It does no I/O.
func New(deps components.Deps) lock.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log}
}

// queries are built once in Init; only the validated, quoted table name is
// spliced into SQL.
type queries struct {
	createTable, createIndex, probe string
	tryLock, unlock, deleteExpired  string
}

func newQueries(table pgx.Identifier) queries {
	t := table.Sanitize()
	index := pgx.Identifier{table[len(table)-1] + "_expires_at_idx"}.Sanitize()
	return queries{
		createTable: fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  resource text NOT NULL PRIMARY KEY,
  owner text NOT NULL,
  expires_at timestamp with time zone NOT NULL
)`, t),
		createIndex: fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (expires_at)`, index, t),
		probe:       fmt.Sprintf(`SELECT resource, owner, expires_at FROM %s LIMIT 0`, t),
		// $3 is the expiry in milliseconds.
		tryLock: fmt.Sprintf(`INSERT INTO %s AS l (resource, owner, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (resource) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= now()`, t),
		// cur locks the live row (if any); del removes it for its owner.
		// The result is Dapr's status: 0 success, 1 no such lock, 2 held by
		// someone else.
		unlock: fmt.Sprintf(`WITH cur AS (
  SELECT owner FROM %[1]s WHERE resource = $1 AND expires_at > now() FOR UPDATE
), del AS (
  DELETE FROM %[1]s WHERE resource = $1 AND owner = $2 AND EXISTS (SELECT 1 FROM cur WHERE cur.owner = $2)
  RETURNING 1
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM del) THEN 0
            WHEN EXISTS (SELECT 1 FROM cur) THEN 2
            ELSE 1 END`, t),
		deleteExpired: fmt.Sprintf(`DELETE FROM %s WHERE expires_at <= now()`, t),
	}
}

// Init validates the metadata, connects, creates the table when missing and
// starts the expired-row cleanup. ctx and the timeout bound it; on error
// nothing is left running.
func (s *Store) Init(ctx context.Context, md components.Metadata) (err error) {
	if s.cfg, err = parseConfig(md); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.q = newQueries(s.cfg.Table)
	pool, err := s.cfg.Connect(ctx, func(ctx context.Context, pool *pgxpool.Pool) error {
		if err := s.ensureTable(ctx, pool); err != nil {
			return fmt.Errorf("table %s: %w", s.cfg.Table.Sanitize(), err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.pool = pool
	if s.cfg.CleanupInterval > 0 {
		cctx, stop := context.WithCancel(context.Background())
		s.stopCleanup = stop
		s.wg.Go(func() { s.cleanupLoop(cctx, s.cfg.CleanupInterval) })
	}
	s.log.Info("postgres lock store ready", "table", s.cfg.Table.Sanitize())
	return nil
}

// ensureTable creates the table and index, and refuses a table of that name
// with other columns. Sidecars starting together may race on CREATE ... IF
// NOT EXISTS, which can still fail with a unique violation in the catalog;
// each statement is retried once.
func (s *Store) ensureTable(ctx context.Context, pool *pgxpool.Pool) error {
	create := func(sql string) error {
		_, err := pool.Exec(ctx, sql)
		if err != nil {
			_, err = pool.Exec(ctx, sql)
		}
		return err
	}
	if err := create(s.q.createTable); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, s.q.probe); err != nil {
		return fmt.Errorf("exists with a schema this component does not know (was it made by another program?): %w", err)
	}
	return create(s.q.createIndex)
}

func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// TryLock inserts the lock row, or takes over an expired one.
func (s *Store) TryLock(ctx context.Context, req lock.TryLockRequest) (bool, error) {
	if req.Expiry <= 0 {
		return false, fmt.Errorf("postgres: lock expiry must be positive, got %v", req.Expiry)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, s.q.tryLock, req.ResourceID, req.LockOwner, max(req.Expiry.Milliseconds(), 1))
	if err != nil {
		return false, fmt.Errorf("postgres lock: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Unlock deletes the row if req.LockOwner holds it.
func (s *Store) Unlock(ctx context.Context, req lock.UnlockRequest) (lock.UnlockStatus, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var st int32
	if err := s.pool.QueryRow(ctx, s.q.unlock, req.ResourceID, req.LockOwner).Scan(&st); err != nil {
		return lock.InternalError, fmt.Errorf("postgres unlock: %w", err)
	}
	return lock.UnlockStatus(st), nil
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
		octx, cancel := s.opCtx(ctx)
		tag, err := s.pool.Exec(octx, s.q.deleteExpired)
		cancel()
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.log.Warn("postgres lock cleanup failed", "error", err)
		case err == nil && tag.RowsAffected() > 0:
			s.log.Debug("postgres lock cleanup", "deleted", tag.RowsAffected())
		}
	}
}

// Close stops the cleanup and closes the pool. It is idempotent and safe
// after a failed Init.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopCleanup != nil {
			s.stopCleanup()
			s.wg.Wait()
		}
		if s.pool != nil {
			s.pool.Close()
		}
	})
	return nil
}
