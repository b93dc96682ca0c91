package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/components/lock/locktest"
	"github.com/mecha-dev/mecha/components/lock/sqlite"
)

func timeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func open(tb testing.TB, props map[string]string) (lock.Store, error) {
	s := sqlite.New(components.Deps{Logger: slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	err := s.Init(timeout(tb, 20*time.Second), components.Metadata{Name: "lockstore", Type: "lock.sqlite", Properties: props})
	if err != nil {
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
	for _, tc := range []struct {
		name string
		cs   func(t *testing.T) string
	}{
		{"file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "sub", "locks.db") }},
		{"file URI", func(t *testing.T) string { return "file:" + filepath.Join(t.TempDir(), "locks.db") + "?cache=private" }},
		{"memory", func(*testing.T) string { return ":memory:" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			locktest.Run(t, func(t *testing.T) lock.Store {
				return newStore(t, map[string]string{"connectionString": tc.cs(t)})
			})
		})
	}
}

// TestTwoStoresOneFile: two stores (two connection pools, as two sidecars
// have) on one file exclude each other, also when they race.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locks.db")
	a := newStore(t, map[string]string{"connectionString": path})
	b := newStore(t, map[string]string{"connectionString": path})
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
	if ok, _ := a.TryLock(ctx, lock.TryLockRequest{ResourceID: "r", LockOwner: "x", Expiry: time.Minute}); !ok {
		t.Fatal("a: TryLock(r) = false")
	}
	if st, _ := b.Unlock(ctx, lock.UnlockRequest{ResourceID: "r", LockOwner: "y"}); st != lock.LockBelongsToOthers {
		t.Fatalf("b: Unlock(r, y) = %v, want LockBelongsToOthers", st)
	}
	if st, _ := b.Unlock(ctx, lock.UnlockRequest{ResourceID: "r", LockOwner: "x"}); st != lock.Success {
		t.Fatalf("b: Unlock(r, x) = %v, want Success", st)
	}
}

// helperEnv switches the test binary into the helper process of
// TestAcrossProcesses.
const helperEnv = "MECHA_LOCK_SQLITE_HELPER_DB"

// TestAcrossProcesses runs a second OS process on the same file. The helper
// reads commands ("lock R O" / "unlock R O") on stdin and answers each with
// one line, so the two processes interleave exactly as the test says.
func TestAcrossProcesses(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("helper process")
	}
	path := filepath.Join(t.TempDir(), "locks.db")
	s := newStore(t, map[string]string{"connectionString": path})
	ctx := timeout(t, 30*time.Second)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process: %v\n%s", err, stderr.String())
		}
	})
	out := bufio.NewScanner(stdout)
	other := func(cmdline string) string {
		t.Helper()
		if _, err := io.WriteString(stdin, cmdline+"\n"); err != nil {
			t.Fatalf("helper: %v\n%s", err, stderr.String())
		}
		for out.Scan() {
			if line, ok := strings.CutPrefix(out.Text(), "answer: "); ok {
				return line
			}
		}
		t.Fatalf("helper process ended: %v\n%s", out.Err(), stderr.String())
		return ""
	}
	mine := func(op, res, owner string) string {
		t.Helper()
		return do(ctx, s, op, res, owner)
	}

	steps := []struct {
		here bool // this process, else the helper
		cmd  string
		want string
	}{
		{true, "lock r1 parent", "true"},
		{false, "lock r1 child", "false"},
		{false, "unlock r1 child", "LOCK_BELONGS_TO_OTHERS"},
		{false, "lock r2 child", "true"},
		{true, "lock r2 parent", "false"},
		{true, "unlock r1 parent", "SUCCESS"},
		{false, "lock r1 child", "true"},
		{true, "unlock r1 parent", "LOCK_BELONGS_TO_OTHERS"},
		{false, "unlock r1 child", "SUCCESS"},
		{false, "unlock r2 child", "SUCCESS"},
		{true, "unlock r2 parent", "LOCK_DOES_NOT_EXIST"},
	}
	for _, st := range steps {
		var got string
		if st.here {
			f := strings.Fields(st.cmd)
			got = mine(f[0], f[1], f[2])
		} else {
			got = other(st.cmd)
		}
		if got != st.want {
			where := "helper"
			if st.here {
				where = "test"
			}
			t.Fatalf("%s process: %s = %s, want %s", where, st.cmd, got, st.want)
		}
	}
}

func do(ctx context.Context, s lock.Store, op, res, owner string) string {
	switch op {
	case "lock":
		ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: res, LockOwner: owner, Expiry: time.Minute})
		if err != nil {
			return "error " + err.Error()
		}
		return fmt.Sprint(ok)
	case "unlock":
		st, err := s.Unlock(ctx, lock.UnlockRequest{ResourceID: res, LockOwner: owner})
		if err != nil {
			return "error " + err.Error()
		}
		return st.String()
	}
	return "unknown command " + op
}

// TestHelperProcess is the other process of TestAcrossProcesses; it does
// nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("only runs as TestAcrossProcesses' helper")
	}
	s := newStore(t, map[string]string{"connectionString": path})
	ctx := timeout(t, 30*time.Second)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 3 {
			fmt.Printf("answer: bad command %q\n", in.Text())
			continue
		}
		fmt.Printf("answer: %s\n", do(ctx, s, f[0], f[1], f[2]))
	}
}

func TestCleanupDeletesExpiredRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locks.db")
	s := newStore(t, map[string]string{"connectionString": path, "cleanupInterval": "50ms"})
	ctx := timeout(t, 30*time.Second)
	for _, r := range []string{"a", "b", "c"} {
		if ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: r, LockOwner: "o", Expiry: time.Millisecond}); !ok || err != nil {
			t.Fatalf("TryLock(%s) = %v, %v", r, ok, err)
		}
	}
	if ok, _ := s.TryLock(ctx, lock.TryLockRequest{ResourceID: "kept", LockOwner: "o", Expiry: time.Hour}); !ok {
		t.Fatal("TryLock(kept) = false")
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rows []string
		rs, err := db.QueryContext(ctx, `SELECT resource FROM locks ORDER BY resource`)
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var r string
			rs.Scan(&r)
			rows = append(rows, r)
		}
		rs.Close()
		if strings.Join(rows, ",") == "kept" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows = %v after 10s, want only the live lock", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInitErrors(t *testing.T) {
	dir := t.TempDir()
	// A table of the same name with another schema.
	foreign := filepath.Join(dir, "foreign.db")
	db, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE locks (key TEXT PRIMARY KEY, value BLOB)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	notADir := filepath.Join(dir, "file")
	os.WriteFile(notADir, []byte("x"), 0o600)

	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no connection string", map[string]string{}, `"connectionString" is required`},
		{"bad table", map[string]string{"connectionString": ":memory:", "tableName": "x; DROP TABLE y"}, `"tableName"`},
		{"reserved table", map[string]string{"connectionString": ":memory:", "tableName": "sqlite_master"}, `"tableName"`},
		{"bad timeout", map[string]string{"connectionString": ":memory:", "timeout": "never"}, `"timeout"`},
		{"zero timeout", map[string]string{"connectionString": ":memory:", "timeout": "0"}, "must be positive"},
		{"managed option", map[string]string{"connectionString": "x.db?_txlock=deferred"}, "_txlock is managed"},
		{"pragma busy", map[string]string{"connectionString": "x.db?_pragma=busy_timeout(1)"}, "busyTimeout"},
		{"remote host", map[string]string{"connectionString": "file://db.example.com/x.db"}, "remote host"},
		{"foreign table", map[string]string{"connectionString": foreign}, "schema this component does not know"},
		{"directory is a file", map[string]string{"connectionString": filepath.Join(notADir, "locks.db")}, "create directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := open(t, tt.props)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	s := sqlite.New(components.Deps{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close before Init: %v", err)
	}
	s = newStore(t, map[string]string{"connectionString": ":memory:"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TryLock(context.Background(), lock.TryLockRequest{ResourceID: "r", LockOwner: "o", Expiry: time.Second}); err == nil {
		t.Fatal("TryLock after Close: no error")
	}
}
