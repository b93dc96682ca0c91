package list_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/nameresolution"
	nrsqlite "github.com/mecha-dev/mecha/components/nameresolution/sqlite"
	"github.com/mecha-dev/mecha/internal/cli/list"
	"github.com/mecha-dev/mecha/internal/cli/run"
	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

func TestMain(m *testing.M) { runtest.Main(m) }

func registries() *kinds.Registries {
	r := kinds.New()
	all.Register(r)
	return r
}

// listCmd runs `mecha list ARGS...` to completion.
func listCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	r := runtest.Execute(t, list.Command(), args...)
	err := r.Wait(t, 20*time.Second)
	return r.Out.String(), err
}

func TestEmpty(t *testing.T) {
	runtest.Setup(t)
	out, err := listCmd(t)
	if err != nil || out != "No Mecha sidecars are running. Start one with: mecha run --app-id ID -- COMMAND\n" {
		t.Fatalf("mecha list = %q, %v; want the friendly sentence", out, err)
	}
	if out, err := listCmd(t, "-o", "json"); err != nil || out != "[]\n" {
		t.Fatalf("mecha list -o json = %q, %v; want []", out, err)
	}
	if out, err := listCmd(t, "-o", "yaml"); err != nil || out != "[]\n" {
		t.Fatalf("mecha list -o yaml = %q, %v; want []", out, err)
	}
	file, _ := selfhosted.RegistryFile()
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("listing created the registry %s: %v", file, err)
	}
}

func TestBadOutput(t *testing.T) {
	runtest.Setup(t)
	if _, err := listCmd(t, "-o", "xml"); err == nil || !strings.Contains(err.Error(), `--output "xml" is not one of table, json, yaml`) {
		t.Fatalf("mecha list -o xml = %v", err)
	}
}

type started struct {
	r          *runtest.Running
	http, grpc int
	appPID     int
}

// startApp runs `mecha run --app-id id FLAGS -- <this binary> wait` and
// returns once the app runs and its pid is registered.
func startApp(t *testing.T, id string, flags ...string) started {
	t.Helper()
	args := append(append([]string{"--app-id", id}, flags...), "--", runtest.Self(t), "wait")
	r := runtest.Execute(t, run.Command(registries), args...)
	r.WaitOutput(t, "["+id+"] ready\n")
	h, g := runtest.Ports(r.Out.String(), id)
	s := started{r: r, appPID: runtest.AppPID(r.Out.String(), id)}
	s.http, _ = strconv.Atoi(h)
	s.grpc, _ = strconv.Atoi(g)
	if s.http == 0 || s.appPID == 0 {
		t.Fatalf("no ports or app pid in:\n%s", r.Out)
	}
	runtest.Eventually(t, 10*time.Second, func() error {
		ins, err := list.Instances(context.Background())
		if err != nil {
			return err
		}
		for _, in := range list.ByAppID(ins, id) {
			if in.AppPID == s.appPID {
				return nil
			}
		}
		return fmt.Errorf("%s with app pid %d not registered: %+v", id, s.appPID, ins)
	})
	return s
}

// TestListsRunningApps: two `mecha run` show up with their ports and pids,
// in every format.
func TestListsRunningApps(t *testing.T) {
	runtest.Setup(t)
	a := startApp(t, "alpha", "--app-port", "1")
	b := startApp(t, "beta")

	out, err := listCmd(t, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []list.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, out)
	}
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2:\n%s", len(entries), out)
	}
	for i, want := range []struct {
		id      string
		s       started
		appPort int
	}{{"alpha", a, 1}, {"beta", b, 0}} {
		e := entries[i]
		if e.AppID != want.id || e.HTTPPort != want.s.http || e.GRPCPort != want.s.grpc || e.AppPort != want.appPort ||
			e.PID != os.Getpid() || e.AppPID != want.s.appPID || e.Namespace != "default" || e.InternalGRPCPort == 0 {
			t.Errorf("entry %d = %+v\nwant app %s http %d grpc %d app port %d pid %d app pid %d", i, e, want.id, want.s.http, want.s.grpc, want.appPort, os.Getpid(), want.s.appPID)
		}
		if want := runtest.Self(t) + " wait"; e.Command != want {
			t.Errorf("command %q, want %q", e.Command, want)
		}
		if e.Age == "" || e.StartedAt.IsZero() || time.Since(e.StartedAt) > time.Minute || e.InstanceID == "" {
			t.Errorf("age %q, started %v, instance %q", e.Age, e.StartedAt, e.InstanceID)
		}
	}
	// JSON keys are the dapr CLI's where they exist.
	for _, key := range []string{`"appId": "alpha"`, `"httpPort": `, `"grpcPort": `, `"appPort": 1`, `"pid": `, `"appPid": `, `"age": `, `"created": `} {
		if !strings.Contains(out, key) {
			t.Errorf("JSON lacks %s:\n%s", key, out)
		}
	}

	out, err = listCmd(t, "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	var fromYAML []map[string]any
	if err := yaml.Unmarshal([]byte(out), &fromYAML); err != nil || len(fromYAML) != 2 || fromYAML[1]["appId"] != "beta" || fromYAML[1]["httpPort"] != b.http {
		t.Fatalf("-o yaml = %v, %v:\n%s", fromYAML, err, out)
	}

	out, err = listCmd(t)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want 3:\n%s", len(lines), out)
	}
	if !regexp.MustCompile(`^APP ID +HTTP PORT +GRPC PORT +APP PORT +PID +APP PID +AGE +COMMAND$`).MatchString(lines[0]) {
		t.Errorf("header %q", lines[0])
	}
	for i, want := range []string{
		fmt.Sprintf(`^alpha +%d +%d +1 +%d +%d +\d+s +\S+$`, a.http, a.grpc, os.Getpid(), a.appPID),
		fmt.Sprintf(`^beta +%d +%d +- +%d +%d +\d+s +\S+$`, b.http, b.grpc, os.Getpid(), b.appPID),
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("row %q does not match %s", lines[i+1], want)
		}
	}

	// Stopped apps leave the list.
	a.r.Cancel()
	if err := a.r.Wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err = listCmd(t, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	entries = nil
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 1 || entries[0].AppID != "beta" {
		t.Fatalf("after stopping alpha: %+v, %v", entries, err)
	}
}

// TestSkipsDeadEntries: an entry whose heartbeat is older than the TTL
// (its sidecar died without deregistering) is not listed.
func TestSkipsDeadEntries(t *testing.T) {
	runtest.Setup(t)
	file, _ := selfhosted.RegistryFile()
	ctx := context.Background()
	live := nrsqlite.New(components.Deps{})
	if err := live.Init(ctx, components.Metadata{Properties: map[string]string{"connectionString": file}}); err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := live.Register(ctx, nameresolution.Instance{InstanceID: "live-1", AppID: "live", Address: "127.0.0.1:1", HTTPPort: 11, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := time.Now().Add(-time.Hour).UnixMilli()
	if _, err := db.Exec(`INSERT INTO instances (instance_id, app_id, namespace, address, started_at, heartbeat_at) VALUES ('dead-1', 'dead', 'default', '127.0.0.1:2', ?, ?)`, old, old); err != nil {
		t.Fatal(err)
	}
	ins, err := list.InstancesIn(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].AppID != "live" || ins[0].HTTPPort != 11 {
		t.Fatalf("instances %+v, want only the live one", ins)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 59 * time.Second: "59s", time.Minute: "1m", 61 * time.Minute: "1h",
		25 * time.Hour: "1d", 72*time.Hour + time.Minute: "3d",
	} {
		if got := list.Age(d); got != want {
			t.Errorf("Age(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestTableTruncatesLongCommands(t *testing.T) {
	var b strings.Builder
	e := list.Entry{AppID: "x", Command: strings.Repeat("c", 100), Age: "1s"}
	if err := list.Print(&b, "table", []list.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), strings.Repeat("c", 37)+"...") || strings.Contains(b.String(), strings.Repeat("c", 38)) {
		t.Fatalf("table:\n%s", b.String())
	}
}
