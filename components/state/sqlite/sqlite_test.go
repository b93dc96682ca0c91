package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/statetest"
)

// testLogger routes the store's logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// open initialises a store with the given properties and closes it at the
// end of the test.
func open(t testing.TB, props map[string]string) *Store {
	t.Helper()
	s := New(components.Deps{Logger: testLogger(t)}).(*Store)
	if err := s.Init(context.Background(), components.Metadata{Name: "statestore", Type: "state.sqlite", Properties: props}); err != nil {
		t.Fatalf("Init(%v): %v", props, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		conn func(t *testing.T) string
	}{
		{"file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "state.db") }},
		{"file URI in new directory", func(t *testing.T) string {
			return "file:" + filepath.Join(t.TempDir(), "sub dir", "state.db")
		}},
		{"memory", func(*testing.T) string { return ":memory:" }},
		{"memory URI", func(*testing.T) string { return "file::memory:" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			statetest.Run(t, func(t *testing.T) state.Store {
				return open(t, map[string]string{"connectionString": tc.conn(t)})
			})
		})
	}
}

func TestConformanceDisableWAL(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, map[string]string{
			"connectionString": filepath.Join(t.TempDir(), "state.db"),
			"disableWAL":       "true",
		})
	})
}

func TestInitErrors(t *testing.T) {
	dir := t.TempDir()
	aFile := filepath.Join(dir, "a-file")
	if err := os.WriteFile(aFile, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "ok.db")
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"missing connectionString", map[string]string{}, "connectionString"},
		{"blank connectionString", map[string]string{"connectionString": "  "}, "connectionString"},
		{"table name with quote", map[string]string{"connectionString": db, "tableName": `st"ate`}, "tableName"},
		{"table name with space", map[string]string{"connectionString": db, "tableName": "my state"}, "tableName"},
		{"table name starting with digit", map[string]string{"connectionString": db, "tableName": "1state"}, "tableName"},
		{"reserved table name", map[string]string{"connectionString": db, "tableName": "sqlite_master"}, "tableName"},
		{"directory under a file", map[string]string{"connectionString": filepath.Join(aFile, "sub", "state.db")}, "directory"},
		{"path is a directory", map[string]string{"connectionString": dir}, ""},
		{"not a database", map[string]string{"connectionString": aFile}, ""},
		{"bad timeout", map[string]string{"connectionString": db, "timeout": "soon"}, "timeout"},
		{"zero timeout", map[string]string{"connectionString": db, "timeout": "0"}, "timeout"},
		{"bad disableWAL", map[string]string{"connectionString": db, "disableWAL": "maybe"}, "disableWAL"},
		{"negative busyTimeout", map[string]string{"connectionString": db, "busyTimeout": "-1s"}, "busyTimeout"},
		{"busy_timeout pragma", map[string]string{"connectionString": db + "?_pragma=busy_timeout(10)"}, "busyTimeout"},
		{"journal_mode pragma", map[string]string{"connectionString": db + "?_pragma=journal_mode(DELETE)"}, "disableWAL"},
		{"txlock", map[string]string{"connectionString": db + "?_txlock=deferred"}, "_txlock"},
		{"remote URI", map[string]string{"connectionString": "file://example.com/state.db"}, "remote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(components.Deps{})
			err := s.Init(ctx(t), components.Metadata{Properties: tc.props})
			if err == nil {
				s.Close()
				t.Fatalf("Init(%v) = nil, want an error", tc.props)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Init(%v) = %q, want it to mention %q", tc.props, err, tc.want)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close after failed Init: %v", err)
			}
		})
	}
}

func TestForeignTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, map[string]string{"connectionString": path})
	// A table of the same name with another schema (e.g. Dapr's) is refused
	// with a clear error rather than failing on first use.
	if _, err := s.wdb.ExecContext(ctx(t), `CREATE TABLE other (key TEXT PRIMARY KEY, value TEXT, is_binary BOOLEAN, etag TEXT)`); err != nil {
		t.Fatal(err)
	}
	s2 := New(components.Deps{})
	err := s2.Init(ctx(t), components.Metadata{Properties: map[string]string{"connectionString": path, "tableName": "other"}})
	if err == nil || !strings.Contains(err.Error(), "schema") {
		t.Errorf("Init on a foreign table = %v, want a schema error", err)
	}
	s2.Close()
}

func TestMetadata(t *testing.T) {
	s := open(t, map[string]string{
		"ConnectionString":  filepath.Join(t.TempDir(), "x", "y", "state.db"),
		"TABLENAME":         "my_state",
		"timeoutInSeconds":  "5",
		"cleanupInterval":   "0",
		"busyTimeout":       "750ms",
		"actorStateStore":   "true",
		"keyPrefix":         "name",
		"metadataTableName": "meta",
	})
	got := s.cfg
	if got.TableName != "my_state" || got.Timeout != 5*time.Second || got.CleanupInterval != 0 || got.BusyTimeout != 750*time.Millisecond {
		t.Errorf("config = %+v, want tableName my_state, timeout 5s, cleanupInterval 0, busyTimeout 750ms", got)
	}
	if s.stopCleanup != nil {
		t.Error("cleanupInterval 0 started the sweeper")
	}
	var mode string
	var busy int
	if err := s.rdb.QueryRowContext(ctx(t), "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := s.rdb.QueryRowContext(ctx(t), "PRAGMA busy_timeout").Scan(&busy); err != nil || busy != 750 {
		t.Errorf("busy_timeout = %d, %v; want 750", busy, err)
	}
	var sync int
	if err := s.wdb.QueryRowContext(ctx(t), "PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
		t.Errorf("synchronous = %d, %v; want 1 (NORMAL)", sync, err)
	}
	if err := s.Ping(ctx(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if err := s.Set(ctx(t), &state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.rdb.QueryRowContext(ctx(t), `SELECT count(*) FROM my_state`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows in my_state = %d, %v; want 1", n, err)
	}
}

// increment adds 1 to the counter at key n times with optimistic
// read-modify-write loops, alternating single writes and transactions.
func increment(ctx context.Context, s state.Store, key string, n int, worker int) error {
	for done := 0; done < n; {
		resp, err := s.Get(ctx, &state.GetRequest{Key: key})
		if err != nil {
			return err
		}
		v, err := strconv.Atoi(string(resp.Data))
		if err != nil {
			return fmt.Errorf("counter %q: %w", resp.Data, err)
		}
		set := &state.SetRequest{Key: key, Value: []byte(strconv.Itoa(v + 1)), ETag: &resp.ETag}
		if (worker+done)%2 == 0 {
			err = s.Set(ctx, set)
		} else {
			err = s.(state.Transactional).Multi(ctx, &state.TransactionRequest{Operations: []state.Operation{
				{Set: set},
				{Set: &state.SetRequest{Key: key + "-last-writer", Value: []byte(strconv.Itoa(worker))}},
			}})
		}
		switch {
		case err == nil:
			done++
		case errors.Is(err, state.ErrETagMismatch):
			// lost the race: read again
		default:
			return err
		}
	}
	return nil
}

func wantCounter(t *testing.T, s state.Store, key string, want int) {
	t.Helper()
	resp, err := s.Get(ctx(t), &state.GetRequest{Key: key})
	if err != nil || string(resp.Data) != strconv.Itoa(want) {
		t.Errorf("counter = %q, %v; want %d", resp.Data, err, want)
	}
}

// TestTwoProcessesShareFile runs optimistic increments against one file from
// two stores, as two sidecars on one host would: first two instances in this
// process, then two child processes. WAL, the busy timeout and BEGIN
// IMMEDIATE must serialise them without losing an update.
func TestTwoProcessesShareFile(t *testing.T) {
	const key, perWorker = "app||counter", 150
	for _, disableWAL := range []string{"false", "true"} {
		t.Run("two stores in one process, disableWAL="+disableWAL, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "shared.db")
			// A long busy timeout: on a loaded CI machine the default 2s
			// is not always enough for 4 writers on one rollback journal.
			props := map[string]string{"connectionString": path, "disableWAL": disableWAL, "busyTimeout": "20s"}
			a, b := open(t, props), open(t, props)
			if err := a.Set(ctx(t), &state.SetRequest{Key: key, Value: []byte("0")}); err != nil {
				t.Fatal(err)
			}
			stores := []*Store{a, b, a, b}
			var wg sync.WaitGroup
			errs := make(chan error, len(stores))
			for w, s := range stores {
				wg.Go(func() { errs <- increment(ctx(t), s, key, perWorker, w) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			wantCounter(t, a, key, len(stores)*perWorker)
			wantCounter(t, b, key, len(stores)*perWorker)
		})
	}
	t.Run("two processes", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts child processes")
		}
		path := filepath.Join(t.TempDir(), "shared.db")
		s := open(t, map[string]string{"connectionString": path})
		if err := s.Set(ctx(t), &state.SetRequest{Key: key, Value: []byte("0")}); err != nil {
			t.Fatal(err)
		}
		const procs = 2
		var wg sync.WaitGroup
		for i := range procs {
			cmd := exec.CommandContext(ctx(t), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+path, helperEnv+"_N="+strconv.Itoa(perWorker), helperEnv+"_W="+strconv.Itoa(i))
			wg.Go(func() {
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("child %d: %v\n%s", i, err, out)
				}
			})
		}
		// This process increments too, while the children run.
		if err := increment(ctx(t), s, key, perWorker, procs); err != nil {
			t.Error(err)
		}
		wg.Wait()
		wantCounter(t, s, key, (procs+1)*perWorker)
	})
}

const helperEnv = "MECHA_SQLITE_TEST_CHILD"

// TestHelperProcess is the child of TestTwoProcessesShareFile; it does
// nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper for TestTwoProcessesShareFile")
	}
	n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
	w, _ := strconv.Atoi(os.Getenv(helperEnv + "_W"))
	s := open(t, map[string]string{"connectionString": path})
	if err := increment(ctx(t), s, "app||counter", n, w); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentOpen starts several stores on a new file at once, as sidecars
// started together would: creating the file, switching it to WAL and
// creating the table must not fail on the others' locks.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "state.db")
	const n = 6
	stores := make([]state.Store, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := New(components.Deps{})
			if err := s.Init(ctx(t), components.Metadata{Properties: map[string]string{"connectionString": path}}); err != nil {
				t.Errorf("Init %d: %v", i, err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	for i, s := range stores {
		if s == nil {
			continue
		}
		if err := s.Set(ctx(t), &state.SetRequest{Key: "k" + strconv.Itoa(i), Value: []byte("v")}); err != nil {
			t.Errorf("Set from store %d: %v", i, err)
		}
		s.Close()
	}
}

func TestExpiredRowsCleanup(t *testing.T) {
	s := open(t, map[string]string{
		"connectionString": filepath.Join(t.TempDir(), "state.db"),
		"cleanupInterval":  "50ms",
	})
	for i := range 2500 { // more than one cleanup batch
		if err := s.Set(ctx(t), &state.SetRequest{Key: "ttl-" + strconv.Itoa(i), Value: []byte("x"), TTL: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"forever", "later"} {
		req := &state.SetRequest{Key: k, Value: []byte("y")}
		if k == "later" {
			req.TTL = time.Hour
		}
		if err := s.Set(ctx(t), req); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() int {
		var n int
		if err := s.rdb.QueryRowContext(ctx(t), `SELECT count(*) FROM state`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for rows() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows left after cleanup, want 2", rows())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range []string{"forever", "later"} {
		if resp, err := s.Get(ctx(t), &state.GetRequest{Key: k}); err != nil || string(resp.Data) != "y" {
			t.Errorf("Get(%s) = %q, %v; want y", k, resp.Data, err)
		}
	}
}

func TestCleanupUsesIndex(t *testing.T) {
	s := open(t, map[string]string{"connectionString": filepath.Join(t.TempDir(), "state.db")})
	rows, err := s.rdb.QueryContext(ctx(t), `EXPLAIN QUERY PLAN SELECT key FROM state WHERE expires_at IS NOT NULL AND expires_at <= ?`, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); !strings.Contains(p, "state_expires_at") {
		t.Errorf("cleanup query plan %q does not use the expiry index", p)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	props := map[string]string{"connectionString": path, "cleanupInterval": "0"}
	s := New(components.Deps{})
	if err := s.Init(ctx(t), components.Metadata{Properties: props}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i)
	}
	values := map[string][]byte{"a": []byte("A"), "empty": {}, "big": big, "ключ": []byte("unicode")}
	for k, v := range values {
		if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx(t), &state.SetRequest{Key: "ttl", Value: []byte("t"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	before := map[string]*state.GetResponse{}
	for _, k := range []string{"a", "empty", "big", "ключ", "ttl"} {
		resp, err := s.Get(ctx(t), &state.GetRequest{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		before[k] = resp
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s2 := open(t, props)
	for k, want := range before {
		got, err := s2.Get(ctx(t), &state.GetRequest{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Data) != string(want.Data) || got.Data == nil || got.ETag != want.ETag {
			t.Errorf("after reopen Get(%q) = %d bytes etag %q, want %d bytes etag %q", k, len(got.Data), got.ETag, len(want.Data), want.ETag)
		}
		if (got.ExpireTime == nil) != (want.ExpireTime == nil) || (got.ExpireTime != nil && !got.ExpireTime.Equal(*want.ExpireTime)) {
			t.Errorf("after reopen Get(%q) expires %v, want %v", k, got.ExpireTime, want.ExpireTime)
		}
	}
	// The old etag still works after the reopen.
	if err := s2.Set(ctx(t), &state.SetRequest{Key: "a", Value: []byte("A2"), ETag: &before["a"].ETag}); err != nil {
		t.Errorf("Set with pre-reopen etag: %v", err)
	}
}

func TestETagNotReusedAfterRecreate(t *testing.T) {
	s := open(t, map[string]string{"connectionString": ":memory:"})
	seen := map[string]bool{}
	for range 200 {
		if err := s.Set(ctx(t), &state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Get(ctx(t), &state.GetRequest{Key: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if seen[resp.ETag] {
			t.Fatalf("etag %s handed out twice", resp.ETag)
		}
		seen[resp.ETag] = true
		if err := s.Delete(ctx(t), &state.DeleteRequest{Key: "k"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExpiredKeyAndETags(t *testing.T) {
	s := open(t, map[string]string{"connectionString": ":memory:", "cleanupInterval": "0"})
	now := time.Now()
	s.now = func() time.Time { return now }
	if err := s.Set(ctx(t), &state.SetRequest{Key: "k", Value: []byte("v"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Get(ctx(t), &state.GetRequest{Key: "k"})
	if err != nil || resp.Data == nil {
		t.Fatalf("Get = %v, %v", resp, err)
	}
	etag := resp.ETag
	now = now.Add(time.Minute) // expired, still in the table
	if resp, _ := s.Get(ctx(t), &state.GetRequest{Key: "k"}); resp.Data != nil {
		t.Errorf("Get of expired key = %q, want nil", resp.Data)
	}
	items, err := s.BulkGet(ctx(t), []string{"k", "k"}, state.GetOptions{})
	if err != nil || len(items) != 2 || items[0].Data != nil || items[1].Data != nil {
		t.Errorf("BulkGet of expired key = %+v, %v", items, err)
	}
	if err := s.Set(ctx(t), &state.SetRequest{Key: "k", Value: []byte("w"), ETag: &etag}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Set with etag of expired key = %v, want mismatch", err)
	}
	if err := s.Delete(ctx(t), &state.DeleteRequest{Key: "k", ETag: &etag}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Delete with etag of expired key = %v, want mismatch", err)
	}
	// First-write may take over an expired key.
	if err := s.Set(ctx(t), &state.SetRequest{Key: "k", Value: []byte("x"), Options: state.WriteOptions{Concurrency: state.FirstWrite}}); err != nil {
		t.Errorf("first-write over expired key: %v", err)
	}
	if resp, _ := s.Get(ctx(t), &state.GetRequest{Key: "k"}); string(resp.Data) != "x" || resp.ExpireTime != nil {
		t.Errorf("Get = %q expires %v, want x and no expiry", resp.Data, resp.ExpireTime)
	}
	bad := "12a"
	if err := s.Delete(ctx(t), &state.DeleteRequest{Key: "k", ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Delete with etag %q = %v, want ErrETagInvalid", bad, err)
	}
	if err := s.Multi(ctx(t), &state.TransactionRequest{Operations: []state.Operation{{Delete: &state.DeleteRequest{Key: "k", ETag: &bad}}}}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Multi with etag %q = %v, want ErrETagInvalid", bad, err)
	}
	if err := s.Multi(ctx(t), &state.TransactionRequest{Operations: []state.Operation{{}}}); err == nil {
		t.Error("Multi with an empty operation = nil, want an error")
	}
}

func TestBulkGetManyKeys(t *testing.T) {
	s := open(t, map[string]string{"connectionString": filepath.Join(t.TempDir(), "state.db")})
	var keys []string
	for i := range 1200 {
		k := "k" + strconv.Itoa(i)
		keys = append(keys, k)
		if i%3 == 0 {
			if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte(k)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	items, err := s.BulkGet(ctx(t), keys, state.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(keys) {
		t.Fatalf("BulkGet returned %d items, want %d", len(items), len(keys))
	}
	for i, it := range items {
		if it.Key != keys[i] {
			t.Fatalf("item %d key %q, want %q", i, it.Key, keys[i])
		}
		if found := it.Data != nil; found != (i%3 == 0) || (found && (string(it.Data) != it.Key || it.ETag == "")) {
			t.Fatalf("item %d = %+v", i, it)
		}
	}
}

func TestCloseStopsWork(t *testing.T) {
	s := New(components.Deps{})
	if err := s.Close(); err != nil {
		t.Errorf("Close before Init: %v", err)
	}
	s = New(components.Deps{})
	if err := s.Init(ctx(t), components.Metadata{Properties: map[string]string{"connectionString": ":memory:", "cleanupInterval": "1ms"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx(t), &state.GetRequest{Key: "k"}); err == nil {
		t.Error("Get after Close succeeded")
	}
}

func BenchmarkStore(b *testing.B) {
	for _, tc := range []struct{ name, conn string }{
		{"file", filepath.Join(b.TempDir(), "state.db")},
		{"memory", ":memory:"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := New(components.Deps{})
			if err := s.Init(context.Background(), components.Metadata{Properties: map[string]string{"connectionString": tc.conn}}); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			statetest.Bench(b, s)
		})
	}
}
