package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/postgres"
	"github.com/mecha-dev/mecha/components/state/statetest"
)

// pgDSN returns the test database from PG_DSN. Without it the test is
// skipped, unless MECHA_REQUIRE_SERVICES=1 (CI), where that is a failure.
func pgDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("PG_DSN")
	if dsn == "" {
		if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
			tb.Fatal("PG_DSN is not set and MECHA_REQUIRE_SERVICES=1")
		}
		tb.Skip("PG_DSN is not set; run `bash /work/shared/services/start-services.sh postgres` and source /tmp/dapr-services/services.env")
	}
	return dsn
}

// testTable returns a fresh table name and drops that table when the test
// ends.
func testTable(tb testing.TB, dsn string) string {
	tb.Helper()
	table := "state_test_" + rand.Text()[:10]
	table = strings.ToLower(table)
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

// testLogger sends the store's logs to t.Log.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ tb testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newStore initialises a store on props (connectionString is filled in from
// dsn when absent) and closes it when the test ends.
func newStore(tb testing.TB, props map[string]string) state.Store {
	tb.Helper()
	s := postgres.New(components.Deps{Logger: testLogger(tb)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Init(ctx, components.Metadata{Name: "pg", Type: "state.postgresql", Properties: props}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	dsn := pgDSN(t)
	table := testTable(t, dsn)
	statetest.Run(t, func(t *testing.T) state.Store {
		return newStore(t, map[string]string{"connectionString": dsn, "tableName": table})
	})
}

func TestInitErrors(t *testing.T) {
	// silent accepts TCP connections and never answers: a hung server.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	// refused is a port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()

	const password = "s3cret-pw"
	tests := []struct {
		name  string
		props map[string]string
		want  string // substring of the error
	}{
		{"missing connectionString", map[string]string{}, "connectionString is required"},
		{"sql in tableName", map[string]string{"connectionString": "host=x", "tableName": "x; drop table y"}, "tableName"},
		{"three-part tableName", map[string]string{"connectionString": "host=x", "tableName": "a.b.c"}, "tableName"},
		{"quoted tableName", map[string]string{"connectionString": "host=x", "tableName": `"x"`}, "tableName"},
		{"bad timeout", map[string]string{"connectionString": "host=x", "timeout": "soon"}, "timeout"},
		{"zero timeout", map[string]string{"connectionString": "host=x", "timeout": "0"}, "timeout must be positive"},
		{"bad cleanupInterval", map[string]string{"connectionString": "host=x", "cleanupInterval": "hourly"}, "cleanupInterval"},
		{"unparsable connectionString", map[string]string{"connectionString": "postgres://u:" + password + "@host:notaport/db"}, "invalid connectionString"},
		{"connection refused", map[string]string{"connectionString": "postgres://u:" + password + "@" + refused + "/db?sslmode=disable"}, "cannot connect"},
		{"server never answers", map[string]string{"connectionString": "postgres://u:" + password + "@" + silent.Addr().String() + "/db?sslmode=disable"}, "cannot connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := postgres.New(components.Deps{})
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := s.Init(ctx, components.Metadata{Properties: tt.props})
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Init succeeded, want an error")
			}
			t.Logf("Init: %v (after %v)", err, elapsed.Round(time.Millisecond))
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Init error = %q, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("Init error leaks the password: %q", err)
			}
			if elapsed > 2*time.Second {
				t.Errorf("Init took %v with a 500ms context", elapsed)
			}
			// Close is safe after a failed Init, and idempotent.
			if err := s.Close(); err != nil {
				t.Errorf("Close after failed Init: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestSharedSchemaAndQualifiedName(t *testing.T) {
	dsn := pgDSN(t)
	table := testTable(t, dsn)
	// Mixed case and a schema prefix name the same table as the plain
	// lower-case name, as unquoted identifiers do in PostgreSQL.
	a := newStore(t, map[string]string{"connectionString": dsn, "tableName": "public." + strings.ToUpper(table)})
	b := newStore(t, map[string]string{"connectionString": dsn, "tableName": table})
	ctx := context.Background()
	if err := a.Set(ctx, &state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Get(ctx, &state.GetRequest{Key: "k"})
	if err != nil || string(resp.Data) != "v" {
		t.Fatalf("Get through the second store = %q, %v; want v", resp.Data, err)
	}
	// The columns are those of Dapr's state.postgresql v2.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT column_name || ' ' || data_type || ' ' || is_nullable
		FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`, table)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"key text NO",
		"value bytea NO",
		"etag uuid NO",
		"created_at timestamp with time zone NO",
		"updated_at timestamp with time zone YES",
		"expires_at timestamp with time zone YES",
	}
	if strings.Join(cols, "\n") != strings.Join(want, "\n") {
		t.Errorf("columns:\n%s\nwant:\n%s", strings.Join(cols, "\n"), strings.Join(want, "\n"))
	}
	// A non-uuid etag is invalid, not a mismatch.
	bad := "12"
	if err := a.Set(ctx, &state.SetRequest{Key: "k", Value: []byte("w"), ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Set with etag %q = %v, want ErrETagInvalid", bad, err)
	}
	if err := a.Delete(ctx, &state.DeleteRequest{Key: "k", ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Delete with etag %q = %v, want ErrETagInvalid", bad, err)
	}
	if err := a.(state.Pinger).Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestExpiredRowsCleanup(t *testing.T) {
	dsn := pgDSN(t)
	table := testTable(t, dsn)
	s := newStore(t, map[string]string{"connectionString": dsn, "tableName": table, "cleanupInterval": "100ms"})
	ctx := context.Background()
	for _, req := range []*state.SetRequest{
		{Key: "expires", Value: []byte("x"), TTL: time.Millisecond},
		{Key: "stays", Value: []byte("y"), TTL: time.Hour},
		{Key: "forever", Value: []byte("z")},
	} {
		if err := s.Set(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var keys []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		rows, err := conn.Query(ctx, "SELECT key FROM "+table+" ORDER BY key")
		if err != nil {
			t.Fatal(err)
		}
		if keys, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
		if len(keys) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := strings.Join(keys, ","); got != "forever,stays" {
		t.Fatalf("rows left after cleanup = %s, want forever,stays", got)
	}
	// Close stops the loop: the store's Close waits for it, so a leaked
	// loop would hang here or race with the table drop.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOutageAndRecovery puts a TCP proxy between the store and PostgreSQL,
// cuts it, and checks that calls fail within the timeout and succeed again
// once the proxy is back.
func TestOutageAndRecovery(t *testing.T) {
	dsn := pgDSN(t)
	table := testTable(t, dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	s := newStore(t, map[string]string{
		"connectionString": withHostPort(t, dsn, p.addr),
		"tableName":        table,
		"timeout":          "1s",
	})
	ctx := context.Background()
	if err := s.Set(ctx, &state.SetRequest{Key: "k", Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}

	for _, mode := range []string{"refuse", "hang"} {
		t.Run(mode, func(t *testing.T) {
			p.cut(mode == "hang")
			start := time.Now()
			_, err := s.Get(ctx, &state.GetRequest{Key: "k"})
			if err == nil {
				t.Fatal("Get during the outage succeeded")
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("Get took %v to fail with a 1s timeout", el)
			}
			t.Logf("Get during outage: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
			// The caller's context is honoured too.
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			start = time.Now()
			err = s.Set(short, &state.SetRequest{Key: "k", Value: []byte("during")})
			cancel()
			if err == nil {
				t.Fatal("Set during the outage succeeded")
			}
			if el := time.Since(start); el > time.Second {
				t.Errorf("Set took %v with a 200ms context", el)
			}

			p.restore()
			var resp *state.GetResponse
			for deadline := time.Now().Add(10 * time.Second); ; {
				resp, err = s.Get(ctx, &state.GetRequest{Key: "k"})
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("store did not recover after the outage: %v", err)
			}
			if string(resp.Data) != "before" {
				t.Fatalf("Get after recovery = %q, want before", resp.Data)
			}
			if err := s.(state.Pinger).Ping(ctx); err != nil {
				t.Fatalf("Ping after recovery: %v", err)
			}
		})
	}
}

// withHostPort points dsn (URL or key/value form) at addr.
func withHostPort(t *testing.T, dsn, addr string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = addr
		return u.String()
	}
	host, port, _ := net.SplitHostPort(addr)
	return dsn + " host=" + host + " port=" + port // later keys win
}

// proxy forwards TCP connections to a backend and can simulate an outage:
// refusing (connections reset, new ones refused) or hanging (connections
// stay open but no bytes flow).
type proxy struct {
	t       *testing.T
	addr    string
	backend string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	hung  bool
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, backend string) *proxy {
	p := &proxy{t: t, backend: backend}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.cut(false)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			hung := p.hung
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			if hung {
				continue // hold it, forward nothing
			}
			b, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, b)
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(b, c) })
			p.wg.Go(func() { p.pipe(c, b) })
		}
	})
}

// pipe copies src to dst until either fails; in hang mode the bytes are
// dropped instead.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hung := p.hung
			p.mu.Unlock()
			if !hung {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// cut starts an outage. With hang, existing connections stay open but go
// silent and new ones are accepted and ignored; without, every connection is
// closed and new ones are refused.
func (p *proxy) cut(hang bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = hang
	if hang {
		return
	}
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restore ends the outage: silent connections are dropped (their protocol
// state is lost) and the proxy forwards again on the same address.
func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.hung = false
	if p.ln == nil {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			p.t.Fatalf("proxy relisten on %s: %v", p.addr, err)
		}
		p.serve(ln)
	}
}

func BenchmarkStore(b *testing.B) {
	dsn := pgDSN(b)
	table := testTable(b, dsn)
	s := postgres.New(components.Deps{})
	if err := s.Init(context.Background(), components.Metadata{Properties: map[string]string{
		"connectionString": dsn, "tableName": table,
	}}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	statetest.Bench(b, s)
}
