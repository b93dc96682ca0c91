package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/configuration/configurationtest"
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// writer is another process's view of the database: its own connections,
// upserts that leave versions to the component's triggers.
type writer struct {
	db    *sql.DB
	table string
}

func newWriter(t *testing.T, path, table string) *writer {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &writer{db: db, table: table}
}

func (w *writer) Set(ctx context.Context, key, value string) error {
	_, err := w.db.ExecContext(ctx, `INSERT INTO "`+w.table+`"(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func (w *writer) Delete(ctx context.Context, key string) error {
	_, err := w.db.ExecContext(ctx, `DELETE FROM "`+w.table+`" WHERE key = ?`, key)
	return err
}

func (w *writer) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := w.db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func newStore(t *testing.T, props map[string]string) configuration.Store {
	t.Helper()
	s := New(components.Deps{Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Init(ctx, components.Metadata{Name: "config", Type: "configuration.sqlite", Properties: props}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	props := map[string]string{"connectionString": path, "pollInterval": "20ms"}
	var w *writer
	configurationtest.Run(t, func(t *testing.T) (configuration.Store, configurationtest.Writer) {
		s := newStore(t, props)
		if w == nil {
			w = newWriter(t, path, "configuration")
		}
		return s, w
	}, configurationtest.Options{})
}

func TestVersionsKeptByTriggers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	s := newStore(t, map[string]string{"connectionString": path, "table": "appconfig"})
	w := newWriter(t, path, "appconfig")
	version := func(key string) string {
		t.Helper()
		items, err := s.Get(context.Background(), configuration.GetRequest{Keys: []string{key}})
		if err != nil || items[key] == nil {
			t.Fatalf("Get(%s) = %v, %v", key, items, err)
		}
		return items[key].Version
	}
	w.exec(t, `INSERT INTO appconfig(key, value) VALUES('a', '1')`)
	v1 := version("a")
	w.exec(t, `UPDATE appconfig SET value = '2' WHERE key = 'a'`)
	v2 := version("a")
	w.exec(t, `INSERT OR REPLACE INTO appconfig(key, value) VALUES('a', '3')`)
	v3 := version("a")
	w.exec(t, `UPDATE appconfig SET metadata = '{"env":"prod"}' WHERE key = 'a'`)
	v4 := version("a")
	if v1 != "1" || v2 != "2" || v3 != "3" || v4 != "4" {
		t.Fatalf("versions = %s, %s, %s, %s; want 1, 2, 3, 4", v1, v2, v3, v4)
	}
	w.exec(t, `INSERT INTO appconfig(key, value, version) VALUES('b', 'x', 'release-7')`)
	w.exec(t, `UPDATE appconfig SET value = 'y', version = 'release-8' WHERE key = 'b'`)
	if got := version("b"); got != "release-8" {
		t.Fatalf("writer-supplied version = %q, want release-8", got)
	}
	// A second store on the same file keeps the counter.
	s2 := newStore(t, map[string]string{"connectionString": path, "table": "appconfig"})
	w.exec(t, `INSERT INTO appconfig(key, value) VALUES('c', '1')`)
	items, err := s2.Get(context.Background(), configuration.GetRequest{Keys: []string{"c"}})
	if err != nil || items["c"].Version != "5" {
		t.Fatalf("Get(c) on a second store = %v, %v; want version 5", items["c"], err)
	}
}

func TestMetadataColumn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	s := newStore(t, map[string]string{"connectionString": path})
	w := newWriter(t, path, "configuration")
	w.exec(t, `INSERT INTO configuration(key, value, metadata) VALUES
		('str', 'v', '{"env":"prod","owner":"ops"}'),
		('num', 'v', '{"replicas":3,"on":true}'),
		('null', 'v', NULL),
		('bad', 'v', 'not json')`)
	items, err := s.Get(context.Background(), configuration.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]map[string]string{
		"str":  {"env": "prod", "owner": "ops"},
		"num":  {"replicas": "3", "on": "true"},
		"null": nil,
		"bad":  nil,
	}
	for key, want := range tests {
		got := items[key]
		if got == nil || len(got.Metadata) != len(want) {
			t.Errorf("item %s = %+v, want metadata %v", key, got, want)
			continue
		}
		for k, v := range want {
			if got.Metadata[k] != v {
				t.Errorf("item %s metadata %s = %q, want %q", key, k, got.Metadata[k], v)
			}
		}
	}
}

func TestMetadataChangeIsNotified(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	s := newStore(t, map[string]string{"connectionString": path, "pollInterval": "20ms"})
	w := newWriter(t, path, "configuration")
	w.exec(t, `INSERT INTO configuration(key, value) VALUES('k', 'v')`)
	got := make(chan *configuration.UpdateEvent, 10)
	if _, err := s.Subscribe(context.Background(), configuration.SubscribeRequest{Keys: []string{"k"}}, func(_ context.Context, e *configuration.UpdateEvent) error {
		got <- e
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w.exec(t, `UPDATE configuration SET metadata = '{"a":"b"}' WHERE key = 'k'`)
	select {
	case e := <-got:
		if it := e.Items["k"]; it == nil || it.Value != "v" || it.Metadata["a"] != "b" || it.Version != "2" {
			t.Fatalf("event = %+v", it)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for a metadata change")
	}
}

func TestInvalidMetadata(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no connection string", map[string]string{}, "connectionString"},
		{"memory", map[string]string{"connectionString": ":memory:"}, "in-memory"},
		{"memory uri", map[string]string{"connectionString": "file:x?mode=memory"}, "in-memory"},
		{"bad table", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "table": "x; DROP"}, "table"},
		{"sqlite table", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "table": "sqlite_master"}, "table"},
		{"poll too fast", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "pollInterval": "1ms"}, "pollInterval"},
		{"bad poll", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "pollInterval": "often"}, "pollInterval"},
		{"managed pragma", map[string]string{"connectionString": filepath.Join(dir, "a.db") + "?_pragma=journal_mode(delete)"}, "disableWAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(components.Deps{})
			err := s.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init = %v, want an error mentioning %s", err, tt.want)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close after failed Init: %v", err)
			}
		})
	}
}

func TestForeignTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE configuration (id INTEGER PRIMARY KEY, data BLOB)`); err != nil {
		t.Fatal(err)
	}
	s := New(components.Deps{})
	err = s.Init(context.Background(), components.Metadata{Properties: map[string]string{"connectionString": path}})
	if err == nil || !strings.Contains(err.Error(), "lacks the columns") {
		t.Fatalf("Init over a foreign table = %v, want a column error", err)
	}
	s.Close()
}

func TestDiff(t *testing.T) {
	item := func(v, ver string, md map[string]string) *configuration.Item {
		return &configuration.Item{Value: v, Version: ver, Metadata: md}
	}
	prev := map[string]*configuration.Item{
		"same":    item("1", "1", map[string]string{"a": "b"}),
		"value":   item("1", "1", nil),
		"version": item("1", "1", nil),
		"md":      item("1", "1", map[string]string{"a": "b"}),
		"gone":    item("1", "1", nil),
	}
	next := map[string]*configuration.Item{
		"same":    item("1", "1", map[string]string{"a": "b"}),
		"value":   item("2", "1", nil),
		"version": item("1", "2", nil),
		"md":      item("1", "1", map[string]string{"a": "c"}),
		"new":     item("n", "1", nil),
	}
	got := diff(prev, next)
	want := map[string]string{"value": "2", "version": "1", "md": "1", "new": "n", "gone": ""}
	if len(got) != len(want) {
		t.Fatalf("diff = %v, want keys %v", got, want)
	}
	for k, v := range want {
		if got[k] == nil || got[k].Value != v {
			t.Errorf("diff[%s] = %+v, want value %q", k, got[k], v)
		}
	}
}

// TestNoPollingWithoutSubscribers checks the baseline is dropped when the
// last subscription ends, and rebuilt by the next one.
func TestNoPollingWithoutSubscribers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.db")
	st := newStore(t, map[string]string{"connectionString": path, "pollInterval": "10ms"}).(*Store)
	noop := func(context.Context, *configuration.UpdateEvent) error { return nil }
	id, err := st.Subscribe(context.Background(), configuration.SubscribeRequest{}, noop)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Unsubscribe(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st.pollMu.Lock()
		dropped := st.snapshot == nil
		st.pollMu.Unlock()
		if dropped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("snapshot kept without subscribers")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
