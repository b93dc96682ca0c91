package grpcapi_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/components/secretstores/kubernetes/kubetest"
	"github.com/mecha-dev/mecha/internal/api/grpcapi"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

func secretsApp(o *runtime.Options) { o.AppID = fmt.Sprintf("gsec%d", time.Now().UnixNano()) }

// startSecretsSidecar runs a sidecar with a multi-valued local.file store
// (files), a flattened one (flat) and a local.env store (env).
func startSecretsSidecar(t *testing.T) *mechatest.Sidecar {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secrets.json")
	const doc = `{"db": {"user": "admin", "password": "pa:ss"}, "api": "t0k3n", "nested": {"a": {"b": "deep"}}}`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("MECHAGRPC%d_", time.Now().UnixNano())
	t.Setenv(prefix+"TOKEN", "env-token")
	return mechatest.Start(t, secretsApp,
		mechatest.Component("files", "secretstores.local.file", "secretsFile", file, "multiValued", "true"),
		mechatest.Component("flat", "secretstores.local.file", "secretsFile", file),
		mechatest.Component("env", "secretstores.local.env", "prefix", prefix),
	)
}

func TestSecretsOverGRPC(t *testing.T) {
	s := startSecretsSidecar(t)
	ctx := context.Background()

	gets := []struct {
		store, key string
		md         map[string]string
		want       map[string]string
	}{
		{store: "files", key: "db", want: map[string]string{"user": "admin", "password": "pa:ss"}},
		{store: "files", key: "api", want: map[string]string{"api": "t0k3n"}},
		{store: "files", key: "nested", want: map[string]string{"a:b": "deep"}},
		{store: "flat", key: "nested:a:b", want: map[string]string{"nested:a:b": "deep"}},
		{store: "files", key: "api", md: map[string]string{"version_id": "1"}, want: map[string]string{"api": "t0k3n"}},
		{store: "env", key: "TOKEN", want: map[string]string{"TOKEN": "env-token"}},
	}
	for _, tc := range gets {
		got, err := s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: tc.store, Key: tc.key, Metadata: tc.md})
		if err != nil || !maps.Equal(got.GetData(), tc.want) {
			t.Errorf("GetSecret(%s/%s) = %v, %v; want %v", tc.store, tc.key, got.GetData(), err, tc.want)
		}
	}

	bulks := []struct {
		store string
		want  map[string]map[string]string
	}{
		{"files", map[string]map[string]string{
			"db":     {"user": "admin", "password": "pa:ss"},
			"api":    {"api": "t0k3n"},
			"nested": {"a:b": "deep"},
		}},
		{"flat", map[string]map[string]string{
			"db:user":     {"db:user": "admin"},
			"db:password": {"db:password": "pa:ss"},
			"api":         {"api": "t0k3n"},
			"nested:a:b":  {"nested:a:b": "deep"},
		}},
		{"env", map[string]map[string]string{"TOKEN": {"TOKEN": "env-token"}}},
	}
	for _, tc := range bulks {
		resp, err := s.Dapr.GetBulkSecret(ctx, &runtimev1.GetBulkSecretRequest{StoreName: tc.store})
		if err != nil {
			t.Fatalf("GetBulkSecret(%s): %v", tc.store, err)
		}
		got := map[string]map[string]string{}
		for n, sr := range resp.GetData() {
			got[n] = sr.GetSecrets()
		}
		if !maps.EqualFunc(got, tc.want, maps.Equal) {
			t.Errorf("GetBulkSecret(%s) = %v, want %v", tc.store, got, tc.want)
		}
	}

	errs := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown store", func() error {
			_, err := s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "nope", Key: "db"})
			return err
		}, codes.InvalidArgument, "failed finding secret store with key nope"},
		{"unknown store bulk", func() error {
			_, err := s.Dapr.GetBulkSecret(ctx, &runtimev1.GetBulkSecretRequest{StoreName: "nope"})
			return err
		}, codes.InvalidArgument, "failed finding secret store with key nope"},
		{"missing secret", func() error {
			_, err := s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "files", Key: "missing"})
			return err
		}, codes.Internal, "failed getting secret with key missing from secret store files: secret missing: secret not found"},
		{"missing env secret", func() error {
			_, err := s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "env", Key: "NOPE"})
			return err
		}, codes.Internal, ""},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			st := wantCode(t, tc.call(), tc.code)
			if tc.msg != "" && st.Message() != tc.msg {
				t.Fatalf("message = %q, want %q", st.Message(), tc.msg)
			}
		})
	}
}

func TestSecretsNotConfiguredOverGRPC(t *testing.T) {
	s := mechatest.Start(t, secretsApp, mechatest.InMemory)
	_, err := s.Dapr.GetSecret(context.Background(), &runtimev1.GetSecretRequest{StoreName: "any", Key: "k"})
	if st := wantCode(t, err, codes.FailedPrecondition); st.Message() != "secret store is not configured" {
		t.Fatalf("message = %q", st.Message())
	}
	_, err = s.Dapr.GetBulkSecret(context.Background(), &runtimev1.GetBulkSecretRequest{StoreName: "any"})
	wantCode(t, err, codes.FailedPrecondition)
}

// secretMetaStore returns what the test sets and records request metadata.
type secretMetaStore struct {
	mu   sync.Mutex
	md   map[string]string
	bulk map[string]map[string]string
}

func (m *secretMetaStore) Init(context.Context, components.Metadata) error { return nil }
func (m *secretMetaStore) Features() []secretstores.Feature                { return nil }
func (m *secretMetaStore) Close() error                                    { return nil }
func (m *secretMetaStore) Get(_ context.Context, r secretstores.GetRequest) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.md = r.Metadata
	return nil, nil
}
func (m *secretMetaStore) BulkGet(_ context.Context, r secretstores.BulkGetRequest) (map[string]map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.md = r.Metadata
	return m.bulk, nil
}

func (m *secretMetaStore) lastMetadata() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.md
}

// TestSecretsGRPCTransport serves the API over a block with a fake store:
// metadata pass-through, nil data and scopes.
func TestSecretsGRPCTransport(t *testing.T) {
	store := &secretMetaStore{bulk: map[string]map[string]string{"hidden": {"hidden": "x"}, "shown": {"shown": "y"}}}
	blk := secrets.New()
	if err := blk.Add("rec", store); err != nil {
		t.Fatal(err)
	}
	blk.SetScopes([]secrets.Scope{{StoreName: "rec", DeniedSecrets: []string{"hidden"}}})
	gs := grpc.NewServer()
	grpcapi.New(grpcapi.Deps{AppID: "myapp", Secrets: blk}).Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := runtimev1.NewDaprClient(conn)
	ctx := context.Background()

	got, err := c.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "rec", Key: "k", Metadata: map[string]string{"namespace": "ns1"}})
	if err != nil || len(got.GetData()) != 0 {
		t.Fatalf("GetSecret with nil data = %v, %v; want OK with no data", got, err)
	}
	if md := store.lastMetadata(); !maps.Equal(md, map[string]string{"namespace": "ns1"}) {
		t.Errorf("store saw metadata %v", md)
	}
	bulk, err := c.GetBulkSecret(ctx, &runtimev1.GetBulkSecretRequest{StoreName: "rec", Metadata: map[string]string{"namespace": "ns2"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, hidden := bulk.GetData()["hidden"]; hidden || bulk.GetData()["shown"].GetSecrets()["shown"] != "y" || len(bulk.GetData()) != 1 {
		t.Errorf("GetBulkSecret = %v, want only the allowed secret", bulk.GetData())
	}
	if md := store.lastMetadata(); !maps.Equal(md, map[string]string{"namespace": "ns2"}) {
		t.Errorf("store saw metadata %v", md)
	}
	_, err = c.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "rec", Key: "hidden"})
	if st := wantCode(t, err, codes.PermissionDenied); st.Message() != `access denied by policy to get "hidden" from "rec"` {
		t.Errorf("message = %q", st.Message())
	}
	store.bulk = nil
	bulk, err = c.GetBulkSecret(ctx, &runtimev1.GetBulkSecretRequest{StoreName: "rec"})
	if err != nil || len(bulk.GetData()) != 0 {
		t.Fatalf("GetBulkSecret with nil data = %v, %v", bulk, err)
	}
}

// TestSecretsKubernetesOverGRPC drives secretstores.kubernetes through the
// sidecar and client-go against a fake API server.
func TestSecretsKubernetesOverGRPC(t *testing.T) {
	regs := kinds.New()
	all.Register(regs)
	if !regs.SecretStores.Has("secretstores.kubernetes") {
		t.Skip("built with -tags nok8s: no secretstores.kubernetes")
	}
	srv := kubetest.Start(t, map[string]map[string]map[string]string{
		"apps":  {"db": {"user": "admin", "password": "pa:ss"}},
		"other": {"db": {"user": "other-admin"}, "x": {"k": "v"}},
	})
	s := mechatest.Start(t, secretsApp, mechatest.Component("kube", "secretstores.kubernetes", "kubeconfigPath", srv.Kubeconfig, "defaultNamespace", "apps"))
	ctx := context.Background()
	got, err := s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "kube", Key: "db"})
	if err != nil || !maps.Equal(got.GetData(), map[string]string{"user": "admin", "password": "pa:ss"}) {
		t.Fatalf("GetSecret(db) = %v, %v", got.GetData(), err)
	}
	got, err = s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "kube", Key: "db", Metadata: map[string]string{"namespace": "other"}})
	if err != nil || !maps.Equal(got.GetData(), map[string]string{"user": "other-admin"}) {
		t.Fatalf("GetSecret(db, namespace other) = %v, %v", got.GetData(), err)
	}
	bulk, err := s.Dapr.GetBulkSecret(ctx, &runtimev1.GetBulkSecretRequest{StoreName: "kube", Metadata: map[string]string{"namespace": "other"}})
	if err != nil || len(bulk.GetData()) != 2 || bulk.GetData()["x"].GetSecrets()["k"] != "v" {
		t.Fatalf("GetBulkSecret(namespace other) = %v, %v", bulk.GetData(), err)
	}
	_, err = s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "kube", Key: "missing"})
	wantCode(t, err, codes.Internal)
}
