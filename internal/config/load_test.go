package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
)

// component returns a minimal valid Component document named name.
func component(name string) string {
	return fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: state.in-memory
  version: v1
`, name)
}

// wantErr describes an expected ResourceError: File, Kind and Name must be
// equal, Err must contain ErrSub.
type wantErr struct {
	File, Kind, Name, ErrSub string
}

func checkErrors(t *testing.T, got []config.ResourceError, want []wantErr) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d errors %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i, w := range want {
		g := got[i]
		if g.File != w.File || g.Kind != w.Kind || g.Name != w.Name || !strings.Contains(g.Err, w.ErrSub) {
			t.Errorf("error %d = {File:%q Kind:%q Name:%q Err:%q}, want {File:%q Kind:%q Name:%q Err containing %q}",
				i, g.File, g.Kind, g.Name, g.Err, w.File, w.Kind, w.Name, w.ErrSub)
		}
	}
}

func names(cs []config.Component) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestParseFileFullComponent(t *testing.T) {
	const doc = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
  namespace: prod
spec:
  type: state.redis
  version: v2
  ignoreErrors: true
  initTimeout: 10s
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    secretKeyRef:
      name: redis-secret
      key: password
  - name: redisUsername
    envRef: REDIS_USER
auth:
  secretStore: vault
scopes:
- other
- " app1 "
`
	res := config.ParseFile("dir/state.yaml", []byte(doc), config.LoadOptions{AppID: "app1", Namespace: "prod"})
	checkErrors(t, res.Errors, nil)
	if len(res.Skipped) != 0 {
		t.Fatalf("skipped = %q, want none", res.Skipped)
	}
	want := []config.Component{{
		ObjectMeta: config.ObjectMeta{Name: "statestore", Namespace: "prod"},
		Spec: config.ComponentSpec{
			Type:         "state.redis",
			Version:      "v2",
			IgnoreErrors: true,
			InitTimeout:  "10s",
			Metadata: []config.MetadataItem{
				{Name: "redisHost", Value: config.DynamicValue{String: "localhost:6379", Set: true}},
				{Name: "redisPassword", SecretKeyRef: config.SecretKeyRef{Name: "redis-secret", Key: "password"}},
				{Name: "redisUsername", EnvRef: "REDIS_USER"},
			},
		},
		Auth:   config.Auth{SecretStore: "vault"},
		Scopes: []string{"other", " app1 "},
		File:   "dir/state.yaml",
	}}
	if !reflect.DeepEqual(res.Components, want) {
		t.Fatalf("components:\ngot  %+v\nwant %+v", res.Components, want)
	}
	c := res.Components[0]
	if c.Kind() != "state" || c.Version() != "v2" {
		t.Errorf("Kind, Version = %q, %q; want state, v2", c.Kind(), c.Version())
	}
}

func TestParseFile(t *testing.T) {
	const file = "res/file.yaml"
	doc2 := file + " (document 2)"
	cases := []struct {
		name     string
		data     string
		opts     config.LoadOptions
		want     []string // component names
		wantErrs []wantErr
		skipped  []string
	}{
		{name: "single document", data: component("a"), want: []string{"a"}},
		{name: "multi document", data: component("a") + "---\n" + component("b") + "---\n" + component("c"), want: []string{"a", "b", "c"}},
		{name: "empty file", data: ""},
		{name: "only separators", data: "---\n---\n...\n"},
		{name: "only comments", data: "# nothing here\n"},
		{name: "empty documents between", data: "---\n---\n" + component("a") + "---\n# comment\n---\n" + component("b"), want: []string{"a", "b"}},
		{name: "null document", data: "null\n---\n" + component("a"), want: []string{"a"}},
		{name: "json", data: `{"apiVersion":"dapr.io/v1alpha1","kind":"Component","metadata":{"name":"j"},"spec":{"type":"state.in-memory","version":"v1","metadata":[{"name":"n","value":7}]}}`, want: []string{"j"}},
		{
			name:     "invalid yaml",
			data:     "apiVersion: [\n",
			wantErrs: []wantErr{{File: file, ErrSub: "invalid YAML"}},
		},
		{
			name:     "invalid yaml in second document keeps the first",
			data:     component("a") + "---\nkind: Component\n  bad: indentation\n",
			want:     []string{"a"},
			wantErrs: []wantErr{{File: doc2, ErrSub: "invalid YAML"}},
		},
		{
			name:     "tab indentation",
			data:     "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n\tname: x\n",
			wantErrs: []wantErr{{File: file, ErrSub: "invalid YAML"}},
		},
		{
			name:     "scalar document",
			data:     "just a string\n",
			wantErrs: []wantErr{{File: file, ErrSub: "not a resource"}},
		},
		{
			name:     "list document",
			data:     "- a\n- b\n",
			wantErrs: []wantErr{{File: file, ErrSub: "not a resource"}},
		},
		{
			name:     "metadata is a string",
			data:     "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: statestore\n",
			wantErrs: []wantErr{{File: file, ErrSub: "not a resource"}},
		},
		{
			name:     "missing kind",
			data:     "apiVersion: dapr.io/v1alpha1\nmetadata:\n  name: x\nspec:\n  type: state.redis\n",
			wantErrs: []wantErr{{File: file, Name: "x", ErrSub: "missing kind"}},
		},
		{
			name:     "unknown kind",
			data:     "apiVersion: dapr.io/v1alpha1\nkind: Komponent\nmetadata:\n  name: x\nspec:\n  type: state.redis\n",
			wantErrs: []wantErr{{File: file, Kind: "Komponent", Name: "x", ErrSub: `unknown kind "Komponent"`}},
		},
		{
			name:     "wrong apiVersion",
			data:     strings.Replace(component("x"), "dapr.io/v1alpha1", "dapr.io/v2alpha1", 1),
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: `apiVersion "dapr.io/v2alpha1" is not dapr.io/v1alpha1`}},
		},
		{
			name:     "missing apiVersion",
			data:     strings.Replace(component("x"), "apiVersion: dapr.io/v1alpha1\n", "", 1),
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: `apiVersion ""`}},
		},
		{
			name:     "missing name",
			data:     "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {}\nspec:\n  type: state.redis\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", ErrSub: "missing metadata.name"}},
		},
		{
			name:     "missing spec.type",
			data:     "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec:\n  version: v1\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: "missing spec.type"}},
		},
		{
			name:     "missing spec",
			data:     "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: "missing spec.type"}},
		},
		{
			name:     "spec is a list",
			data:     "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec: []\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: "invalid spec"}},
		},
		{
			name: "bad type forms",
			data: strings.Replace(component("a"), "state.in-memory", "state", 1) + "---\n" +
				strings.Replace(component("b"), "state.in-memory", "state.", 1) + "---\n" +
				strings.Replace(component("c"), "state.in-memory", ".redis", 1),
			wantErrs: []wantErr{
				{File: file, Kind: "Component", Name: "a", ErrSub: `spec.type "state" is not of the form <kind>.<name>`},
				{File: doc2, Kind: "Component", Name: "b", ErrSub: `spec.type "state." is not of the form`},
				{File: file + " (document 3)", Kind: "Component", Name: "c", ErrSub: `spec.type ".redis" is not of the form`},
			},
		},
		{
			name:     "metadata item without a name",
			data:     component("x") + "  metadata:\n  - value: v\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: "spec.metadata[0] has no name"}},
		},
		{
			name:     "duplicate metadata name, any case",
			data:     component("x") + "  metadata:\n  - name: redisHost\n    value: a\n  - name: REDISHOST\n    value: b\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: `spec.metadata "REDISHOST" is set twice`}},
		},
		{
			name:     "value and secretKeyRef",
			data:     component("x") + "  metadata:\n  - name: password\n    value: a\n    secretKeyRef:\n      name: s\n      key: k\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: `spec.metadata "password" sets more than one of value, secretKeyRef and envRef`}},
		},
		{
			name:     "value and envRef",
			data:     component("x") + "  metadata:\n  - name: password\n    value: 0\n    envRef: PW\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: "more than one of"}},
		},
		{
			name:     "secretKeyRef and envRef",
			data:     component("x") + "  metadata:\n  - name: password\n    envRef: PW\n    secretKeyRef:\n      name: s\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: "more than one of"}},
		},
		{
			name:     "bad initTimeout",
			data:     component("x") + "  initTimeout: soon\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: `spec.initTimeout "soon" is not a positive duration`}},
		},
		{
			name:     "negative initTimeout",
			data:     component("x") + "  initTimeout: -1s\n",
			wantErrs: []wantErr{{File: file, Kind: "Component", Name: "x", ErrSub: `spec.initTimeout "-1s"`}},
		},
		{
			name: "good initTimeout",
			data: component("x") + "  initTimeout: 250ms\n",
			want: []string{"x"},
		},
		{
			name:     "duplicate name in one file",
			data:     component("x") + "---\n" + component("x"),
			want:     []string{"x"},
			wantErrs: []wantErr{{File: doc2, Kind: "Component", Name: "x", ErrSub: `duplicate component name "x" (first defined in ` + file + ")"}},
		},
		{
			name:     "bad document does not stop the next ones",
			data:     component("a") + "---\nkind: Nope\nmetadata:\n  name: n\n---\n" + component("b"),
			want:     []string{"a", "b"},
			wantErrs: []wantErr{{File: doc2, Kind: "Nope", Name: "n", ErrSub: "unknown kind"}},
		},
		{
			name:    "scopes exclude other apps",
			data:    component("a") + "scopes:\n- other\n- third\n---\n" + component("b") + "scopes: [me]\n",
			opts:    config.LoadOptions{AppID: "me"},
			want:    []string{"b"},
			skipped: []string{`Component/a (scopes [other third] do not include "me")`},
		},
		{
			name: "scoped-out component does not count as a duplicate",
			data: component("a") + "scopes: [other]\n---\n" + component("a") + "scopes: [me]\n",
			opts: config.LoadOptions{AppID: "me"},
			want: []string{"a"},
			skipped: []string{
				`Component/a (scopes [other] do not include "me")`,
			},
		},
		{
			name:    "namespace mismatch",
			data:    strings.Replace(component("a"), "  name: a\n", "  name: a\n  namespace: prod\n", 1) + "---\n" + component("b"),
			opts:    config.LoadOptions{AppID: "me", Namespace: "dev"},
			want:    []string{"b"},
			skipped: []string{"Component/a (namespace prod, sidecar is in dev)"},
		},
		{
			name: "namespace match",
			data: strings.Replace(component("a"), "  name: a\n", "  name: a\n  namespace: dev\n", 1),
			opts: config.LoadOptions{AppID: "me", Namespace: "dev"},
			want: []string{"a"},
		},
		{
			name: "other kinds are neither errors nor components",
			data: "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: p\n  topic: t\n  routes:\n    default: /t\n---\n" +
				"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec: {}\n---\n" +
				"apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  policies: {}\n---\n" +
				"apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: h\nspec:\n  baseUrl: http://x\n---\n" +
				component("a"),
			want: []string{"a"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := config.ParseFile(file, []byte(c.data), c.opts)
			if got := names(res.Components); !reflect.DeepEqual(got, c.want) {
				t.Errorf("components = %q, want %q", got, c.want)
			}
			checkErrors(t, res.Errors, c.wantErrs)
			if !reflect.DeepEqual(res.Skipped, c.skipped) {
				t.Errorf("skipped = %q, want %q", res.Skipped, c.skipped)
			}
			for _, comp := range res.Components {
				if !strings.HasPrefix(comp.File, file) {
					t.Errorf("component %s File = %q, want %s", comp.Name, comp.File, file)
				}
			}
		})
	}
}

func TestParseFileDocumentFile(t *testing.T) {
	res := config.ParseFile("f.yaml", []byte(component("a")+"---\n"+component("b")), config.LoadOptions{})
	got := []string{res.Components[0].File, res.Components[1].File}
	if want := []string{"f.yaml", "f.yaml (document 2)"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("component files = %q, want %q", got, want)
	}
}

func TestDynamicValue(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"string", `hello`, "hello"},
		{"quoted string", `"5"`, "5"},
		{"integer", `5`, "5"},
		{"integer kept verbatim", `0x1F`, "0x1F"},
		{"float kept verbatim", `1.50`, "1.50"},
		{"bool", `true`, "true"},
		{"yaml 1.1 bool spelling", `yes`, "yes"},
		{"empty string", `""`, ""},
		{"map", `{b: [x, 2], a: 1}`, `{"a":1,"b":["x",2]}`},
		{"list", `[1, true, "s"]`, `[1,true,"s"]`},
		{"nested block map", "\n      host: h\n      ports:\n      - 1\n      - 2", `{"host":"h","ports":[1,2]}`},
		{"multi-line literal", "|\n      line1\n      line2", "line1\nline2\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := component("x") + "  metadata:\n  - name: v\n    value: " + c.yaml + "\n"
			res := config.ParseFile("f.yaml", []byte(doc), config.LoadOptions{})
			checkErrors(t, res.Errors, nil)
			if len(res.Components) != 1 || len(res.Components[0].Spec.Metadata) != 1 {
				t.Fatalf("components = %+v, want one with one metadata item", res.Components)
			}
			v := res.Components[0].Spec.Metadata[0].Value
			if v.String != c.want || !v.Set {
				t.Fatalf("value = %q (set %v), want %q (set true)", v.String, v.Set, c.want)
			}
		})
	}
}

func TestDynamicValueUnencodable(t *testing.T) {
	// A map with a non-string key cannot become JSON: it is an error naming
	// the component, not a panic or a silently wrong value.
	doc := component("x") + "  metadata:\n  - name: v\n    value: {1: a}\n"
	res := config.ParseFile("f.yaml", []byte(doc), config.LoadOptions{})
	if len(res.Components) != 0 {
		t.Fatalf("components = %+v, want none", res.Components)
	}
	checkErrors(t, res.Errors, []wantErr{{File: "f.yaml", Kind: "Component", Name: "x", ErrSub: "invalid spec"}})
}

func TestResourceErrorString(t *testing.T) {
	cases := []struct {
		name string
		err  config.ResourceError
		want string
	}{
		{"file only", config.ResourceError{File: "a.yaml", Err: "invalid YAML: x"}, "a.yaml: invalid YAML: x"},
		{"named", config.ResourceError{File: "a.yaml", Kind: "Component", Name: "s", Err: "missing spec.type"}, "a.yaml: Component s: missing spec.type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.err.Error(); got != c.want {
				t.Fatalf("Error() = %q, want %q", got, c.want)
			}
		})
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Run("extensions and name order", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"c.yaml":         component("c"),
			"a.yml":          component("a"),
			"b.json":         `{"apiVersion":"dapr.io/v1alpha1","kind":"Component","metadata":{"name":"b"},"spec":{"type":"state.in-memory"}}`,
			"d.YAML":         component("d"),
			"e.txt":          component("e"),
			"f.yaml.bak":     component("f"),
			"README.md":      "# not yaml: [",
			"noext":          component("g"),
			"sub.yaml/x.yml": component("h"), // a directory, and not recursive
			"sub/i.yaml":     component("i"),
		})
		res := config.Load([]string{dir}, config.LoadOptions{AppID: "me"})
		checkErrors(t, res.Errors, nil)
		if got, want := names(res.Components), []string{"a", "b", "c", "d"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("components = %q, want %q", got, want)
		}
		if got, want := res.Components[1].File, filepath.Join(dir, "b.json"); got != want {
			t.Fatalf("File = %q, want %q", got, want)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope")
		good := t.TempDir()
		writeFiles(t, good, map[string]string{"a.yaml": component("a")})
		res := config.Load([]string{missing, good}, config.LoadOptions{})
		checkErrors(t, res.Errors, []wantErr{{File: missing, ErrSub: "no such file or directory"}})
		if got := names(res.Components); !reflect.DeepEqual(got, []string{"a"}) {
			t.Fatalf("components = %q, want [a]: the other path still loads", got)
		}
	})
	t.Run("path is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "c.yaml")
		writeFiles(t, filepath.Dir(f), map[string]string{"c.yaml": component("a")})
		res := config.Load([]string{f}, config.LoadOptions{})
		checkErrors(t, res.Errors, []wantErr{{File: f, ErrSub: "not a directory"}})
	})
	t.Run("no paths", func(t *testing.T) {
		res := config.Load(nil, config.LoadOptions{})
		if len(res.Components)+len(res.Errors)+len(res.Skipped) != 0 {
			t.Fatalf("Load(nil) = %+v, want empty", res)
		}
	})
	t.Run("duplicate across files names the first file", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"a.yaml": component("statestore"),
			"b.yaml": component("other") + "---\n" + component("statestore"),
		})
		res := config.Load([]string{dir}, config.LoadOptions{})
		if got := names(res.Components); !reflect.DeepEqual(got, []string{"statestore", "other"}) {
			t.Fatalf("components = %q", got)
		}
		if res.Components[0].File != filepath.Join(dir, "a.yaml") {
			t.Fatalf("first statestore from %q, want a.yaml", res.Components[0].File)
		}
		checkErrors(t, res.Errors, []wantErr{{
			File: filepath.Join(dir, "b.yaml") + " (document 2)", Kind: "Component", Name: "statestore",
			ErrSub: `duplicate component name "statestore" (first defined in ` + filepath.Join(dir, "a.yaml") + ")",
		}})
	})
	t.Run("duplicate across directories", func(t *testing.T) {
		d1, d2 := t.TempDir(), t.TempDir()
		writeFiles(t, d1, map[string]string{"z.yaml": component("s")})
		writeFiles(t, d2, map[string]string{"a.yaml": component("s")})
		res := config.Load([]string{d1, d2}, config.LoadOptions{})
		if got := names(res.Components); !reflect.DeepEqual(got, []string{"s"}) || res.Components[0].File != filepath.Join(d1, "z.yaml") {
			t.Fatalf("components = %+v, want s from the first path", res.Components)
		}
		checkErrors(t, res.Errors, []wantErr{{File: filepath.Join(d2, "a.yaml"), Kind: "Component", Name: "s", ErrSub: filepath.Join(d1, "z.yaml")}})
	})
	t.Run("errors in several files", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"1-bad.yaml":   "kind: [",
			"2-good.yaml":  component("good"),
			"3-bad.yaml":   component("bad") + "  initTimeout: forever\n",
			"4-scoped.yml": component("elsewhere") + "scopes:\n- b\n",
		})
		res := config.Load([]string{dir}, config.LoadOptions{AppID: "a"})
		if got := names(res.Components); !reflect.DeepEqual(got, []string{"good"}) {
			t.Fatalf("components = %q, want [good]", got)
		}
		checkErrors(t, res.Errors, []wantErr{
			{File: filepath.Join(dir, "1-bad.yaml"), ErrSub: "invalid YAML"},
			{File: filepath.Join(dir, "3-bad.yaml"), Kind: "Component", Name: "bad", ErrSub: "spec.initTimeout"},
		})
		if want := []string{`Component/elsewhere (scopes [b] do not include "a")`}; !reflect.DeepEqual(res.Skipped, want) {
			t.Fatalf("skipped = %q, want %q", res.Skipped, want)
		}
	})
}

func TestInScope(t *testing.T) {
	cases := []struct {
		name   string
		scopes []string
		app    string
		want   bool
	}{
		{"no scopes", nil, "a", true},
		{"empty scopes", []string{}, "a", true},
		{"listed", []string{"b", "a"}, "a", true},
		{"listed with spaces", []string{" a "}, "a", true},
		{"not listed", []string{"b"}, "a", false},
		{"case matters", []string{"A"}, "a", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := config.InScope(c.scopes, c.app); got != c.want {
				t.Fatalf("InScope(%q, %q) = %v, want %v", c.scopes, c.app, got, c.want)
			}
		})
	}
}

func TestComponentAccessors(t *testing.T) {
	cases := []struct {
		name        string
		spec        config.ComponentSpec
		wantKind    string
		wantVersion string
		wantTimeout time.Duration
		wantErr     bool
	}{
		{"defaults", config.ComponentSpec{Type: "state.redis"}, "state", "v1", 7 * time.Second, false},
		{"dotted impl", config.ComponentSpec{Type: "secretstores.local.file", Version: "v2", InitTimeout: "1m"}, "secretstores", "v2", time.Minute, false},
		{"zero timeout", config.ComponentSpec{Type: "state.redis", InitTimeout: "0s"}, "state", "v1", 0, true},
		{"no unit", config.ComponentSpec{Type: "state.redis", InitTimeout: "5"}, "state", "v1", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			comp := config.Component{Spec: c.spec}
			if got := comp.Kind(); got != c.wantKind {
				t.Errorf("Kind() = %q, want %q", got, c.wantKind)
			}
			if got := comp.Version(); got != c.wantVersion {
				t.Errorf("Version() = %q, want %q", got, c.wantVersion)
			}
			got, err := comp.InitTimeout(7 * time.Second)
			if (err != nil) != c.wantErr || got != c.wantTimeout {
				t.Errorf("InitTimeout = %v, %v; want %v, error %v", got, err, c.wantTimeout, c.wantErr)
			}
		})
	}
}
