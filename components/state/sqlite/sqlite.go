// Package sqlite is the state.sqlite component, Mecha's embedded default
// state store: a table in a SQLite database file, so a sidecar needs no
// infrastructure to keep durable state. It uses the pure-Go
// modernc.org/sqlite driver (no cgo).
//
// It supports ETags, first-write concurrency, TTLs and atomic transactions.
// The database runs in WAL mode with synchronous=NORMAL: a committed write
// survives a crash of the process, and the last few commits can be lost on
// power failure. Writes go through a single connection, transactions begin
// with BEGIN IMMEDIATE, and reads use a small pool of their own that WAL lets
// run alongside the writer. Several processes may open the same file (two
// sidecars on one host, each with the default store); they take turns on
// the file's write lock, waiting up to busyTimeout for it.
//
// The schema is this component's own, not Dapr's state.sqlite schema:
//
//	key TEXT PRIMARY KEY, value BLOB, etag INTEGER, expires_at INTEGER (unix ms), updated_at INTEGER (unix ms)
//
// ETags are random 63-bit integers, fresh on every write, so an ETag read
// before a key was deleted never matches the key once it is written again.
//
// Metadata (Dapr's names, case-insensitive):
//
//	connectionString  required: "data.db", "/var/lib/mecha/state.db", a "file:" URI, or ":memory:"
//	                  (one private in-memory database per store); a missing directory is created
//	tableName         default "state"
//	timeout           per operation, default 20s
//	cleanupInterval   how often expired rows are deleted, default 1h; 0 disables
//	busyTimeout       how long to wait for another process's lock, default 2s
//	disableWAL        use the rollback journal (network file systems), default false
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/sqliteconn"
	"github.com/mecha-dev/mecha/components/state"
)

const (
	// minReadConns and maxReadConns bound the read pool, which is sized by
	// GOMAXPROCS: WAL readers block neither the writer nor each other, and
	// the pure-Go SQLite is CPU-bound.
	minReadConns, maxReadConns = 4, 16
	// bulkChunk bounds the number of keys bound into one BulkGet query,
	// well under SQLite's limit on host parameters.
	bulkChunk = 500
	// cleanupBatch is how many expired rows one cleanup statement deletes,
	// so that the sweep never holds the write lock for long.
	cleanupBatch = 1000
)

// Store is the SQLite state store.
type Store struct {
	log *slog.Logger
	now func() time.Time

	cfg   config
	table string // quoted table name
	wdb   *sql.DB
	rdb   *sql.DB // == wdb for in-memory databases
	// wgate and rgate admit as many callers as wdb and rdb have
	// connections (they are one gate when the pools are one); see acquire.
	wgate gate
	rgate gate

	stGet        *sql.Stmt // rdb
	stUpsert     *sql.Stmt // wdb, the rest too
	stInsertOnly *sql.Stmt
	stUpdateIf   *sql.Stmt
	stDelete     *sql.Stmt
	stDeleteIf   *sql.Stmt

	stopCleanup context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
}

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
	return &Store{log: log, now: time.Now}
}

// Init opens (creating when missing) the database and the table, and starts
// the expired-row sweeper.
func (s *Store) Init(ctx context.Context, md components.Metadata) (err error) {
	if s.cfg, err = parseConfig(md); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.cfg.EnsureDir(); err != nil {
		return err
	}
	s.table = `"` + s.cfg.TableName + `"`

	// One writer connection: SQLite allows one writer at a time anyway, and
	// queueing in the pool is cheaper than spinning on SQLITE_BUSY.
	if s.wdb, err = sqliteconn.Open(s.cfg.DSN(sqliteconn.SyncNormal, sqliteconn.TxImmediate), 1); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.cfg.Setup(ctx, s.wdb, s.log, s.createSchema); err != nil {
		return err
	}

	s.wgate = make(gate, 1)
	if s.cfg.InMemory {
		// Every connection to ":memory:" is a separate database; share one.
		s.rdb, s.rgate = s.wdb, s.wgate
	} else {
		readConns := max(minReadConns, min(runtime.GOMAXPROCS(0), maxReadConns))
		s.rgate = make(gate, readConns)
		if s.rdb, err = sqliteconn.Open(s.cfg.DSN(sqliteconn.SyncNormal, sqliteconn.QueryOnly), readConns); err != nil {
			return err
		}
	}
	if err := s.prepare(ctx); err != nil {
		return err
	}

	if s.cfg.CleanupInterval > 0 {
		cctx, stop := context.WithCancel(context.Background())
		s.stopCleanup = stop
		s.wg.Add(1)
		go s.cleanupLoop(cctx, s.cfg.CleanupInterval)
	}
	s.log.Debug("sqlite state store ready", "path", s.cfg.Path, "table", s.cfg.TableName, "inMemory", s.cfg.InMemory)
	return nil
}

func (s *Store) createSchema(ctx context.Context) error {
	// A rowid table (not WITHOUT ROWID): values may be megabytes, and the
	// rowid b-tree keeps large rows out of the key index. The partial index
	// holds only rows with a TTL, so it costs nothing for the others and
	// makes the sweep a range scan.
	table := `CREATE TABLE IF NOT EXISTS ` + s.table + ` (
	key        TEXT    NOT NULL PRIMARY KEY,
	value      BLOB    NOT NULL,
	etag       INTEGER NOT NULL,
	expires_at INTEGER,
	updated_at INTEGER NOT NULL
)`
	if _, err := s.wdb.ExecContext(ctx, table); err != nil {
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	// A table of that name made by something else (Dapr's state.sqlite has
	// other columns) is refused here, with a message that says so.
	probe := `SELECT key, value, etag, expires_at, updated_at FROM ` + s.table + ` LIMIT 0`
	if _, err := s.wdb.ExecContext(ctx, probe); err != nil {
		return fmt.Errorf("table %s exists with a schema this component does not know (was it made by another program?): %w", s.table, err)
	}
	index := `CREATE INDEX IF NOT EXISTS "` + s.cfg.TableName + `_expires_at" ON ` + s.table + ` (expires_at) WHERE expires_at IS NOT NULL`
	if _, err := s.wdb.ExecContext(ctx, index); err != nil {
		return fmt.Errorf("create index on %s: %w", s.table, err)
	}
	return nil
}

func (s *Store) prepare(ctx context.Context) error {
	t := s.table
	const live = `(expires_at IS NULL OR expires_at > ?)`
	const cols = `(key, value, etag, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)`
	const upd = ` SET value = excluded.value, etag = excluded.etag, expires_at = excluded.expires_at, updated_at = excluded.updated_at`
	stmts := []struct {
		db  *sql.DB
		dst **sql.Stmt
		sql string
	}{
		{s.rdb, &s.stGet, `SELECT value, etag, expires_at FROM ` + t + ` WHERE key = ? AND ` + live},
		{s.wdb, &s.stUpsert, `INSERT INTO ` + t + cols + ` ON CONFLICT (key) DO UPDATE` + upd},
		// First-write: insert, or replace only a row that has expired.
		{s.wdb, &s.stInsertOnly, `INSERT INTO ` + t + cols + ` ON CONFLICT (key) DO UPDATE` + upd +
			` WHERE ` + t + `.expires_at IS NOT NULL AND ` + t + `.expires_at <= ?`},
		{s.wdb, &s.stUpdateIf, `UPDATE ` + t + ` SET value = ?, etag = ?, expires_at = ?, updated_at = ? WHERE key = ? AND etag = ? AND ` + live},
		{s.wdb, &s.stDelete, `DELETE FROM ` + t + ` WHERE key = ?`},
		{s.wdb, &s.stDeleteIf, `DELETE FROM ` + t + ` WHERE key = ? AND etag = ? AND ` + live},
	}
	for _, st := range stmts {
		p, err := st.db.PrepareContext(ctx, st.sql)
		if err != nil {
			return fmt.Errorf("prepare statement on %s: %w", s.table, err)
		}
		*st.dst = p
	}
	return nil
}

// Features reports ETAG, TRANSACTIONAL and TTL.
func (s *Store) Features() []state.Feature {
	return []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL}
}

// Get reads one key. Expired keys read as missing.
func (s *Store) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	if err := s.acquire(ctx, s.rgate); err != nil {
		return nil, err
	}
	defer s.rgate.leave()
	var (
		data    []byte
		etag    int64
		expires sql.NullInt64
	)
	err := s.stGet.QueryRowContext(context.WithoutCancel(ctx), req.Key, s.now().UnixMilli()).Scan(&data, &etag, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return &state.GetResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return &state.GetResponse{Data: data, ETag: strconv.FormatInt(etag, 10), ExpireTime: expireTime(expires)}, nil
}

// BulkGet reads many keys with one query (per 500 keys). Missing and expired
// keys come back with nil Data.
func (s *Store) BulkGet(ctx context.Context, keys []string, _ state.GetOptions) ([]state.BulkItem, error) {
	out := make([]state.BulkItem, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if err := s.acquire(ctx, s.rgate); err != nil {
		return nil, err
	}
	defer s.rgate.leave()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()

	// Each distinct key is asked for once; found rows are copied to every
	// position that asked for them.
	pos := make(map[string][]int, len(keys))
	uniq := make([]string, 0, len(keys))
	for i, k := range keys {
		out[i].Key = k
		if _, seen := pos[k]; !seen {
			uniq = append(uniq, k)
		}
		pos[k] = append(pos[k], i)
	}
	now := s.now().UnixMilli()
	for len(uniq) > 0 {
		chunk := uniq[:min(len(uniq), bulkChunk)]
		uniq = uniq[len(chunk):]
		if err := s.bulkGetChunk(ctx, chunk, now, func(it state.BulkItem) {
			for _, i := range pos[it.Key] {
				out[i] = it
			}
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) bulkGetChunk(ctx context.Context, keys []string, now int64, found func(state.BulkItem)) error {
	args := make([]any, 0, len(keys)+1)
	for _, k := range keys {
		args = append(args, k)
	}
	args = append(args, now)
	q := `SELECT key, value, etag, expires_at FROM ` + s.table +
		` WHERE key IN (?` + strings.Repeat(", ?", len(keys)-1) + `) AND (expires_at IS NULL OR expires_at > ?)`
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			it      state.BulkItem
			etag    int64
			expires sql.NullInt64
		)
		if err := rows.Scan(&it.Key, &it.Data, &etag, &expires); err != nil {
			return err
		}
		if it.Data == nil {
			it.Data = []byte{}
		}
		it.ETag = strconv.FormatInt(etag, 10)
		it.ExpireTime = expireTime(expires)
		found(it)
	}
	return rows.Err()
}

// Set writes one key.
func (s *Store) Set(ctx context.Context, req *state.SetRequest) error {
	if err := s.acquire(ctx, s.wgate); err != nil {
		return err
	}
	defer s.wgate.leave()
	return s.set(context.WithoutCancel(ctx), nil, req)
}

// Delete removes one key. Without an ETag, deleting a missing key succeeds.
func (s *Store) Delete(ctx context.Context, req *state.DeleteRequest) error {
	if err := s.acquire(ctx, s.wgate); err != nil {
		return err
	}
	defer s.wgate.leave()
	return s.delete(context.WithoutCancel(ctx), nil, req)
}

// Multi applies the operations in one SQLite transaction: all or none. An
// ETag mismatch in any operation rolls back the lot and returns
// state.ErrETagMismatch.
func (s *Store) Multi(ctx context.Context, req *state.TransactionRequest) (err error) {
	if len(req.Operations) == 0 {
		return nil
	}
	// Refuse malformed requests before taking the write lock.
	for i, op := range req.Operations {
		var etag *string
		switch {
		case op.Set != nil && op.Delete == nil:
			etag = op.Set.ETag
		case op.Delete != nil && op.Set == nil:
			etag = op.Delete.ETag
		default:
			return fmt.Errorf("operation %d: exactly one of Set and Delete must be given", i)
		}
		if etag != nil {
			if _, err := parseETag(*etag); err != nil {
				return err
			}
		}
	}

	if err := s.acquire(ctx, s.wgate); err != nil {
		return err
	}
	defer s.wgate.leave()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	tx, err := s.wdb.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dsn)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, op := range req.Operations {
		if op.Set != nil {
			err = s.set(ctx, tx, op.Set)
		} else {
			err = s.delete(ctx, tx, op.Delete)
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// A gate admits as many callers as its capacity. Every use of a pool goes
// through its gate, so a caller that gets in finds a free connection at once.
//
// Why: with a cancellable context, modernc.org/sqlite starts a goroutine per
// statement to interrupt it on cancellation, and database/sql one per result
// set; that doubles the cost of a point read (about 10µs to 20µs). Point
// statements (Get, Set, Delete) therefore wait for their gate under the
// caller's context and the timeout, and then run with the context's
// cancellation stripped: they touch one row, and the only thing that can hold
// them up is another process's lock, which busyTimeout bounds. Transactions,
// bulk reads and the sweep, which can run longer, stay cancellable.
type gate chan struct{}

// acquire enters g, waiting at most until ctx is done or the store's timeout
// has passed.
func (s *Store) acquire(ctx context.Context, g gate) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case g <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(s.cfg.Timeout)
	defer t.Stop()
	select {
	case g <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("sqlite state store busy: no connection free after %v: %w", s.cfg.Timeout, context.DeadlineExceeded)
	}
}

func (g gate) leave() { <-g }

// stmt returns st bound to tx, or st itself outside a transaction.
func stmt(ctx context.Context, tx *sql.Tx, st *sql.Stmt) *sql.Stmt {
	if tx == nil {
		return st
	}
	return tx.StmtContext(ctx, st)
}

func (s *Store) set(ctx context.Context, tx *sql.Tx, req *state.SetRequest) error {
	value := req.Value
	if value == nil {
		value = []byte{} // the column is NOT NULL; nil binds as NULL
	}
	now := s.now()
	nowMs := now.UnixMilli()
	var expires any // NULL: never
	if req.TTL > 0 {
		expires = now.Add(req.TTL).UnixMilli()
	}
	etag := newETag()

	var (
		res sql.Result
		err error
	)
	switch {
	case req.ETag != nil:
		want, perr := parseETag(*req.ETag)
		if perr != nil {
			return perr
		}
		res, err = stmt(ctx, tx, s.stUpdateIf).ExecContext(ctx, value, etag, expires, nowMs, req.Key, want, nowMs)
	case req.Options.Concurrency == state.FirstWrite:
		res, err = stmt(ctx, tx, s.stInsertOnly).ExecContext(ctx, req.Key, value, etag, expires, nowMs, nowMs)
	default:
		_, err = stmt(ctx, tx, s.stUpsert).ExecContext(ctx, req.Key, value, etag, expires, nowMs)
		return err
	}
	return mustChange(res, err)
}

func (s *Store) delete(ctx context.Context, tx *sql.Tx, req *state.DeleteRequest) error {
	if req.ETag == nil {
		_, err := stmt(ctx, tx, s.stDelete).ExecContext(ctx, req.Key)
		return err
	}
	want, err := parseETag(*req.ETag)
	if err != nil {
		return err
	}
	return mustChange(stmt(ctx, tx, s.stDeleteIf).ExecContext(ctx, req.Key, want, s.now().UnixMilli()))
}

// mustChange turns a conditional write that matched no row into
// state.ErrETagMismatch.
func mustChange(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return state.ErrETagMismatch
	}
	return nil
}

// newETag returns a fresh version: random, so that versions are unique across
// processes sharing the file and across delete and re-create of a key.
func newETag() int64 { return rand.Int64() }

func parseETag(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", state.ErrETagInvalid, s)
	}
	return n, nil
}

func expireTime(ms sql.NullInt64) *time.Time {
	if !ms.Valid {
		return nil
	}
	t := time.UnixMilli(ms.Int64)
	return &t
}

// Ping checks that the database file can be read.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.acquire(ctx, s.rgate); err != nil {
		return err
	}
	defer s.rgate.leave()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var n int
	return s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+s.table+` LIMIT 1)`).Scan(&n)
}

func (s *Store) cleanupLoop(ctx context.Context, interval time.Duration) {
	defer s.wg.Done()
	// Sweep once at start too: a sidecar restarted more often than the
	// interval would otherwise never sweep.
	t := time.NewTimer(0)
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
			s.log.Warn("sqlite state cleanup failed", "error", err)
		case n > 0:
			s.log.Debug("sqlite state cleanup", "deleted", n)
		}
		t.Reset(interval)
	}
}

// deleteExpired deletes expired rows in batches and returns how many.
func (s *Store) deleteExpired(ctx context.Context) (int64, error) {
	q := `DELETE FROM ` + s.table + ` WHERE key IN (SELECT key FROM ` + s.table +
		` WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ` + strconv.Itoa(cleanupBatch) + `)`
	var total int64
	for {
		n, err := func() (int64, error) {
			if err := s.acquire(ctx, s.wgate); err != nil {
				return 0, err
			}
			defer s.wgate.leave()
			ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			defer cancel()
			res, err := s.wdb.ExecContext(ctx, q, s.now().UnixMilli())
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
		var errs []error
		for _, st := range []*sql.Stmt{s.stGet, s.stUpsert, s.stInsertOnly, s.stUpdateIf, s.stDelete, s.stDeleteIf} {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
		if s.rdb != nil && s.rdb != s.wdb {
			errs = append(errs, s.rdb.Close())
		}
		if s.wdb != nil {
			errs = append(errs, s.wdb.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
