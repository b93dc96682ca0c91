package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfiguration(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.yaml", `apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: ignored}
spec: {type: state.in-memory}
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: appconfig}
spec:
  tracing: {samplingRate: "1"}
  secrets:
    scopes:
    - storeName: vault
      defaultAccess: deny
      allowedSecrets: [db-password]
  nameResolution:
    component: mdns
    configuration: {selfRegister: true}
  features:
  - {name: HotReload, enabled: true}
`)
	b := writeFile(t, dir, "b.yaml", `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: override}
spec:
  nameResolution: {component: sqlite}
`)
	c, err := LoadConfiguration([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	wantScopes := []SecretScope{{StoreName: "vault", DefaultAccess: "deny", AllowedSecrets: []string{"db-password"}}}
	if !reflect.DeepEqual(c.Spec.Secrets.Scopes, wantScopes) {
		t.Errorf("scopes = %+v, want %+v (kept from the first file)", c.Spec.Secrets.Scopes, wantScopes)
	}
	if c.Spec.NameResolution.Component != "sqlite" || c.Spec.NameResolution.Configuration != nil {
		t.Errorf("nameResolution = %+v, want the second file's", c.Spec.NameResolution)
	}
	if !c.FeatureEnabled("HotReload") || c.FeatureEnabled("Other") || c.Name != "override" {
		t.Errorf("features/name = %+v %q", c.Spec.Features, c.Name)
	}
	if empty, err := LoadConfiguration(nil); err != nil || empty.Spec.NameResolution.Component != "" {
		t.Fatalf("no files = %+v, %v", empty, err)
	}
}

func TestLoadConfigurationErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"no configuration": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: x}\n",
		"invalid yaml":     "kind: [",
		"bad apiVersion":   "apiVersion: v2\nkind: Configuration\nmetadata: {name: c}\n",
		"bad access":       "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n  secrets:\n    scopes: [{storeName: s, defaultAccess: maybe}]\n",
		"no store name":    "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n  secrets:\n    scopes: [{defaultAccess: deny}]\n",
		"wrong types":      "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n  features: {name: x}\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			f := writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", body)
			_, err := LoadConfiguration([]string{f})
			if err == nil || !strings.Contains(err.Error(), f) {
				t.Fatalf("error = %v, want one naming %s", err, f)
			}
		})
	}
	if _, err := LoadConfiguration([]string{filepath.Join(dir, "missing.yaml")}); err == nil {
		t.Fatal("missing file accepted")
	}
}
