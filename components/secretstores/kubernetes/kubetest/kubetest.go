// Package kubetest serves a minimal, read-only Kubernetes API for tests:
// core/v1 Secrets (get and list per namespace) over real HTTP, with a
// kubeconfig file pointing at it. It lets sidecar-level tests drive
// secretstores.kubernetes through client-go end to end without a cluster,
// and it imports nothing from k8s.io, so the test binaries that use it do
// not link client-go for it.
package kubetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Server is a fake API server holding secrets by namespace and name.
type Server struct {
	// Kubeconfig is the path of a kubeconfig file for this server.
	Kubeconfig string
	URL        string

	mu      sync.Mutex
	secrets map[string]map[string]map[string]string // ns → name → key → value
	queries []string
}

// Start serves secrets (namespace → name → key → value) until the test
// ends.
func Start(t testing.TB, secrets map[string]map[string]map[string]string) *Server {
	t.Helper()
	s := &Server{secrets: secrets}
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(ts.Close)
	s.URL = ts.URL
	s.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %q
contexts:
- name: fake
  context: {cluster: fake, user: fake}
current-context: fake
users:
- name: fake
  user: {token: fake-token}
`, ts.URL)
	if err := os.WriteFile(s.Kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// Requests lists the "namespace/name" (name empty for lists) of the reads
// served so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// /api/v1/namespaces/{ns}/secrets[/{name}]
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodGet || len(parts) < 5 || len(parts) > 6 || parts[0] != "api" || parts[1] != "v1" || parts[2] != "namespaces" || parts[4] != "secrets" {
		status(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	ns := parts[3]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(parts) == 5 {
		s.queries = append(s.queries, ns+"/")
		items := []any{}
		for name, data := range s.secrets[ns] {
			items = append(items, secretJSON(ns, name, data))
		}
		writeJSON(w, http.StatusOK, map[string]any{"kind": "SecretList", "apiVersion": "v1", "metadata": map[string]any{}, "items": items})
		return
	}
	name := parts[5]
	s.queries = append(s.queries, ns+"/"+name)
	data, ok := s.secrets[ns][name]
	if !ok {
		status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("secrets %q not found", name))
		return
	}
	writeJSON(w, http.StatusOK, secretJSON(ns, name, data))
}

func secretJSON(ns, name string, data map[string]string) map[string]any {
	enc := make(map[string]string, len(data))
	for k, v := range data {
		enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	return map[string]any{
		"kind": "Secret", "apiVersion": "v1",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"type":     "Opaque",
		"data":     enc,
	}
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
