package sdk

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// sdkSecretsJSON is the JSON behind the local.file stores of these tests.
const sdkSecretsJSON = `{
  "db": {"user": "admin", "password": "pa:ss"},
  "api": "t0k3n",
  "nested": {"a": {"b": "deep"}},
  "unicode": "pässwort ✓"
}`

// secretsResources writes sdkSecretsJSON into dir and returns Component
// documents: files (local.file, multiValued), flat (local.file, flattened)
// and env (local.env over variables starting with envPrefix).
func secretsResources(t testing.TB, dir, envPrefix string) map[string]string {
	t.Helper()
	file := filepath.Join(dir, "secrets.json")
	if err := os.WriteFile(file, []byte(sdkSecretsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"files.yaml": componentYAML("files", "secretstores.local.file", map[string]string{"secretsFile": file, "multiValued": "true"}),
		"flat.yaml":  componentYAML("flat", "secretstores.local.file", map[string]string{"secretsFile": file}),
		"env.yaml":   componentYAML("env", "secretstores.local.env", map[string]string{"prefix": envPrefix}),
	}
}

func TestSDKSecrets(t *testing.T) {
	// The sidecar inherits the test's environment (t.Setenv, so no
	// t.Parallel here).
	envPrefix := "MECHASDK" + strings.ToUpper(uniqueID()) + "_"
	t.Setenv(envPrefix+"TOKEN", "env-token")
	t.Setenv(envPrefix+"MULTI_LINE", "line1\nline2")
	s := startSidecar(t, sidecarConfig{Resources: secretsResources(t, t.TempDir(), envPrefix)})
	c := s.sdkClient(t)

	t.Run("GetSecret", func(t *testing.T) {
		tests := []struct {
			store, key string
			want       map[string]string
		}{
			{"files", "db", map[string]string{"user": "admin", "password": "pa:ss"}},
			{"files", "api", map[string]string{"api": "t0k3n"}},
			{"files", "nested", map[string]string{"a:b": "deep"}},
			{"flat", "db:password", map[string]string{"db:password": "pa:ss"}},
			{"flat", "nested:a:b", map[string]string{"nested:a:b": "deep"}},
			{"flat", "unicode", map[string]string{"unicode": "pässwort ✓"}},
			{"env", "TOKEN", map[string]string{"TOKEN": "env-token"}},
			{"env", "MULTI_LINE", map[string]string{"MULTI_LINE": "line1\nline2"}},
		}
		for _, tc := range tests {
			got, err := c.GetSecret(ctxT(t), tc.store, tc.key, map[string]string{"version_id": "1"})
			if err != nil || !maps.Equal(got, tc.want) {
				t.Errorf("GetSecret(%s, %s) = %v, %v; want %v", tc.store, tc.key, got, err, tc.want)
			}
		}
	})

	t.Run("GetBulkSecret", func(t *testing.T) {
		tests := []struct {
			store string
			want  map[string]map[string]string
		}{
			{"files", map[string]map[string]string{
				"db":      {"user": "admin", "password": "pa:ss"},
				"api":     {"api": "t0k3n"},
				"nested":  {"a:b": "deep"},
				"unicode": {"unicode": "pässwort ✓"},
			}},
			{"flat", map[string]map[string]string{
				"db:user":     {"db:user": "admin"},
				"db:password": {"db:password": "pa:ss"},
				"api":         {"api": "t0k3n"},
				"nested:a:b":  {"nested:a:b": "deep"},
				"unicode":     {"unicode": "pässwort ✓"},
			}},
			{"env", map[string]map[string]string{
				"TOKEN":      {"TOKEN": "env-token"},
				"MULTI_LINE": {"MULTI_LINE": "line1\nline2"},
			}},
		}
		for _, tc := range tests {
			got, err := c.GetBulkSecret(ctxT(t), tc.store, nil)
			if err != nil || !maps.EqualFunc(got, tc.want, maps.Equal) {
				t.Errorf("GetBulkSecret(%s) = %v, %v; want %v", tc.store, got, err, tc.want)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := c.GetSecret(ctxT(t), "nope", "db", nil)
		expectCode(t, "GetSecret(unknown store)", err, codes.InvalidArgument)
		_, err = c.GetBulkSecret(ctxT(t), "nope", nil)
		expectCode(t, "GetBulkSecret(unknown store)", err, codes.InvalidArgument)
		_, err = c.GetSecret(ctxT(t), "files", "missing", nil)
		expectCode(t, "GetSecret(missing secret)", err, codes.Internal)
		_, err = c.GetSecret(ctxT(t), "env", "NOT_SET", nil)
		expectCode(t, "GetSecret(unset variable)", err, codes.Internal)
	})

	t.Run("HTTP", func(t *testing.T) {
		r := s.do(t, http.MethodGet, "/v1.0/secrets/files/db", nil)
		expectStatus(t, "GET /v1.0/secrets/files/db", r, http.StatusOK)
		var got map[string]string
		if err := json.Unmarshal(r.Body, &got); err != nil || !maps.Equal(got, map[string]string{"user": "admin", "password": "pa:ss"}) {
			t.Errorf("GET /v1.0/secrets/files/db = %s", r)
		}
		r = s.do(t, http.MethodGet, "/v1.0/secrets/flat/bulk", nil)
		expectStatus(t, "GET /v1.0/secrets/flat/bulk", r, http.StatusOK)
		var bulk map[string]map[string]string
		if err := json.Unmarshal(r.Body, &bulk); err != nil || bulk["db:user"]["db:user"] != "admin" || len(bulk) != 5 {
			t.Errorf("GET /v1.0/secrets/flat/bulk = %s", r)
		}
		e := expectError(t, "unknown store", s.do(t, http.MethodGet, "/v1.0/secrets/nope/db", nil), http.StatusUnauthorized, "ERR_SECRET_STORE_NOT_FOUND")
		if e.Message != "failed finding secret store with key nope" {
			t.Errorf("message = %q", e.Message)
		}
		expectError(t, "missing secret", s.do(t, http.MethodGet, "/v1.0/secrets/files/missing", nil), http.StatusInternalServerError, "ERR_SECRET_GET")
	})
}

func TestSDKSecretsNotConfigured(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})
	c := s.sdkClient(t)
	_, err := c.GetSecret(ctxT(t), "any", "k", nil)
	expectCode(t, "GetSecret without secret stores", err, codes.FailedPrecondition)
	_, err = c.GetBulkSecret(ctxT(t), "any", nil)
	expectCode(t, "GetBulkSecret without secret stores", err, codes.FailedPrecondition)
	expectError(t, "GET without secret stores", s.do(t, http.MethodGet, "/v1.0/secrets/any/k", nil), http.StatusInternalServerError, "ERR_SECRET_STORES_NOT_CONFIGURED")
}

// refComponent renders a Component whose metadata values starting with "@"
// are secretKeyRefs ("@secret" or "@secret/key") resolved through store.
func refComponent(name, typ, store string, md map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n  metadata:\n", name, typ)
	for _, k := range secretRefKeys(md) {
		v := md[k]
		if ref, ok := strings.CutPrefix(v, "@"); ok {
			sec, key, _ := strings.Cut(ref, "/")
			fmt.Fprintf(&b, "  - name: %s\n    secretKeyRef:\n      name: %q\n      key: %q\n", k, sec, key)
			continue
		}
		fmt.Fprintf(&b, "  - name: %s\n    value: %q\n", k, v)
	}
	if store != "" {
		fmt.Fprintf(&b, "auth:\n  secretStore: %s\n", store)
	}
	return b.String()
}

func secretRefKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestSDKSecretKeyRef resolves component metadata from a secret store at
// init: a SQLite state store takes its keyPrefix from a secret, and a
// second store over the same file with that prefix written literally reads
// what the first saved. Broken references skip their component with a
// reason in the metadata API.
func TestSDKSecretKeyRef(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := secretsResources(t, dir, "MECHASDKREF_UNUSED_")
	db := filepath.Join(dir, "state.db")
	res["viaref.yaml"] = refComponent("viaref", "state.sqlite", "files", map[string]string{"connectionString": db, "keyPrefix": "@api"})
	res["literal.yaml"] = refComponent("literal", "state.sqlite", "", map[string]string{"connectionString": db, "keyPrefix": "t0k3n"})
	res["broken.yaml"] = refComponent("broken", "state.in-memory", "files", map[string]string{"keyPrefix": "@db/nokey"})
	res["nostore.yaml"] = refComponent("nostore", "state.in-memory", "ghost", map[string]string{"keyPrefix": "@api"})
	s := startSidecar(t, sidecarConfig{Resources: res})
	c := s.sdkClient(t)

	must(t, "SaveState(viaref)", c.SaveState(ctxT(t), "viaref", "k", []byte("via secretKeyRef"), nil))
	item, err := c.GetState(ctxT(t), "literal", "k", nil)
	if err != nil || string(item.Value) != "via secretKeyRef" {
		t.Fatalf("GetState(literal, k) = %v, %v; want the value saved under the prefix read from the secret", item, err)
	}

	md := s.metadata(t)
	errs := map[string]string{}
	for _, e := range md.ResourceErrors {
		errs[e.Name] = e.Error
	}
	for name, want := range map[string]string{
		"broken":  "secret db in store files has no key nokey",
		"nostore": "secret store ghost is not loaded",
	} {
		if !strings.Contains(errs[name], want) {
			t.Errorf("resourceErrors[%s] = %q, want it to contain %q", name, errs[name], want)
		}
	}
	_, err = c.GetState(ctxT(t), "broken", "k", nil)
	expectCode(t, "GetState on the skipped component", err, codes.InvalidArgument)
}

// sdkScopesWired is false until the runtime applies --config's
// spec.secrets.scopes to the secrets block.
const sdkScopesWired = true

func TestSDKSecretScopes(t *testing.T) {
	if !sdkScopesWired {
		t.Skip("the runtime does not apply spec.secrets.scopes from --config yet")
	}
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	const config = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: secretscopes
spec:
  secrets:
    scopes:
    - storeName: files
      defaultAccess: allow
      deniedSecrets: ["db"]
`
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSidecar(t, sidecarConfig{Resources: secretsResources(t, dir, "MECHASDKSCOPE_UNUSED_"), Args: []string{"--config", cfg}})
	c := s.sdkClient(t)
	_, err := c.GetSecret(ctxT(t), "files", "db", nil)
	expectCode(t, "GetSecret(denied)", err, codes.PermissionDenied)
	got, err := c.GetSecret(ctxT(t), "files", "api", nil)
	if err != nil || got["api"] != "t0k3n" {
		t.Fatalf("GetSecret(allowed) = %v, %v", got, err)
	}
	bulk, err := c.GetBulkSecret(ctxT(t), "files", nil)
	must(t, "GetBulkSecret", err)
	if _, ok := bulk["db"]; ok || len(bulk) != 3 {
		t.Fatalf("GetBulkSecret = %v, want every secret but the denied db", bulk)
	}
	expectError(t, "denied over HTTP", s.do(t, http.MethodGet, "/v1.0/secrets/files/db", nil), http.StatusForbidden, "ERR_PERMISSION_DENIED")
	// The other stores are not restricted.
	_, err = c.GetSecret(ctxT(t), "flat", "db:user", nil)
	must(t, "GetSecret(flat, db:user)", err)
}

// fakeKubeAPI serves GET /api/v1/namespaces/{ns}/secrets[/{name}] from
// secrets (ns → name → key → value) and returns a kubeconfig file for it.
func fakeKubeAPI(t testing.TB, secrets map[string]map[string]map[string]string) string {
	t.Helper()
	secretJSON := func(ns, name string, data map[string]string) map[string]any {
		enc := map[string]string{}
		for k, v := range data {
			enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
		}
		return map[string]any{"kind": "Secret", "apiVersion": "v1", "metadata": map[string]any{"name": name, "namespace": ns}, "data": enc}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(p) < 5 || p[0] != "api" || p[2] != "namespaces" || p[4] != "secrets" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		ns := p[3]
		if len(p) == 5 {
			items := []any{}
			for name, data := range secrets[ns] {
				items = append(items, secretJSON(ns, name, data))
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"kind": "SecretList", "apiVersion": "v1", "metadata": map[string]any{}, "items": items})
			return
		}
		data, ok := secrets[ns][p[5]]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
			return
		}
		_ = json.NewEncoder(w).Encode(secretJSON(ns, p[5], data))
	}))
	t.Cleanup(srv.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster: {server: %q}\ncontexts:\n- name: f\n  context: {cluster: f, user: f}\ncurrent-context: f\nusers:\n- name: f\n  user: {token: t}\n", srv.URL)
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return kc
}

// TestSDKKubernetesSecrets reads Kubernetes Secrets through the binary's
// secretstores.kubernetes (skipped unless the binary is built with -tags k8s).
func TestSDKKubernetesSecrets(t *testing.T) {
	t.Parallel()
	kc := fakeKubeAPI(t, map[string]map[string]map[string]string{
		"apps":  {"db": {"user": "admin", "password": "pa:ss"}},
		"other": {"db": {"user": "other-admin"}},
	})
	s := startSidecar(t, sidecarConfig{Resources: map[string]string{
		"kube.yaml": componentYAML("kube", "secretstores.kubernetes", map[string]string{"kubeconfigPath": kc, "defaultNamespace": "apps"}),
	}})
	for _, e := range s.metadata(t).ResourceErrors {
		if strings.Contains(e.Error, "unknown component type secretstores.kubernetes") {
			t.Skipf("this mecha binary is built without secretstores.kubernetes: %s", e.Error)
		}
	}
	c := s.sdkClient(t)
	got, err := c.GetSecret(ctxT(t), "kube", "db", nil)
	if err != nil || !maps.Equal(got, map[string]string{"user": "admin", "password": "pa:ss"}) {
		t.Fatalf("GetSecret(kube, db) = %v, %v", got, err)
	}
	got, err = c.GetSecret(ctxT(t), "kube", "db", map[string]string{"namespace": "other"})
	if err != nil || !maps.Equal(got, map[string]string{"user": "other-admin"}) {
		t.Fatalf("GetSecret(kube, db, namespace other) = %v, %v", got, err)
	}
	bulk, err := c.GetBulkSecret(ctxT(t), "kube", nil)
	if err != nil || len(bulk) != 1 || bulk["db"]["user"] != "admin" {
		t.Fatalf("GetBulkSecret(kube) = %v, %v", bulk, err)
	}
	_, err = c.GetSecret(ctxT(t), "kube", "missing", nil)
	expectCode(t, "GetSecret(kube, missing)", err, codes.Internal)
}
