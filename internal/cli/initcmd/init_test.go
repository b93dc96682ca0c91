package initcmd_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/cli/initcmd"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

func runInit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := initcmd.Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// noControlPlane keeps init from starting the local control plane, which
// these tests do not ask for (internal/cli/controlplane tests init with
// it, on the built binary).
func noControlPlane(t *testing.T) { t.Setenv(selfhosted.ControlPlaneEnv, "off") }

func TestInit(t *testing.T) {
	home := filepath.Join(t.TempDir(), "mecha home")
	t.Setenv("MECHA_HOME", home)
	t.Setenv("HOME", t.TempDir())
	noControlPlane(t)
	statestore := filepath.Join(home, "components", "statestore.yaml")

	out, err := runInit(t)
	if err != nil {
		t.Fatalf("mecha init: %v\n%s", err, out)
	}
	wantLines := []string{
		"Mecha home: " + home,
		"  data:       " + filepath.Join(home, "data"),
		"  created:    " + statestore + ": state store \"statestore\" (state.sqlite, embedded, actor state store)",
		"  created:    " + filepath.Join(home, "components", "lockstore.yaml") + ": lock store \"lockstore\" (lock.sqlite, embedded)",
		"  created:    " + filepath.Join(home, "components", "configstore.yaml") + ": configuration store \"configstore\" (configuration.sqlite, embedded)",
		"  created:    " + filepath.Join(home, "components", "pubsub.yaml") + ": pub/sub \"pubsub\" (pubsub.jetstream, the local control plane's embedded broker at nats://127.0.0.1:50007)",
		"  control plane: not started (MECHA_CONTROL_PLANE=off)",
		"Ready: `mecha run --app-id myapp -- <your command>` uses these defaults.",
	}
	if got := strings.Split(strings.TrimRight(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(wantLines, "\n") {
		t.Fatalf("first run printed:\n%s\nwant:\n%s", out, strings.Join(wantLines, "\n"))
	}
	if _, err := os.Stat(statestore); err != nil {
		t.Fatalf("init did not create %s: %v", statestore, err)
	}
	if fi, err := os.Stat(filepath.Join(home, "data")); err != nil || !fi.IsDir() {
		t.Fatalf("data dir: %v", err)
	}

	// Second run: kept, not created, and the user's edit survives.
	if err := os.WriteFile(statestore, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runInit(t)
	if err != nil {
		t.Fatalf("second mecha init: %v\n%s", err, out)
	}
	if want := "  kept (already present): " + statestore + ": "; !strings.Contains(out, want) {
		t.Fatalf("second run printed:\n%s\nwant a line starting %q", out, want)
	}
	if strings.Contains(out, "created:") {
		t.Fatalf("second run claims to have created something:\n%s", out)
	}
	if b, _ := os.ReadFile(statestore); string(b) != "# mine\n" {
		t.Fatalf("init overwrote the edited file: %q", b)
	}
}

func TestInitUsesHomeDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MECHA_HOME", "")
	t.Setenv("HOME", home)
	noControlPlane(t)
	out, err := runInit(t)
	if err != nil {
		t.Fatalf("mecha init: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "Mecha home: "+filepath.Join(home, ".mecha")+"\n") {
		t.Fatalf("output:\n%s\nwant the home under $HOME/.mecha", out)
	}
	if _, err := os.Stat(filepath.Join(home, ".mecha", "components", "statestore.yaml")); err != nil {
		t.Fatal(err)
	}
}

func TestInitErrors(t *testing.T) {
	noControlPlane(t)
	t.Run("arguments", func(t *testing.T) {
		t.Setenv("MECHA_HOME", t.TempDir())
		if out, err := runInit(t, "extra"); err == nil || !strings.Contains(err.Error(), `unknown command "extra"`) {
			t.Fatalf("mecha init extra = %v\n%s", err, out)
		}
	})
	t.Run("home is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("MECHA_HOME", f)
		if out, err := runInit(t); err == nil {
			t.Fatalf("mecha init with MECHA_HOME a file succeeded:\n%s", out)
		}
	})
}

// TestInitControlPlaneFails: when the control plane cannot start (here: a
// test binary is never started as one), init still writes the defaults but
// fails, naming the cause.
func TestInitControlPlaneFails(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MECHA_HOME", home)
	t.Setenv(selfhosted.ControlPlaneEnv, "")
	out, err := runInit(t)
	if err == nil || !strings.Contains(err.Error(), "the local control plane did not start") {
		t.Fatalf("mecha init = %v, want the control plane's failure\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(home, "components", "pubsub.yaml")); err != nil {
		t.Fatalf("defaults not written: %v", err)
	}
}
