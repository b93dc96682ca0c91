package kubernetes_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/components/secretstores/kubernetes"
	"github.com/mecha-dev/mecha/components/secretstores/kubernetes/kubetest"
	"github.com/mecha-dev/mecha/components/secretstores/secretstorestest"
)

func secret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func initStore(t *testing.T, s secretstores.Store, props map[string]string) secretstores.Store {
	t.Helper()
	if err := s.Init(context.Background(), components.Metadata{Name: "kubernetes", Type: "secretstores.kubernetes", Properties: props}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	secretstorestest.Run(t, func(t *testing.T, secrets secretstorestest.Secrets) secretstores.Store {
		var objs []runtime.Object
		for name, kv := range secrets {
			objs = append(objs, secret("apps", name, kv))
		}
		// Something in another namespace, which must not show up.
		objs = append(objs, secret("other", "elsewhere", map[string]string{"k": "v"}))
		return initStore(t, kubernetes.NewWithClient(fake.NewClientset(objs...)), map[string]string{"defaultNamespace": "apps"})
	})
}

func TestNamespaceResolution(t *testing.T) {
	cs := fake.NewClientset(
		secret("default", "s", map[string]string{"ns": "default"}),
		secret("fromenv", "s", map[string]string{"ns": "fromenv"}),
		secret("fromcomponent", "s", map[string]string{"ns": "fromcomponent"}),
		secret("fromrequest", "s", map[string]string{"ns": "fromrequest"}),
	)
	tests := []struct {
		name      string
		env       string
		component string
		request   string
		want      string
	}{
		{name: "nothing set", want: "default"},
		{name: "NAMESPACE env", env: "fromenv", want: "fromenv"},
		{name: "defaultNamespace beats env", env: "fromenv", component: "fromcomponent", want: "fromcomponent"},
		{name: "request metadata beats all", env: "fromenv", component: "fromcomponent", request: "fromrequest", want: "fromrequest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NAMESPACE", tc.env)
			props := map[string]string{}
			if tc.component != "" {
				props["defaultNamespace"] = tc.component
			}
			s := initStore(t, kubernetes.NewWithClient(cs), props)
			var md map[string]string
			if tc.request != "" {
				md = map[string]string{"namespace": tc.request}
			}
			got, err := s.Get(context.Background(), secretstores.GetRequest{Name: "s", Metadata: md})
			if err != nil || got["ns"] != tc.want {
				t.Fatalf("Get = %v, %v; want the secret of namespace %s", got, err, tc.want)
			}
			all, err := s.BulkGet(context.Background(), secretstores.BulkGetRequest{Metadata: md})
			if err != nil || len(all) != 1 || all["s"]["ns"] != tc.want {
				t.Fatalf("BulkGet = %v, %v; want only the secrets of namespace %s", all, err, tc.want)
			}
		})
	}
}

func TestBackendErrors(t *testing.T) {
	cs := fake.NewClientset()
	boom := errors.New("apiserver unavailable")
	cs.PrependReactor("*", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, boom })
	s := initStore(t, kubernetes.NewWithClient(cs), nil)
	_, err := s.Get(context.Background(), secretstores.GetRequest{Name: "x"})
	if !errors.Is(err, boom) || errors.Is(err, secretstores.ErrNotFound) {
		t.Fatalf("Get error = %v, want the backend error, not ErrNotFound", err)
	}
	if _, err := s.BulkGet(context.Background(), secretstores.BulkGetRequest{}); !errors.Is(err, boom) {
		t.Fatalf("BulkGet error = %v, want the backend error", err)
	}
}

func TestEmptySecret(t *testing.T) {
	s := initStore(t, kubernetes.NewWithClient(fake.NewClientset(secret("default", "empty", nil))), nil)
	got, err := s.Get(context.Background(), secretstores.GetRequest{Name: "empty"})
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get(empty) = %#v, %v; want an empty, non-nil map", got, err)
	}
}

func TestInitWithoutCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	tests := []struct {
		name    string
		props   map[string]string
		wantErr string
	}{
		{name: "not in a cluster", props: nil, wantErr: "kubeconfigPath is not set"},
		{name: "missing kubeconfig", props: map[string]string{"kubeconfigPath": "/nonexistent/kubeconfig"}, wantErr: "kubeconfigPath"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := kubernetes.New(components.Deps{})
			err := s.Init(context.Background(), components.Metadata{Properties: tc.props})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Init error = %v, want one containing %q", err, tc.wantErr)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close after a failed Init: %v", err)
			}
		})
	}
}

// TestInitFromKubeconfig builds a real client from a kubeconfig file; the
// server it names is never contacted by Init.
func TestInitFromKubeconfig(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "config")
	const cfg = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "http://127.0.0.1:1"}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
users:
- name: u
  user: {token: t}
`
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := kubernetes.New(components.Deps{})
	if err := s.Init(context.Background(), components.Metadata{Properties: map[string]string{"kubeconfigPath": kc}}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	defer s.Close()
	// Port 1 refuses connections: the read fails, and not as "not found".
	_, err := s.Get(context.Background(), secretstores.GetRequest{Name: "x"})
	if err == nil || errors.Is(err, secretstores.ErrNotFound) {
		t.Fatalf("Get against an unreachable API server = %v, want a connection error", err)
	}
	if !secretstores.Has(s.Features(), secretstores.FeatureMultipleKeyValues) {
		t.Fatalf("Features() = %v, want %s", s.Features(), secretstores.FeatureMultipleKeyValues)
	}
}

// TestConformanceOverHTTP runs the suite through a real client-go client,
// built by Init from a kubeconfig, against kubetest's fake API server.
func TestConformanceOverHTTP(t *testing.T) {
	secretstorestest.Run(t, func(t *testing.T, secrets secretstorestest.Secrets) secretstores.Store {
		srv := kubetest.Start(t, map[string]map[string]map[string]string{"apps": secrets})
		return initStore(t, kubernetes.New(components.Deps{}), map[string]string{"kubeconfigPath": srv.Kubeconfig, "defaultNamespace": "apps"})
	})
}
