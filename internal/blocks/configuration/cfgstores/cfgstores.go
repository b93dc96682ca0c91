// Package cfgstores lists the built-in configuration stores for sidecar
// tests (internal/api/httpapi, internal/api/grpcapi): each case renders a
// Component and returns a Writer that changes items straight in the backend,
// the way an operator would, since the configuration API itself is
// read-only. SQLite always runs; Redis and PostgreSQL run when REDIS_ADDR /
// PG_DSN are set (mechatest.ServiceEnv semantics).
package cfgstores

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/mecha-dev/mecha/components/configuration/configurationtest"
	"github.com/mecha-dev/mecha/internal/mechatest"
)

// Writer changes items in a store's backend.
type Writer = configurationtest.Writer

// Case is one configuration store to run a scenario against.
type Case struct {
	Name string
	// Setup returns the Component YAML of a store named name and a writer
	// for its backend; cleanups are registered on t.
	Setup func(t testing.TB, name string) (string, Writer)
}

// Cases returns SQLite, Redis and PostgreSQL.
func Cases() []Case {
	return []Case{
		{"sqlite", SQLite},
		{"redis", Redis},
		{"postgresql", PostgreSQL},
	}
}

// SQLite is a configuration.sqlite store in a fresh file, polled every 20ms.
func SQLite(t testing.TB, name string) (string, Writer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.db")
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return mechatest.Component(name, "configuration.sqlite", "connectionString", path, "pollInterval", "20ms"), &sqliteWriter{db: db}
}

type sqliteWriter struct{ db *sql.DB }

func (w *sqliteWriter) Set(ctx context.Context, key, value string) error {
	_, err := w.db.ExecContext(ctx, `INSERT INTO configuration(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func (w *sqliteWriter) Delete(ctx context.Context, key string) error {
	_, err := w.db.ExecContext(ctx, `DELETE FROM configuration WHERE key = ?`, key)
	return err
}

// Redis is a configuration.redis store on REDIS_ADDR; the writer stores
// Dapr's "value||version" with increasing versions and deletes its keys at
// the end.
func Redis(t testing.TB, name string) (string, Writer) {
	t.Helper()
	addr := mechatest.ServiceEnv(t, "REDIS_ADDR")
	w := &redisWriter{c: goredis.NewClient(&goredis.Options{Addr: addr}), keys: map[string]bool{}}
	w.version.Store(time.Now().UnixNano())
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for k := range w.keys {
			w.c.Del(context.Background(), k)
		}
		w.c.Close()
	})
	return mechatest.Component(name, "configuration.redis", "redisHost", addr), w
}

type redisWriter struct {
	c       *goredis.Client
	version atomic.Int64
	mu      sync.Mutex
	keys    map[string]bool
}

func (w *redisWriter) Set(ctx context.Context, key, value string) error {
	w.mu.Lock()
	w.keys[key] = true
	w.mu.Unlock()
	return w.c.Set(ctx, key, value+"||"+strconv.FormatInt(w.version.Add(1), 10), 0).Err()
}

func (w *redisWriter) Delete(ctx context.Context, key string) error {
	return w.c.Del(ctx, key).Err()
}

// PostgreSQL is a configuration.postgresql store on PG_DSN with a fresh
// table (created by the component, with its triggers), dropped at the end.
func PostgreSQL(t testing.TB, name string) (string, Writer) {
	t.Helper()
	dsn := mechatest.ServiceEnv(t, "PG_DSN")
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("mecha_cfgapi_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		pool.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
		pool.Exec(ctx, "DROP SEQUENCE IF EXISTS "+pgx.Identifier{table + "_version_seq"}.Sanitize())
		pool.Close()
	})
	return mechatest.Component(name, "configuration.postgresql", "connectionString", dsn, "table", table), &pgWriter{pool: pool, table: pgx.Identifier{table}.Sanitize()}
}

type pgWriter struct {
	pool  *pgxpool.Pool
	table string
}

func (w *pgWriter) Set(ctx context.Context, key, value string) error {
	_, err := w.pool.Exec(ctx, "INSERT INTO "+w.table+"(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	return err
}

func (w *pgWriter) Delete(ctx context.Context, key string) error {
	_, err := w.pool.Exec(ctx, "DELETE FROM "+w.table+" WHERE key = $1", key)
	return err
}
