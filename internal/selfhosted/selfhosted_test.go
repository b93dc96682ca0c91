package selfhosted_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

func TestHome(t *testing.T) {
	t.Run("MECHA_HOME wins", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("MECHA_HOME", dir)
		t.Setenv("HOME", t.TempDir())
		if got, err := selfhosted.Home(); err != nil || got != dir {
			t.Fatalf("Home() = %q, %v; want %q", got, err, dir)
		}
	})
	t.Run("defaults to ~/.mecha", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("MECHA_HOME", "")
		t.Setenv("HOME", home)
		if got, err := selfhosted.Home(); err != nil || got != filepath.Join(home, ".mecha") {
			t.Fatalf("Home() = %q, %v; want %q", got, err, filepath.Join(home, ".mecha"))
		}
	})
	t.Run("no home at all", func(t *testing.T) {
		t.Setenv("MECHA_HOME", "")
		t.Setenv("HOME", "")
		if got, err := selfhosted.Home(); err == nil || !strings.Contains(err.Error(), "set MECHA_HOME") {
			t.Fatalf("Home() = %q, %v; want an error suggesting MECHA_HOME", got, err)
		}
	})
}

func TestLayoutAt(t *testing.T) {
	got := selfhosted.LayoutAt("/h")
	want := selfhosted.Layout{Home: "/h", Components: "/h/components", Data: "/h/data", Logs: "/h/logs"}
	if got != want {
		t.Fatalf("LayoutAt = %+v, want %+v", got, want)
	}
}

func TestEnsureDefaults(t *testing.T) {
	l := selfhosted.LayoutAt(filepath.Join(t.TempDir(), "nested", ".mecha"))
	statestore := filepath.Join(l.Components, "statestore.yaml")

	files, err := selfhosted.EnsureDefaults(l)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"statestore.yaml", "lockstore.yaml", "configstore.yaml", "pubsub.yaml"}
	if len(files) != len(wantFiles) || files[0].Path != statestore || !strings.Contains(files[0].What, "state.sqlite") {
		t.Fatalf("first EnsureDefaults = %+v, want %v created", files, wantFiles)
	}
	for i, f := range files {
		if f.Path != filepath.Join(l.Components, wantFiles[i]) || !f.Created {
			t.Fatalf("default %d = %+v, want %s created", i, f, wantFiles[i])
		}
	}
	for _, d := range []string{l.Home, l.Components, l.Data} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v, want a directory", d, err)
		}
	}
	first, err := os.ReadFile(statestore)
	if err != nil {
		t.Fatal(err)
	}

	// Again: nothing is created, nothing changes.
	files, err = selfhosted.EnsureDefaults(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Created {
			t.Fatalf("second EnsureDefaults = %+v, want every default kept", files)
		}
	}
	if again, _ := os.ReadFile(statestore); string(again) != string(first) {
		t.Fatalf("file rewritten:\n%s\nwas:\n%s", again, first)
	}

	// A user edit is never overwritten.
	edited := strings.Replace(string(first), "state.sqlite", "state.redis", 1)
	if err := os.WriteFile(statestore, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if files, err = selfhosted.EnsureDefaults(l); err != nil || files[0].Created {
		t.Fatalf("EnsureDefaults after an edit = %+v, %v", files, err)
	}
	if got, _ := os.ReadFile(statestore); string(got) != edited {
		t.Fatalf("edited file overwritten:\n%s", got)
	}

	// A deleted default comes back.
	if err := os.Remove(statestore); err != nil {
		t.Fatal(err)
	}
	if files, err = selfhosted.EnsureDefaults(l); err != nil || !files[0].Created {
		t.Fatalf("EnsureDefaults after a delete = %+v, %v", files, err)
	}
	if got, _ := os.ReadFile(statestore); string(got) != string(first) {
		t.Fatalf("re-created file differs:\n%s", got)
	}
}

// TestDefaultComponentParses: the generated YAML loads as a state.sqlite
// component whose database lives in the data directory, also when the home
// path needs quoting in YAML.
func TestDefaultComponentParses(t *testing.T) {
	for _, name := range []string{".mecha", `my "home" ü: #x`, "back\\slash"} {
		t.Run(name, func(t *testing.T) {
			l := selfhosted.LayoutAt(filepath.Join(t.TempDir(), name))
			if _, err := selfhosted.EnsureDefaults(l); err != nil {
				t.Fatal(err)
			}
			res := config.Load([]string{l.Components}, config.LoadOptions{AppID: "anyapp", Namespace: "default"})
			if len(res.Errors) != 0 || len(res.Components) != 4 {
				t.Fatalf("loading the defaults: components %+v, errors %+v", res.Components, res.Errors)
			}
			types := map[string]string{}
			dbs := map[string]string{}
			for _, c := range res.Components {
				types[c.Name] = c.Spec.Type
				for _, m := range c.Spec.Metadata {
					if m.Name == "connectionString" || m.Name == "natsURL" {
						dbs[c.Name] = m.Value.String
					}
				}
			}
			wantTypes := map[string]string{"statestore": "state.sqlite", "lockstore": "lock.sqlite", "configstore": "configuration.sqlite", "pubsub": "pubsub.jetstream"}
			wantDBs := map[string]string{
				"statestore": filepath.Join(l.Data, "state.db"), "lockstore": filepath.Join(l.Data, "lock.db"), "configstore": filepath.Join(l.Data, "configuration.db"),
				"pubsub": "nats://127.0.0.1:50007",
			}
			if !reflect.DeepEqual(types, wantTypes) || !reflect.DeepEqual(dbs, wantDBs) {
				t.Fatalf("defaults = %v %v, want %v %v", types, dbs, wantTypes, wantDBs)
			}
			var c config.Component
			for _, comp := range res.Components {
				if comp.Name == "statestore" {
					c = comp
				}
			}
			if c.Spec.Type != "state.sqlite" || c.Version() != "v1" || len(c.Scopes) != 0 {
				t.Fatalf("default component = %+v", c)
			}
			md := map[string]string{}
			for _, m := range c.Spec.Metadata {
				md[m.Name] = m.Value.String
			}
			want := map[string]string{
				"connectionString": filepath.Join(l.Data, "state.db"),
				"actorStateStore":  "true",
			}
			if !reflect.DeepEqual(md, want) {
				t.Fatalf("metadata = %q, want %q", md, want)
			}
			if !strings.HasPrefix(md["connectionString"], l.Data+string(filepath.Separator)) {
				t.Fatalf("connectionString %q is not under %q", md["connectionString"], l.Data)
			}
		})
	}
}

func TestEnsureDefaultsErrors(t *testing.T) {
	t.Run("home is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if files, err := selfhosted.EnsureDefaults(selfhosted.LayoutAt(f)); err == nil {
			t.Fatalf("EnsureDefaults under a file = %+v, want an error", files)
		}
	})
	t.Run("components dir not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		l := selfhosted.LayoutAt(t.TempDir())
		if err := os.MkdirAll(l.Components, 0o555); err != nil {
			t.Fatal(err)
		}
		if files, err := selfhosted.EnsureDefaults(l); err == nil {
			t.Fatalf("EnsureDefaults in a read-only dir = %+v, want an error", files)
		}
	})
}
