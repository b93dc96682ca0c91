package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/components/secretstores/kubernetes/kubetest"
	"github.com/mecha-dev/mecha/internal/api/httpapi"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
	"github.com/mecha-dev/mecha/internal/blocks/state"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// secretsFileJSON is the secrets file behind the "files" (multiValued) and
// "flat" (flattened) stores.
const secretsFileJSON = `{
  "db": {"user": "admin", "password": "pa:ss"},
  "api": "t0k3n",
  "nested": {"a": {"b": "deep"}},
  "path": {"x/y": "slashed"},
  "unicode": "pässwort ✓"
}`

// secretsSidecar starts a sidecar with a local.file store twice (files:
// multiValued, flat: flattened) and a local.env store (env) over variables
// with a unique prefix. It returns the sidecar and the env prefix.
func secretsSidecar(t *testing.T) (*mechatest.Sidecar, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(file, []byte(secretsFileJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("MECHAHTTP%d_", time.Now().UnixNano())
	t.Setenv(prefix+"TOKEN", "env-token")
	t.Setenv(prefix+"UNICODE", "wert ✓ = 1")
	s := mechatest.Start(t, uniqueApp,
		mechatest.Component("files", "secretstores.local.file", "secretsFile", file, "multiValued", "true"),
		mechatest.Component("flat", "secretstores.local.file", "secretsFile", file),
		mechatest.Component("env", "secretstores.local.env", "prefix", prefix),
	)
	return s, prefix
}

func TestSecretsHTTP(t *testing.T) {
	s, _ := secretsSidecar(t)
	tests := []struct {
		name   string
		path   string
		status int
		want   any    // decoded JSON body for 200
		code   string // errorCode for errors
		msg    string // exact error message when set
	}{
		{name: "multi-valued secret", path: "/v1.0/secrets/files/db", status: 200, want: map[string]any{"user": "admin", "password": "pa:ss"}},
		{name: "single value in multi-valued store", path: "/v1.0/secrets/files/api", status: 200, want: map[string]any{"api": "t0k3n"}},
		{name: "nested object flattened below the first level", path: "/v1.0/secrets/files/nested", status: 200, want: map[string]any{"a:b": "deep"}},
		{name: "flattened key", path: "/v1.0/secrets/flat/db:password", status: 200, want: map[string]any{"db:password": "pa:ss"}},
		{name: "deeply flattened key", path: "/v1.0/secrets/flat/nested:a:b", status: 200, want: map[string]any{"nested:a:b": "deep"}},
		{name: "escaped slash in the name", path: "/v1.0/secrets/flat/path:x%2Fy", status: 200, want: map[string]any{"path:x/y": "slashed"}},
		{name: "unicode value", path: "/v1.0/secrets/flat/unicode", status: 200, want: map[string]any{"unicode": "pässwort ✓"}},
		{name: "trailing slash", path: "/v1.0/secrets/files/api/", status: 200, want: map[string]any{"api": "t0k3n"}},
		{name: "metadata query is accepted", path: "/v1.0/secrets/files/api?metadata.version_id=1&metadata.namespace=x", status: 200, want: map[string]any{"api": "t0k3n"}},
		{name: "env secret", path: "/v1.0/secrets/env/TOKEN", status: 200, want: map[string]any{"TOKEN": "env-token"}},
		{name: "env secret with unicode", path: "/v1.0/secrets/env/UNICODE", status: 200, want: map[string]any{"UNICODE": "wert ✓ = 1"}},
		{
			name: "bulk multi-valued", path: "/v1.0/secrets/files/bulk", status: 200,
			want: map[string]any{
				"db":      map[string]any{"user": "admin", "password": "pa:ss"},
				"api":     map[string]any{"api": "t0k3n"},
				"nested":  map[string]any{"a:b": "deep"},
				"path":    map[string]any{"x/y": "slashed"},
				"unicode": map[string]any{"unicode": "pässwort ✓"},
			},
		},
		{
			name: "bulk flattened", path: "/v1.0/secrets/flat/bulk", status: 200,
			want: map[string]any{
				"db:user":     map[string]any{"db:user": "admin"},
				"db:password": map[string]any{"db:password": "pa:ss"},
				"api":         map[string]any{"api": "t0k3n"},
				"nested:a:b":  map[string]any{"nested:a:b": "deep"},
				"path:x/y":    map[string]any{"path:x/y": "slashed"},
				"unicode":     map[string]any{"unicode": "pässwort ✓"},
			},
		},
		{
			name: "bulk env strips the prefix", path: "/v1.0/secrets/env/bulk", status: 200,
			want: map[string]any{"TOKEN": map[string]any{"TOKEN": "env-token"}, "UNICODE": map[string]any{"UNICODE": "wert ✓ = 1"}},
		},
		{name: "unknown store is 401 as in daprd", path: "/v1.0/secrets/nope/db", status: 401, code: "ERR_SECRET_STORE_NOT_FOUND", msg: "failed finding secret store with key nope"},
		{name: "unknown store bulk", path: "/v1.0/secrets/nope/bulk", status: 401, code: "ERR_SECRET_STORE_NOT_FOUND", msg: "failed finding secret store with key nope"},
		{name: "missing secret", path: "/v1.0/secrets/files/missing", status: 500, code: "ERR_SECRET_GET", msg: "failed getting secret with key missing from secret store files: secret missing: secret not found"},
		{name: "nested object is not a flattened secret", path: "/v1.0/secrets/flat/db", status: 500, code: "ERR_SECRET_GET"},
		{name: "missing env secret", path: "/v1.0/secrets/env/NOPE", status: 500, code: "ERR_SECRET_GET"},
		{name: "reserved env variable", path: "/v1.0/secrets/env/DAPR_API_TOKEN", status: 500, code: "ERR_SECRET_GET"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.Do(t, http.MethodGet, tc.path, nil)
			if r.Status != tc.status {
				t.Fatalf("GET %s = %d %s, want %d", tc.path, r.Status, r.Body, tc.status)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tc.status != 200 {
				var e struct{ ErrorCode, Message string }
				r.JSON(t, &e)
				if e.ErrorCode != tc.code || (tc.msg != "" && e.Message != tc.msg) {
					t.Fatalf("error = %s, want %s %q", r.Body, tc.code, tc.msg)
				}
				return
			}
			var got any
			r.JSON(t, &got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("GET %s = %s, want %v", tc.path, r.Body, tc.want)
			}
		})
	}
}

func TestSecretsNotConfigured(t *testing.T) {
	s := mechatest.Start(t, uniqueApp, mechatest.InMemory)
	for _, path := range []string{"/v1.0/secrets/any/k", "/v1.0/secrets/any/bulk"} {
		r := s.Do(t, http.MethodGet, path, nil)
		wantStatus(t, r, 500, "ERR_SECRET_STORES_NOT_CONFIGURED")
		var e struct{ Message string }
		r.JSON(t, &e)
		if e.Message != "secret store is not configured" {
			t.Errorf("message = %q", e.Message)
		}
	}
}

// TestSecretsWrongMethod checks that only GET reads secrets; other methods
// fall through to the rest of the router, as in daprd.
func TestSecretsWrongMethod(t *testing.T) {
	s, _ := secretsSidecar(t)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		r := s.Do(t, m, "/v1.0/secrets/files/db", nil)
		if r.Status < 400 || strings.Contains(string(r.Body), "admin") {
			t.Errorf("%s /v1.0/secrets/files/db = %d %s, want an error without the secret", m, r.Status, r.Body)
		}
	}
}

// secretRecStore returns what the test sets and records the request
// metadata, to test the transport where the local stores cannot: nil data
// and metadata pass-through.
type secretRecStore struct {
	mu   sync.Mutex
	md   map[string]string
	data map[string]string
	bulk map[string]map[string]string
}

func (r *secretRecStore) Init(context.Context, components.Metadata) error { return nil }
func (r *secretRecStore) Features() []secretstores.Feature                { return nil }
func (r *secretRecStore) Close() error                                    { return nil }
func (r *secretRecStore) Get(_ context.Context, req secretstores.GetRequest) (map[string]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.md = req.Metadata
	return r.data, nil
}
func (r *secretRecStore) BulkGet(_ context.Context, req secretstores.BulkGetRequest) (map[string]map[string]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.md = req.Metadata
	return r.bulk, nil
}

func (r *secretRecStore) lastMetadata() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.md
}

func TestSecretsTransport(t *testing.T) {
	rec := &secretRecStore{}
	blk := secrets.New()
	if err := blk.Add("rec", rec); err != nil {
		t.Fatal(err)
	}
	blk.SetScopes([]secrets.Scope{{StoreName: "rec", DeniedSecrets: []string{"hidden"}}})
	srv := httptest.NewServer(httpapi.Handler(httpapi.Deps{
		AppID: "myapp", State: state.New("myapp", "default"), Metadata: metadata.New("myapp", "1", metadata.AppConnection{}),
		Secrets: blk, Health: &fakeHealth{}, Shutdown: func() {}, MaxBodySize: 1 << 20,
	}))
	t.Cleanup(srv.Close)

	// Nil data: 204 with no body, for both routes.
	for _, path := range []string{"/v1.0/secrets/rec/k", "/v1.0/secrets/rec/bulk"} {
		if a := call(t, http.MethodGet, srv.URL+path, ""); a.status != http.StatusNoContent || a.body != "" {
			t.Errorf("GET %s with nil data = %d %q, want 204 and no body", path, a.status, a.body)
		}
	}
	// Empty but non-nil data is an empty object.
	rec.data, rec.bulk = map[string]string{}, map[string]map[string]string{}
	for _, path := range []string{"/v1.0/secrets/rec/k", "/v1.0/secrets/rec/bulk"} {
		if a := call(t, http.MethodGet, srv.URL+path, ""); a.status != http.StatusOK || a.body != "{}" {
			t.Errorf("GET %s with empty data = %d %q, want 200 {}", path, a.status, a.body)
		}
	}
	// metadata.* query parameters reach the store without the prefix;
	// other parameters do not.
	call(t, http.MethodGet, srv.URL+"/v1.0/secrets/rec/k?metadata.namespace=ns1&metadata.version_id=3&other=x", "")
	if got, want := rec.lastMetadata(), map[string]string{"namespace": "ns1", "version_id": "3"}; !maps.Equal(got, want) {
		t.Errorf("Get metadata = %v, want %v", got, want)
	}
	call(t, http.MethodGet, srv.URL+"/v1.0/secrets/rec/bulk?metadata.namespace=ns2", "")
	if got, want := rec.lastMetadata(), map[string]string{"namespace": "ns2"}; !maps.Equal(got, want) {
		t.Errorf("BulkGet metadata = %v, want %v", got, want)
	}
	// Scopes: a denied secret is 403 on Get and left out of bulk.
	a := call(t, http.MethodGet, srv.URL+"/v1.0/secrets/rec/hidden", "")
	if a.status != http.StatusForbidden || a.code != "ERR_PERMISSION_DENIED" {
		t.Errorf("GET denied secret = %d %s, want 403 ERR_PERMISSION_DENIED", a.status, a.body)
	}
	var e struct{ Message string }
	_ = json.Unmarshal([]byte(a.body), &e)
	if want := `access denied by policy to get "hidden" from "rec"`; e.Message != want {
		t.Errorf("message = %q, want %q", e.Message, want)
	}
	rec.bulk = map[string]map[string]string{"hidden": {"hidden": "x"}, "shown": {"shown": "y"}}
	if a := call(t, http.MethodGet, srv.URL+"/v1.0/secrets/rec/bulk", ""); a.status != 200 || a.body != `{"shown":{"shown":"y"}}` {
		t.Errorf("bulk with a denied secret = %d %s", a.status, a.body)
	}
}

// secretKeyRefDoc is a Component whose metadata items are literal values
// ("name=value") or secret references ("name=@secret" or
// "name=@secret/key"), resolved through store.
func secretKeyRefDoc(name, typ, store string, items ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\nspec:\n  type: %s\n  version: v1\n  metadata:\n", name, typ)
	for _, it := range items {
		k, v, _ := strings.Cut(it, "=")
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

// TestSecretKeyRef checks that component metadata is resolved from secret
// stores: two SQLite state stores share one database file and table, one
// with keyPrefix and tableName taken from secrets, the other with the same
// values written literally; what one saves, the other reads.
func TestSecretKeyRef(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secrets.json")
	table := fmt.Sprintf("t%d", time.Now().UnixNano())
	if err := os.WriteFile(file, []byte(`{"state": {"prefix": "fromsecret", "table": "`+table+`"}, "plain": "fromsecret"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	envPrefix := fmt.Sprintf("MECHAREF%d_", time.Now().UnixNano())
	t.Setenv(envPrefix+"PREFIX", "fromenv")
	db := filepath.Join(dir, "state.db")
	s := mechatest.Start(t, uniqueApp,
		mechatest.Component("files", "secretstores.local.file", "secretsFile", file, "multiValued", "true"),
		mechatest.Component("env", "secretstores.local.env", "prefix", envPrefix),
		secretKeyRefDoc("viaref", "state.sqlite", "files", "connectionString="+db, "keyPrefix=@state/prefix", "tableName=@state/table"),
		secretKeyRefDoc("defaultkey", "state.sqlite", "files", "connectionString="+db, "keyPrefix=@plain", "tableName="+table),
		secretKeyRefDoc("viaenv", "state.sqlite", "env", "connectionString="+db, "keyPrefix=@PREFIX", "tableName="+table),
		secretKeyRefDoc("literal", "state.sqlite", "", "connectionString="+db, "keyPrefix=fromsecret", "tableName="+table),
		secretKeyRefDoc("literalenv", "state.sqlite", "", "connectionString="+db, "keyPrefix=fromenv", "tableName="+table),
		secretKeyRefDoc("control", "state.sqlite", "", "connectionString="+db, "keyPrefix=other", "tableName="+table),
		// Broken references: each component is skipped with a reason.
		secretKeyRefDoc("missingsecret", "state.in-memory", "files", "keyPrefix=@nope"),
		secretKeyRefDoc("missingkey", "state.in-memory", "files", "keyPrefix=@state/nokey"),
		secretKeyRefDoc("missingstore", "state.in-memory", "ghost", "keyPrefix=@plain"),
		secretKeyRefDoc("noauth", "state.in-memory", "", "keyPrefix=@plain"),
	)

	wantStatus(t, s.Do(t, http.MethodPost, "/v1.0/state/viaref", `[{"key":"k","value":"saved via secretKeyRef"}]`), 204, "")
	wantStatus(t, s.Do(t, http.MethodPost, "/v1.0/state/viaenv", `[{"key":"k","value":"saved via env"}]`), 204, "")
	tests := []struct {
		store, want string
	}{
		{"viaref", `"saved via secretKeyRef"`},
		{"defaultkey", `"saved via secretKeyRef"`}, // key defaults to the secret name
		{"literal", `"saved via secretKeyRef"`},
		{"literalenv", `"saved via env"`},
		{"control", ""},
	}
	for _, tc := range tests {
		r := s.Do(t, http.MethodGet, "/v1.0/state/"+tc.store+"/k", nil)
		if tc.want == "" {
			if r.Status != http.StatusNoContent {
				t.Errorf("GET %s/k = %d %s, want 204 (other key prefix)", tc.store, r.Status, r.Body)
			}
			continue
		}
		if r.Status != 200 || string(r.Body) != tc.want {
			t.Errorf("GET %s/k = %d %s, want 200 %s", tc.store, r.Status, r.Body, tc.want)
		}
	}

	var md struct {
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
		ResourceErrors []struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Error string `json:"error"`
		} `json:"resourceErrors"`
	}
	s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
	errs := map[string]string{}
	for _, e := range md.ResourceErrors {
		errs[e.Name] = e.Error
	}
	for name, want := range map[string]string{
		"missingsecret": `metadata "keyPrefix": secret nope in store files: secret nope: secret not found`,
		"missingkey":    `metadata "keyPrefix": secret state in store files has no key nokey`,
		"missingstore":  `metadata "keyPrefix": secret store ghost is not loaded`,
		"noauth":        "no auth.secretStore",
	} {
		if got, ok := errs[name]; !ok || !strings.Contains(got, want) {
			t.Errorf("resourceErrors[%s] = %q, want it to contain %q (all: %v)", name, got, want, md.ResourceErrors)
		}
	}
	for _, c := range md.Components {
		if _, failed := errs[c.Name]; failed {
			t.Errorf("component %s is both loaded and in resourceErrors", c.Name)
		}
	}
	wantStatus(t, s.Do(t, http.MethodGet, "/v1.0/state/missingsecret/k", nil), 400, "ERR_STATE_STORE_NOT_FOUND")
}

// scopesWired is false until the runtime applies the Configuration's
// spec.secrets.scopes (--config) to the secrets block with SetScopes; the
// transport and block tests cover scopes meanwhile.
const scopesWired = true

func TestSecretScopesFromConfiguration(t *testing.T) {
	if !scopesWired {
		t.Skip("the runtime does not pass spec.secrets.scopes to secrets.Block.SetScopes yet")
	}
	file := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(file, []byte(`{"db":"1","api":"2","other":"3"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	const config = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: secretscopes
spec:
  secrets:
    scopes:
    - storeName: denyall
      defaultAccess: deny
      allowedSecrets: ["api"]
    - storeName: allowsome
      defaultAccess: allow
      deniedSecrets: ["db"]
`
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mechatest.Start(t, func(o *runtime.Options) {
		uniqueApp(o)
		o.ConfigFiles = []string{cfg}
	},
		mechatest.Component("denyall", "secretstores.local.file", "secretsFile", file),
		mechatest.Component("allowsome", "secretstores.local.file", "secretsFile", file),
		mechatest.Component("open", "secretstores.local.file", "secretsFile", file),
	)
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/v1.0/secrets/denyall/api", 200, `{"api":"2"}`},
		{"/v1.0/secrets/denyall/db", 403, ""},
		{"/v1.0/secrets/denyall/bulk", 200, `{"api":{"api":"2"}}`},
		{"/v1.0/secrets/allowsome/db", 403, ""},
		{"/v1.0/secrets/allowsome/other", 200, `{"other":"3"}`},
		{"/v1.0/secrets/allowsome/bulk", 200, `{"api":{"api":"2"},"other":{"other":"3"}}`},
		{"/v1.0/secrets/open/db", 200, `{"db":"1"}`},
	}
	for _, tc := range tests {
		r := s.Do(t, http.MethodGet, tc.path, nil)
		if tc.status == 403 {
			wantStatus(t, r, 403, "ERR_PERMISSION_DENIED")
			continue
		}
		if r.Status != tc.status || string(r.Body) != tc.body {
			t.Errorf("GET %s = %d %s, want %d %s", tc.path, r.Status, r.Body, tc.status, tc.body)
		}
	}
}

// TestSecretsKubernetesHTTP drives secretstores.kubernetes through the
// sidecar and client-go against a fake API server.
func TestSecretsKubernetesHTTP(t *testing.T) {
	regs := kinds.New()
	all.Register(regs)
	if !regs.SecretStores.Has("secretstores.kubernetes") {
		t.Skip("built without -tags k8s: no secretstores.kubernetes")
	}
	srv := kubetest.Start(t, map[string]map[string]map[string]string{
		"apps":  {"db": {"user": "admin", "password": "pa:ss"}, "api": {"token": "t"}},
		"other": {"db": {"user": "other-admin"}},
	})
	s := mechatest.Start(t, uniqueApp, mechatest.Component("kube", "secretstores.kubernetes", "kubeconfigPath", srv.Kubeconfig, "defaultNamespace", "apps"))
	tests := []struct {
		path   string
		status int
		body   string
		code   string
	}{
		{path: "/v1.0/secrets/kube/db", status: 200, body: `{"password":"pa:ss","user":"admin"}`},
		{path: "/v1.0/secrets/kube/db?metadata.namespace=other", status: 200, body: `{"user":"other-admin"}`},
		{path: "/v1.0/secrets/kube/bulk", status: 200, body: `{"api":{"token":"t"},"db":{"password":"pa:ss","user":"admin"}}`},
		{path: "/v1.0/secrets/kube/bulk?metadata.namespace=other", status: 200, body: `{"db":{"user":"other-admin"}}`},
		{path: "/v1.0/secrets/kube/bulk?metadata.namespace=empty", status: 200, body: `{}`},
		{path: "/v1.0/secrets/kube/missing", status: 500, code: "ERR_SECRET_GET"},
	}
	for _, tc := range tests {
		r := s.Do(t, http.MethodGet, tc.path, nil)
		if tc.code != "" {
			wantStatus(t, r, tc.status, tc.code)
			continue
		}
		if r.Status != tc.status || string(r.Body) != tc.body {
			t.Errorf("GET %s = %d %s, want %d %s", tc.path, r.Status, r.Body, tc.status, tc.body)
		}
	}
	if got := srv.Requests(); !slices.Contains(got, "other/db") || !slices.Contains(got, "apps/") {
		t.Errorf("API server saw %v, want reads in both namespaces", got)
	}
}
