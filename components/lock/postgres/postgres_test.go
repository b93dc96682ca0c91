package postgres_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/components/lock/locktest"
	"github.com/mecha-dev/mecha/components/lock/postgres"
)

func timeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// testTable returns a fresh table name and drops the table when the test
// ends.
func testTable(tb testing.TB, dsn string) string {
	tb.Helper()
	table := strings.ToLower("locks_test_" + rand.Text()[:10])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Errorf("drop %s: %v", table, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			tb.Errorf("drop %s: %v", table, err)
		}
	})
	return table
}

func open(tb testing.TB, props map[string]string) (lock.Store, error) {
	s := postgres.New(components.Deps{Logger: slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := s.Init(timeout(tb, 30*time.Second), components.Metadata{Name: "lockstore", Type: "lock.postgresql", Properties: props}); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { s.Close() })
	return s, nil
}

func newStore(tb testing.TB, props map[string]string) lock.Store {
	tb.Helper()
	s, err := open(tb, props)
	if err != nil {
		tb.Fatalf("Init: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	dsn := locktest.ServiceEnv(t, "PG_DSN")
	locktest.Run(t, func(t *testing.T) lock.Store {
		return newStore(t, map[string]string{"connectionString": dsn, "tableName": testTable(t, dsn)})
	})
}

// TestTwoStoresOneTable: two stores (two pools, as sidecars on two hosts
// have) exclude each other, also when they race.
func TestTwoStoresOneTable(t *testing.T) {
	dsn := locktest.ServiceEnv(t, "PG_DSN")
	props := map[string]string{"connectionString": dsn, "tableName": "public." + testTable(t, dsn)}
	a, b := newStore(t, props), newStore(t, props)
	ctx := timeout(t, 30*time.Second)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: "shared", LockOwner: fmt.Sprintf("o%d", i), Expiry: time.Minute})
			if err != nil {
				t.Errorf("TryLock: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d winners across two stores, want 1", n)
	}
	// Racing unlocks of one lock: exactly one succeeds.
	if ok, _ := a.TryLock(ctx, lock.TryLockRequest{ResourceID: "r", LockOwner: "x", Expiry: time.Minute}); !ok {
		t.Fatal("TryLock(r) = false")
	}
	var okUnlocks atomic.Int32
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			st, err := s.Unlock(ctx, lock.UnlockRequest{ResourceID: "r", LockOwner: "x"})
			switch {
			case err != nil:
				t.Errorf("Unlock: %v", err)
			case st == lock.Success:
				okUnlocks.Add(1)
			case st != lock.LockDoesNotExist:
				t.Errorf("Unlock = %v, want Success or LockDoesNotExist", st)
			}
		})
	}
	wg.Wait()
	if n := okUnlocks.Load(); n != 1 {
		t.Fatalf("%d racing unlocks succeeded, want 1", n)
	}
}

func TestCleanupDeletesExpiredRows(t *testing.T) {
	dsn := locktest.ServiceEnv(t, "PG_DSN")
	table := testTable(t, dsn)
	s := newStore(t, map[string]string{"connectionString": dsn, "tableName": table, "cleanupInterval": "50ms"})
	ctx := timeout(t, 30*time.Second)
	for _, r := range []string{"a", "b"} {
		if ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: r, LockOwner: "o", Expiry: time.Millisecond}); !ok || err != nil {
			t.Fatalf("TryLock(%s) = %v, %v", r, ok, err)
		}
	}
	if ok, _ := s.TryLock(ctx, lock.TryLockRequest{ResourceID: "kept", LockOwner: "o", Expiry: time.Hour}); !ok {
		t.Fatal("TryLock(kept) = false")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rows string
		if err := conn.QueryRow(ctx, "SELECT coalesce(string_agg(resource, ',' ORDER BY resource), '') FROM "+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == "kept" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows = %q after 10s, want only the live lock", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInitErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no connection string", map[string]string{}, "connectionString is required"},
		{"bad table", map[string]string{"connectionString": "postgres://x", "tableName": "locks; DROP TABLE y"}, "not a plain identifier"},
		{"three part table", map[string]string{"connectionString": "postgres://x", "tableName": "a.b.c"}, "want table or schema.table"},
		{"bad timeout", map[string]string{"connectionString": "postgres://x", "timeout": "soon"}, `"timeout"`},
		{"bad connection string", map[string]string{"connectionString": "postgres://u:secret@host:notaport/db"}, "invalid connectionString"},
		{"unreachable", map[string]string{"connectionString": "postgres://u:secret@" + dead + "/db?connect_timeout=1", "timeout": "3s"}, "cannot connect to " + dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := open(t, tt.props)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init error = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("Init error leaks the password: %v", err)
			}
		})
	}
}

func TestForeignTable(t *testing.T) {
	dsn := locktest.ServiceEnv(t, "PG_DSN")
	table := testTable(t, dsn)
	ctx := timeout(t, 10*time.Second)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (key text PRIMARY KEY, value bytea)"); err != nil {
		t.Fatal(err)
	}
	_, err = open(t, map[string]string{"connectionString": dsn, "tableName": table})
	if err == nil || !strings.Contains(err.Error(), "schema this component does not know") {
		t.Fatalf("Init on a foreign table = %v", err)
	}
}
