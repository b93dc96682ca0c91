package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/config"
)

// FuzzParseFile feeds arbitrary bytes to the resource loader. It must never
// panic, and every result must be usable: components are valid, every error
// names the file, and parsing is deterministic. Seeds: f.Add below and
// testdata/fuzz/FuzzParseFile.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte(component("statestore")))
	f.Add([]byte(component("a") + "---\n" + component("b") + "scopes: [other]\n"))
	f.Add([]byte(`{"apiVersion":"dapr.io/v1alpha1","kind":"Component","metadata":{"name":"j"},"spec":{"type":"state.in-memory","metadata":[{"name":"n","value":{"a":[1,2]}}]}}`))
	f.Add([]byte(component("x") + "  initTimeout: 1s\n  metadata:\n  - name: a\n    value: 5\n  - name: b\n    secretKeyRef: {name: s, key: k}\n  - name: c\n    envRef: E\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("kind: Subscription\n---\nkind: [\n"))
	f.Add([]byte(""))
	f.Add([]byte(fullResiliency))

	const file = "res/fuzz.yaml"
	opts := config.LoadOptions{AppID: "app", Namespace: "ns"}
	f.Fuzz(func(t *testing.T, data []byte) {
		res := config.ParseFile(file, data, opts)
		if res == nil {
			t.Fatal("ParseFile returned nil")
		}
		seen := map[string]bool{}
		for _, c := range res.Components {
			if !strings.HasPrefix(c.File, file) {
				t.Errorf("component %q has File %q, want prefix %q", c.Name, c.File, file)
			}
			if c.Name == "" {
				t.Errorf("component without a name: %+v", c)
			}
			if seen[c.Name] {
				t.Errorf("component %q returned twice", c.Name)
			}
			seen[c.Name] = true
			kind, impl, ok := strings.Cut(c.Spec.Type, ".")
			if !ok || kind == "" || impl == "" {
				t.Errorf("component %q has invalid type %q", c.Name, c.Spec.Type)
			}
			if _, err := c.InitTimeout(1); err != nil {
				t.Errorf("component %q was accepted with a bad initTimeout: %v", c.Name, err)
			}
			if !config.InScope(c.Scopes, opts.AppID) {
				t.Errorf("component %q is out of scope %q but was returned", c.Name, c.Scopes)
			}
			if c.Namespace != "" && c.Namespace != opts.Namespace {
				t.Errorf("component %q is in namespace %q but was returned", c.Name, c.Namespace)
			}
		}
		for _, e := range res.Errors {
			if !strings.HasPrefix(e.File, file) {
				t.Errorf("error without the file: %+v", e)
			}
			if e.Err == "" {
				t.Errorf("error without a reason: %+v", e)
			}
			if !strings.HasPrefix(e.Error(), e.File+": ") {
				t.Errorf("Error() = %q does not start with the file", e.Error())
			}
		}
		if again := config.ParseFile(file, data, opts); !reflect.DeepEqual(res, again) {
			t.Errorf("ParseFile is not deterministic:\n%+v\n%+v", res, again)
		}
	})
}
