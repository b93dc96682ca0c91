// Package postgres is the state.postgresql component: a state store backed by
// one PostgreSQL table, for deployments that already run PostgreSQL and want
// durable state with ETags, TTLs and real multi-key transactions.
//
// Each key is one row. The ETag is a random UUID replaced on every write, so
// optimistic concurrency is a single conditional statement. Rows past their
// TTL are filtered out of every read and ETag check, and a background loop
// deletes them every cleanupInterval. Transactions run in one PostgreSQL
// transaction, sent as one pipelined batch.
//
// The table layout is that of Dapr's state.postgresql v2 component
// (key text, value bytea, etag uuid, created_at, updated_at, expires_at), so
// a Mecha sidecar and a Dapr sidecar can share a table during a migration.
//
// Connections come from a pgxpool pool: a connection broken by a backend
// restart is discarded and replaced on a later call, so the store recovers
// without a restart. Calls made during the outage fail, bounded by the
// caller's context and the timeout property; nothing is retried, because a
// conditional write cannot safely be replayed.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
)

// Store is the PostgreSQL state store. Create it with New and call Init
// before anything else.
type Store struct {
	log  *slog.Logger
	cfg  config
	pool *pgxpool.Pool
	q    queries

	stopCleanup context.CancelFunc // nil when no cleanup loop runs
	cleanupDone sync.WaitGroup
	closeOnce   sync.Once
}

// Interface guards.
var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.BulkGetter    = (*Store)(nil)
	_ state.Pinger        = (*Store)(nil)
)

// New returns an uninitialised store. It does no I/O.
func New(deps components.Deps) state.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log}
}

// queries are the statements for one table, built once in Init. Only the
// validated, quoted table name is ever spliced into SQL; everything else is
// a parameter.
type queries struct {
	createTable, createIndex                string
	get, bulkGet                            string
	upsert, insertOnly, update              string
	deleteAny, deleteIfMatch, deleteExpired string
}

func newQueries(table pgx.Identifier) queries {
	t := table.Sanitize()
	index := pgx.Identifier{table[len(table)-1] + "_expires_at_idx"}.Sanitize()
	// live is true for a row that has not expired. now() is the start of the
	// transaction, so every statement of a Multi sees the same instant.
	const live = `(expires_at IS NULL OR expires_at > now())`
	// $3 is the TTL in microseconds, or NULL for no expiry (NULL propagates
	// through the arithmetic, which clears an earlier TTL).
	const expires = `now() + $3::bigint * interval '1 microsecond'`
	const upsert = `INSERT INTO %s AS t (key, value, etag, expires_at)
VALUES ($1, $2, gen_random_uuid(), ` + expires + `)
ON CONFLICT (key) DO UPDATE SET
  value = EXCLUDED.value, etag = EXCLUDED.etag,
  updated_at = now(), expires_at = EXCLUDED.expires_at`
	return queries{
		createTable: fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  key text NOT NULL PRIMARY KEY,
  value bytea NOT NULL,
  etag uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone,
  expires_at timestamp with time zone
)`, t),
		createIndex: fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (expires_at)`, index, t),
		get:         fmt.Sprintf(`SELECT value, etag::text, expires_at FROM %s WHERE key = $1 AND %s`, t, live),
		bulkGet:     fmt.Sprintf(`SELECT key, value, etag::text, expires_at FROM %s WHERE key = ANY($1) AND %s`, t, live),
		upsert:      fmt.Sprintf(upsert, t),
		// First-write may only replace a row that has expired but not yet
		// been cleaned up.
		insertOnly: fmt.Sprintf(upsert+` WHERE t.expires_at IS NOT NULL AND t.expires_at <= now()`, t),
		update: fmt.Sprintf(`UPDATE %s SET value = $2, etag = gen_random_uuid(), updated_at = now(), expires_at = %s
WHERE key = $1 AND etag = $4 AND %s`, t, expires, live),
		deleteAny:     fmt.Sprintf(`DELETE FROM %s WHERE key = $1`, t),
		deleteIfMatch: fmt.Sprintf(`DELETE FROM %s WHERE key = $1 AND etag = $2 AND %s`, t, live),
		deleteExpired: fmt.Sprintf(`DELETE FROM %s WHERE expires_at IS NOT NULL AND expires_at <= now()`, t),
	}
}

// Init validates the metadata, connects, creates the table if needed and
// starts the expired-row cleanup. ctx bounds all of it, and so does the
// timeout property. On error nothing is left running.
func (s *Store) Init(ctx context.Context, md components.Metadata) (err error) {
	s.cfg, err = parseConfig(md)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.q = newQueries(s.cfg.Table)
	pool, err := s.cfg.Connect(ctx, func(ctx context.Context, pool *pgxpool.Pool) error {
		if err := s.ensureTable(ctx, pool); err != nil {
			return fmt.Errorf("create table %s: %w", s.cfg.Table.Sanitize(), err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.pool = pool

	if s.cfg.CleanupInterval > 0 {
		loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		s.stopCleanup = stop
		s.cleanupDone.Go(func() { s.cleanupLoop(loopCtx) })
	}
	s.log.Debug("postgres state store ready", "table", s.cfg.Table.Sanitize(), "cleanupInterval", s.cfg.CleanupInterval)
	return nil
}

// ensureTable creates the table and its expiry index unless the table
// exists. Checking first lets a role without CREATE on the schema use a
// table made for it. Sidecars starting together would race on CREATE TABLE
// IF NOT EXISTS (it is not atomic in PostgreSQL), so they take turns under a
// transaction-scoped advisory lock.
func (s *Store) ensureTable(ctx context.Context, pool *pgxpool.Pool) error {
	name := s.cfg.Table.Sanitize()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil || exists {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "mecha-state-table:"+name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.createTable); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.q.createIndex)
		return err
	})
}

func (s *Store) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.deleteExpired(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				s.log.Warn("deleting expired state rows failed; will retry", "error", err)
			case n > 0:
				s.log.Debug("deleted expired state rows", "count", n)
			}
		}
	}
}

func (s *Store) deleteExpired(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, s.q.deleteExpired)
	return tag.RowsAffected(), err
}

// Features reports ETAG, TRANSACTIONAL and TTL.
func (s *Store) Features() []state.Feature {
	return []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.pool.Ping(ctx)
}

// Get reads one key; a missing or expired key gives an empty response.
func (s *Store) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	resp := &state.GetResponse{}
	err := s.pool.QueryRow(ctx, s.q.get, req.Key).Scan(&resp.Data, &resp.ETag, &resp.ExpireTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return &state.GetResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// BulkGet reads keys in one query. The result has one item per requested
// key, in request order; missing keys have nil Data.
func (s *Store) BulkGet(ctx context.Context, keys []string, _ state.GetOptions) ([]state.BulkItem, error) {
	if len(keys) == 0 {
		return []state.BulkItem{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, s.q.bulkGet, keys)
	if err != nil {
		return nil, err
	}
	found := make(map[string]state.BulkItem, len(keys))
	var it state.BulkItem
	_, err = pgx.ForEachRow(rows, []any{&it.Key, &it.Data, &it.ETag, &it.ExpireTime}, func() error {
		found[it.Key] = it
		it = state.BulkItem{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]state.BulkItem, len(keys))
	for i, k := range keys {
		out[i] = found[k]
		out[i].Key = k
	}
	return out, nil
}

// Set writes one key: a conditional update when req.ETag is set, an insert
// for first-write without an ETag, an upsert otherwise.
func (s *Store) Set(ctx context.Context, req *state.SetRequest) error {
	st, err := s.setStmt(req)
	if err != nil {
		return err
	}
	return s.exec(ctx, st)
}

// Delete removes one key, if req.ETag (when set) matches.
func (s *Store) Delete(ctx context.Context, req *state.DeleteRequest) error {
	st, err := s.deleteStmt(req)
	if err != nil {
		return err
	}
	return s.exec(ctx, st)
}

// Multi applies the operations in one PostgreSQL transaction. The statements
// are pipelined in a single batch; an ETag failure anywhere rolls all of
// them back and returns ErrETagMismatch.
func (s *Store) Multi(ctx context.Context, req *state.TransactionRequest) error {
	if len(req.Operations) == 0 {
		return nil
	}
	stmts := make([]stmt, len(req.Operations))
	for i, op := range req.Operations {
		var err error
		switch {
		case op.Set != nil:
			stmts[i], err = s.setStmt(op.Set)
		case op.Delete != nil:
			stmts[i], err = s.deleteStmt(op.Delete)
		default:
			err = errors.New("neither set nor delete")
		}
		if err != nil {
			return fmt.Errorf("operation %d: %w", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, st := range stmts {
			b.Queue(st.sql, st.args...)
		}
		res := tx.SendBatch(ctx, &b)
		defer res.Close()
		for i, st := range stmts {
			tag, err := res.Exec()
			if err == nil && st.conditional && tag.RowsAffected() == 0 {
				err = state.ErrETagMismatch
			}
			if err != nil {
				return fmt.Errorf("operation %d on key %q: %w", i, st.key, err)
			}
		}
		return res.Close()
	})
}

// stmt is one write, ready to run alone or in a transaction.
type stmt struct {
	key  string
	sql  string
	args []any
	// conditional statements fail with ErrETagMismatch when they touch no
	// row.
	conditional bool
}

func (s *Store) setStmt(req *state.SetRequest) (stmt, error) {
	var ttl *int64 // NULL: no expiry
	if req.TTL > 0 {
		us := req.TTL.Microseconds()
		ttl = &us
	}
	value := req.Value
	if value == nil {
		value = []byte{} // the column is NOT NULL
	}
	st := stmt{key: req.Key, sql: s.q.upsert, args: []any{req.Key, value, ttl}}
	switch {
	case req.ETag != nil:
		etag, err := parseETag(*req.ETag)
		if err != nil {
			return stmt{}, err
		}
		st.sql, st.args, st.conditional = s.q.update, append(st.args, etag), true
	case req.Options.Concurrency == state.FirstWrite:
		st.sql, st.conditional = s.q.insertOnly, true
	}
	return st, nil
}

func (s *Store) deleteStmt(req *state.DeleteRequest) (stmt, error) {
	if req.ETag == nil {
		return stmt{key: req.Key, sql: s.q.deleteAny, args: []any{req.Key}}, nil
	}
	etag, err := parseETag(*req.ETag)
	if err != nil {
		return stmt{}, err
	}
	return stmt{key: req.Key, sql: s.q.deleteIfMatch, args: []any{req.Key, etag}, conditional: true}, nil
}

// parseETag checks that etag is a UUID, the only form this store issues.
func parseETag(etag string) (pgtype.UUID, error) {
	var u pgtype.UUID
	if err := u.Scan(etag); err != nil {
		return u, fmt.Errorf("%w: %q is not a uuid", state.ErrETagInvalid, etag)
	}
	return u, nil
}

func (s *Store) exec(ctx context.Context, st stmt) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, st.sql, st.args...)
	if err != nil {
		return err
	}
	if st.conditional && tag.RowsAffected() == 0 {
		return state.ErrETagMismatch
	}
	return nil
}

// Close stops the cleanup loop, waits for it, and closes the pool. It is
// idempotent and safe after a failed Init.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopCleanup != nil {
			s.stopCleanup()
			s.cleanupDone.Wait()
		}
		if s.pool != nil {
			s.pool.Close()
		}
	})
	return nil
}
