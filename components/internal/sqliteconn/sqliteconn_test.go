package sqliteconn

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
)

var opts = Options{BusyTimeout: 2 * time.Second, Example: `a file such as "x.db"`, TxLock: true}

func parse(t *testing.T, o Options, kv ...string) (Settings, string, error) {
	t.Helper()
	p := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	r := props.New(components.Metadata{Properties: p}, Unit)
	s := Parse(r, o)
	table := Table(r, "state", "table", "tableName")
	return s, table, r.Err()
}

func TestConnectionStrings(t *testing.T) {
	tests := []struct {
		cs       string
		inMemory bool
		path     string
	}{
		{":memory:", true, ""},
		{"file::memory:?cache=shared", true, ""},
		{"file:x.db?mode=memory", true, ""},
		{"data.db", false, "data.db"},
		{"data.db?mode=memory", false, "data.db"}, // the driver only reads options of file: URIs
		{"file:/var/lib/a%20b.db?cache=private#frag", false, "/var/lib/a b.db"},
		{"file://localhost/tmp/x.db", false, "/tmp/x.db"},
	}
	for _, tt := range tests {
		s, _, err := parse(t, opts, "connectionString", tt.cs)
		if err != nil {
			t.Errorf("%q: %v", tt.cs, err)
			continue
		}
		if s.InMemory != tt.inMemory || s.Path != tt.path {
			t.Errorf("%q: inMemory %v path %q, want %v %q", tt.cs, s.InMemory, s.Path, tt.inMemory, tt.path)
		}
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		kv   []string
		want string
	}{
		{"missing", opts, nil, `metadata "connectionString" is required (a file such as "x.db")`},
		{"zero timeout", opts, []string{"connectionString", "x.db", "timeoutInSeconds", "0"}, `"timeoutInSeconds": 0s must be positive`},
		{"negative busy timeout", opts, []string{"connectionString", "x.db", "busyTimeout", "-1"}, `"busyTimeout"`},
		{"busy pragma", opts, []string{"connectionString", "x.db?_pragma=busy_timeout(1)"}, `"busyTimeout" property`},
		{"journal pragma", opts, []string{"connectionString", "x.db?_pragma=journal_mode(wal)"}, `"disableWAL" property`},
		{"managed option", opts, []string{"connectionString", "x.db?_journal=wal"}, "_journal is managed"},
		{"txlock", opts, []string{"connectionString", "x.db?_txlock=deferred"}, "_txlock is managed"},
		{"remote", opts, []string{"connectionString", "file://h.example/x.db"}, "remote host"},
		{"no file", opts, []string{"connectionString", "file:?cache=shared"}, "names no file"},
		{"bad table", opts, []string{"connectionString", "x.db", "tableName", "sqlite_x"}, `"tableName": "sqlite_x" is not a valid table name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(t, tt.o, tt.kv...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %s", err, tt.want)
			}
		})
	}
	// Without TxLock the component leaves _txlock to the user.
	if _, _, err := parse(t, Options{}, "connectionString", "x.db?_txlock=deferred"); err != nil {
		t.Errorf("_txlock without Options.TxLock: %v", err)
	}
}

func TestDSN(t *testing.T) {
	s, table, err := parse(t, opts, "connectionString", "x.db", "busyTimeout", "750ms", "table", "items")
	if err != nil {
		t.Fatal(err)
	}
	if table != "items" {
		t.Errorf("table = %q", table)
	}
	if got, want := s.DSN(SyncNormal, TxImmediate), "x.db?_pragma=busy_timeout(750)&_pragma=synchronous(NORMAL)&_txlock=immediate"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	s, _, err = parse(t, opts, "connectionString", "x.db?_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.DSN(SyncNormal, QueryOnly), "x.db?_pragma=synchronous(FULL)&_pragma=busy_timeout(2000)&_query_only=1"; got != want {
		t.Errorf("DSN with the user's synchronous = %q, want %q", got, want)
	}
}

func TestOpenAndSetup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.db")
	s, _, err := parse(t, opts, "connectionString", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureDir(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(s.DSN(SyncNormal, TxImmediate), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)`)
		return err
	}
	if err := s.Setup(ctx, db, slog.New(slog.DiscardHandler), schema); err != nil {
		t.Fatal(err)
	}
	var mode string
	var busy int
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil || busy != 2000 {
		t.Errorf("busy_timeout = %d, %v; want 2000", busy, err)
	}
}
