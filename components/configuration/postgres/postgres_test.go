package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/configuration/configurationtest"
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// uniqueTable returns a fresh table name and drops the table (and the
// sequence Mecha creates with it) when the test ends.
func uniqueTable(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	table := fmt.Sprintf("mecha_cfgtest_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		pool.Exec(ctx, "DROP TABLE IF EXISTS "+ident(table))
		pool.Exec(ctx, "DROP SEQUENCE IF EXISTS "+ident(sequenceName(table)))
	})
	return table
}

func testPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// writer upserts rows as an operator would and leaves versions to the
// trigger Mecha created.
type writer struct {
	pool  *pgxpool.Pool
	table string
}

func (w *writer) Set(ctx context.Context, key, value string) error {
	_, err := w.pool.Exec(ctx, "INSERT INTO "+ident(w.table)+"(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	return err
}

func (w *writer) Delete(ctx context.Context, key string) error {
	_, err := w.pool.Exec(ctx, "DELETE FROM "+ident(w.table)+" WHERE key = $1", key)
	return err
}

func newStore(t *testing.T, props map[string]string) configuration.Store {
	t.Helper()
	s := New(components.Deps{Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Init(ctx, components.Metadata{Name: "config", Type: "configuration.postgresql", Properties: props}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs the suite against a table Mecha creates, with its
// notify and version triggers.
func TestConformance(t *testing.T) {
	dsn := configurationtest.ServiceEnv(t, "PG_DSN")
	pool := testPool(t, dsn)
	table := uniqueTable(t, pool)
	props := map[string]string{"connectionString": dsn, "table": table}
	configurationtest.Run(t, func(t *testing.T) (configuration.Store, configurationtest.Writer) {
		return newStore(t, props), &writer{pool: pool, table: table}
	}, configurationtest.Options{})
}

// daprWriter writes a user-made table in Dapr's documented shape, with the
// versions chosen by the writer.
type daprWriter struct {
	pool    *pgxpool.Pool
	table   string
	version int
}

func (w *daprWriter) Set(ctx context.Context, key, value string) error {
	w.version++
	tag, err := w.pool.Exec(ctx, "UPDATE "+w.table+" SET value = $2, version = $3 WHERE key = $1", key, value, fmt.Sprint(w.version))
	if err == nil && tag.RowsAffected() == 0 {
		_, err = w.pool.Exec(ctx, "INSERT INTO "+w.table+"(key, value, version, metadata) VALUES ($1, $2, $3, '{\"source\":\"test\"}')", key, value, fmt.Sprint(w.version))
	}
	return err
}

func (w *daprWriter) Delete(ctx context.Context, key string) error {
	_, err := w.pool.Exec(ctx, "DELETE FROM "+w.table+" WHERE key = $1", key)
	return err
}

// TestConformanceDaprTrigger runs the suite against a table and trigger set
// up as Dapr's documentation shows, subscribing with pgNotifyChannel.
func TestConformanceDaprTrigger(t *testing.T) {
	dsn := configurationtest.ServiceEnv(t, "PG_DSN")
	pool := testPool(t, dsn)
	table := uniqueTable(t, pool)
	channel := "cfg_" + table
	fn := table + "_notify"
	ctx := context.Background()
	for _, stmt := range []string{
		"CREATE TABLE " + table + " (KEY VARCHAR NOT NULL, VALUE VARCHAR NOT NULL, VERSION VARCHAR NOT NULL, METADATA JSON)",
		`CREATE FUNCTION ` + fn + `() RETURNS TRIGGER AS $$
DECLARE data json; notification json;
BEGIN
	IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
	notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
	PERFORM pg_notify('` + channel + `', notification::text);
	RETURN NULL;
END;
$$ LANGUAGE plpgsql`,
		"CREATE TRIGGER " + table + "_trg AFTER INSERT OR UPDATE OR DELETE ON " + table + " FOR EACH ROW EXECUTE PROCEDURE " + fn + "()",
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP FUNCTION IF EXISTS "+fn+"() CASCADE") })
	props := map[string]string{"connectionString": dsn, "table": table}

	// Without pgNotifyChannel there is nothing to listen to.
	s := newStore(t, props)
	_, err := s.Subscribe(ctx, configuration.SubscribeRequest{}, func(context.Context, *configuration.UpdateEvent) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "pgNotifyChannel") {
		t.Fatalf("Subscribe without pgNotifyChannel = %v, want an error naming it", err)
	}

	w := &daprWriter{pool: pool, table: table}
	configurationtest.Run(t, func(t *testing.T) (configuration.Store, configurationtest.Writer) {
		return newStore(t, props), w
	}, configurationtest.Options{SubscribeMetadata: map[string]string{"pgNotifyChannel": channel}})

	// The payload's row is used as it is, metadata included.
	got := make(chan *configuration.UpdateEvent, 1)
	if _, err := s.Subscribe(ctx, configuration.SubscribeRequest{Keys: []string{"md"}, Metadata: map[string]string{"PGNOTIFYCHANNEL": channel}}, func(_ context.Context, e *configuration.UpdateEvent) error {
		got <- e
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Set(ctx, "md", "v"); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if it := e.Items["md"]; it == nil || it.Value != "v" || it.Metadata["source"] != "test" || it.Version == "" {
			t.Fatalf("event item = %+v", it)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
}

func TestVersionTrigger(t *testing.T) {
	dsn := configurationtest.ServiceEnv(t, "PG_DSN")
	pool := testPool(t, dsn)
	table := uniqueTable(t, pool)
	s := newStore(t, map[string]string{"connectionString": dsn, "table": table})
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	version := func(key string) string {
		t.Helper()
		items, err := s.Get(ctx, configuration.GetRequest{Keys: []string{key}})
		if err != nil || items[key] == nil {
			t.Fatalf("Get(%s) = %v, %v", key, items, err)
		}
		return items[key].Version
	}
	tbl := ident(table)
	exec("INSERT INTO " + tbl + "(key, value) VALUES ('a', '1')")
	v1 := version("a")
	exec("UPDATE " + tbl + " SET value = '2' WHERE key = 'a'")
	v2 := version("a")
	exec("INSERT INTO " + tbl + "(key, value, version) VALUES ('b', 'x', 'release-7')")
	if v1 == "" || v1 == v2 || version("b") != "release-7" {
		t.Fatalf("versions a: %q then %q, b: %q", v1, v2, version("b"))
	}
	exec("UPDATE "+tbl+" SET metadata = $1 WHERE key = 'a'", `{"n": 3, "s": "x"}`)
	items, err := s.Get(ctx, configuration.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if md := items["a"].Metadata; md["n"] != "3" || md["s"] != "x" {
		t.Fatalf("metadata = %v", md)
	}
}

func TestInvalidMetadata(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no connection string", map[string]string{}, "connectionString"},
		{"upper case table", map[string]string{"connectionString": "postgres://x", "table": "Config"}, "table"},
		{"injection", map[string]string{"connectionString": "postgres://x", "table": "t; drop"}, "table"},
		{"three parts", map[string]string{"connectionString": "postgres://x", "table": "a.b.c"}, "table"},
		{"bad timeout", map[string]string{"connectionString": "postgres://x", "timeout": "soon"}, "timeout"},
		{"bad dsn", map[string]string{"connectionString": "postgres://x:bad port"}, "connectionString"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(components.Deps{})
			err := s.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init = %v, want an error mentioning %s", err, tt.want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("x", 63)
	tests := []struct{ in, channel, seq string }{
		{"configuration", "mecha_cfg_configuration", "configuration_version_seq"},
		{"app.config", "mecha_cfg_app_config", "app.config_version_seq"},
	}
	for _, tt := range tests {
		if got := defaultChannel(tt.in); got != tt.channel {
			t.Errorf("defaultChannel(%q) = %q, want %q", tt.in, got, tt.channel)
		}
		if got := sequenceName(tt.in); got != tt.seq {
			t.Errorf("sequenceName(%q) = %q, want %q", tt.in, got, tt.seq)
		}
	}
	if ch := defaultChannel(long); len(ch) > maxIdentifier || ch == defaultChannel(long[:62]+"y") {
		t.Errorf("defaultChannel(long) = %q", ch)
	}
	if seq := sequenceName(long); len(seq) > maxIdentifier || !strings.HasSuffix(seq, "_version_seq") {
		t.Errorf("sequenceName(long) = %q", seq)
	}
}
