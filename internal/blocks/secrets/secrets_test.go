package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
)

// fakeStore serves fixed secrets; err, when set, fails every read.
type fakeStore struct {
	data   map[string]map[string]string
	err    error
	mu     sync.Mutex
	lastMD map[string]string
	closed int
}

func (f *fakeStore) Init(context.Context, components.Metadata) error { return nil }
func (f *fakeStore) Features() []secretstores.Feature                { return nil }
func (f *fakeStore) Get(_ context.Context, r secretstores.GetRequest) (map[string]string, error) {
	f.mu.Lock()
	f.lastMD = r.Metadata
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	kv, ok := f.data[r.Name]
	if !ok {
		return nil, fmt.Errorf("secret %s: %w", r.Name, secretstores.ErrNotFound)
	}
	return kv, nil
}
func (f *fakeStore) BulkGet(_ context.Context, r secretstores.BulkGetRequest) (map[string]map[string]string, error) {
	f.mu.Lock()
	f.lastMD = r.Metadata
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return maps.Clone(f.data), nil
}
func (f *fakeStore) Close() error { f.closed++; return nil }

func newFake() *fakeStore {
	return &fakeStore{data: map[string]map[string]string{
		"db":     {"user": "u", "password": "p"},
		"api":    {"api": "k"},
		"nodata": nil,
		"extra":  {"extra": "x"},
	}}
}

func newBlock(t *testing.T, stores map[string]secretstores.Store) *secrets.Block {
	t.Helper()
	b := secrets.New()
	for n, s := range stores {
		if err := b.Add(n, s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// wantKind fails unless err is an *apierr.Error of kind k.
func wantKind(t *testing.T, err error, k apierr.Kind, msg string) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want an *apierr.Error %s", err, k.Code)
	}
	if ae.Kind != k {
		t.Fatalf("error kind = %+v (%v), want %+v", ae.Kind, err, k)
	}
	if msg != "" && ae.Message != msg {
		t.Fatalf("message = %q, want %q", ae.Message, msg)
	}
}

func TestKinds(t *testing.T) {
	// The wire contract, pinned: daprd's codes including the 401 quirk.
	tests := []struct {
		kind apierr.Kind
		code string
		http int
		grpc codes.Code
	}{
		{apierr.SecretStoresNotConfigured, "ERR_SECRET_STORES_NOT_CONFIGURED", http.StatusInternalServerError, codes.FailedPrecondition},
		{apierr.SecretStoreNotFound, "ERR_SECRET_STORE_NOT_FOUND", http.StatusUnauthorized, codes.InvalidArgument},
		{apierr.SecretPermissionDenied, "ERR_PERMISSION_DENIED", http.StatusForbidden, codes.PermissionDenied},
		{apierr.SecretGet, "ERR_SECRET_GET", http.StatusInternalServerError, codes.Internal},
	}
	for _, tc := range tests {
		if tc.kind.Code != tc.code || tc.kind.HTTP != tc.http || tc.kind.GRPC != tc.grpc {
			t.Errorf("kind %+v, want %s %d %s", tc.kind, tc.code, tc.http, tc.grpc)
		}
	}
}

func TestGet(t *testing.T) {
	ctx := context.Background()
	fake := newFake()
	b := newBlock(t, map[string]secretstores.Store{"vault": fake})

	got, err := b.Get(ctx, secrets.GetRequest{Store: "vault", Name: "db", Metadata: map[string]string{"namespace": "ns1"}})
	if err != nil || !maps.Equal(got, map[string]string{"user": "u", "password": "p"}) {
		t.Fatalf("Get(db) = %v, %v", got, err)
	}
	if fake.lastMD["namespace"] != "ns1" {
		t.Errorf("store saw metadata %v, want namespace=ns1", fake.lastMD)
	}
	got, err = b.Get(ctx, secrets.GetRequest{Store: "vault", Name: "nodata"})
	if err != nil || got != nil {
		t.Fatalf("Get(nodata) = %#v, %v; want nil data", got, err)
	}

	_, err = b.Get(ctx, secrets.GetRequest{Store: "vault", Name: "missing"})
	wantKind(t, err, apierr.SecretGet, "failed getting secret with key missing from secret store vault: secret missing: secret not found")
	if !errors.Is(err, secretstores.ErrNotFound) {
		t.Errorf("error %v does not wrap ErrNotFound", err)
	}
	_, err = b.Get(ctx, secrets.GetRequest{Store: "nope", Name: "db"})
	wantKind(t, err, apierr.SecretStoreNotFound, "failed finding secret store with key nope")
	_, err = b.Get(ctx, secrets.GetRequest{Store: "", Name: "db"})
	wantKind(t, err, apierr.SecretStoreNotFound, "failed finding secret store with key ")

	fake.err = errors.New("backend down")
	_, err = b.Get(ctx, secrets.GetRequest{Store: "vault", Name: "db"})
	wantKind(t, err, apierr.SecretGet, "failed getting secret with key db from secret store vault: backend down")
	_, err = b.BulkGet(ctx, secrets.BulkGetRequest{Store: "vault"})
	wantKind(t, err, apierr.SecretGet, "failed getting secrets from secret store vault: backend down")
}

func TestNoStores(t *testing.T) {
	b := newBlock(t, nil)
	_, err := b.Get(context.Background(), secrets.GetRequest{Store: "any", Name: "x"})
	wantKind(t, err, apierr.SecretStoresNotConfigured, "secret store is not configured")
	_, err = b.BulkGet(context.Background(), secrets.BulkGetRequest{Store: "any"})
	wantKind(t, err, apierr.SecretStoresNotConfigured, "secret store is not configured")
}

func TestBulkGet(t *testing.T) {
	fake := newFake()
	b := newBlock(t, map[string]secretstores.Store{"vault": fake})
	got, err := b.BulkGet(context.Background(), secrets.BulkGetRequest{Store: "vault", Metadata: map[string]string{"k": "v"}})
	if err != nil || !maps.EqualFunc(got, fake.data, maps.Equal) {
		t.Fatalf("BulkGet = %v, %v; want %v", got, err, fake.data)
	}
	if fake.lastMD["k"] != "v" {
		t.Errorf("store saw metadata %v", fake.lastMD)
	}
	_, err = b.BulkGet(context.Background(), secrets.BulkGetRequest{Store: "nope"})
	wantKind(t, err, apierr.SecretStoreNotFound, "failed finding secret store with key nope")
}

func TestScopes(t *testing.T) {
	all := []string{"api", "db", "extra", "nodata"}
	tests := []struct {
		name    string
		scope   secrets.Scope
		allowed []string // of all, in order
	}{
		{name: "no restriction", scope: secrets.Scope{}, allowed: all},
		{name: "default allow", scope: secrets.Scope{DefaultAccess: "allow"}, allowed: all},
		{name: "default deny", scope: secrets.Scope{DefaultAccess: "deny"}, allowed: nil},
		{name: "default deny is case-insensitive", scope: secrets.Scope{DefaultAccess: "Deny"}, allowed: nil},
		{name: "unknown default counts as allow", scope: secrets.Scope{DefaultAccess: "maybe"}, allowed: all},
		{name: "denied list", scope: secrets.Scope{DefaultAccess: "allow", DeniedSecrets: []string{"db", "extra"}}, allowed: []string{"api", "nodata"}},
		{name: "allowed list under deny", scope: secrets.Scope{DefaultAccess: "deny", AllowedSecrets: []string{"db"}}, allowed: []string{"db"}},
		{name: "allowed list wins over denied list", scope: secrets.Scope{AllowedSecrets: []string{"db", "api"}, DeniedSecrets: []string{"db"}}, allowed: []string{"api", "db"}},
		{name: "deny with denied list", scope: secrets.Scope{DefaultAccess: "deny", DeniedSecrets: []string{"db"}}, allowed: nil},
		{name: "names match exactly", scope: secrets.Scope{AllowedSecrets: []string{"DB", "ap"}}, allowed: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			fake, other := newFake(), newFake()
			b := newBlock(t, map[string]secretstores.Store{"vault": fake, "other": other})
			tc.scope.StoreName = "vault"
			b.SetScopes([]secrets.Scope{tc.scope})

			want := map[string]bool{}
			for _, n := range tc.allowed {
				want[n] = true
			}
			for _, n := range all {
				_, err := b.Get(ctx, secrets.GetRequest{Store: "vault", Name: n})
				if want[n] {
					if err != nil {
						t.Errorf("Get(%s) = %v, want allowed", n, err)
					}
					continue
				}
				wantKind(t, err, apierr.SecretPermissionDenied, fmt.Sprintf("access denied by policy to get %q from %q", n, "vault"))
			}
			// A denied secret is refused before the store is asked,
			// even when it does not exist.
			if len(tc.scope.AllowedSecrets) > 0 || strings.EqualFold(tc.scope.DefaultAccess, "deny") {
				_, err := b.Get(ctx, secrets.GetRequest{Store: "vault", Name: "ghost"})
				wantKind(t, err, apierr.SecretPermissionDenied, "")
			}
			bulk, err := b.BulkGet(ctx, secrets.BulkGetRequest{Store: "vault"})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range bulk {
				names = append(names, n)
			}
			if got, wantS := sortedJoin(names), strings.Join(tc.allowed, ","); got != wantS {
				t.Errorf("BulkGet names = %s, want %s", got, wantS)
			}
			// Other stores are not affected.
			if _, err := b.Get(ctx, secrets.GetRequest{Store: "other", Name: "db"}); err != nil {
				t.Errorf("Get(other/db) = %v, want no scope applied", err)
			}
			// Resolve (secretKeyRef) ignores scopes.
			if v, err := b.Resolve(ctx, "vault", "db", "user"); err != nil || v != "u" {
				t.Errorf("Resolve(vault/db/user) = %q, %v", v, err)
			}
		})
	}
}

func TestSetScopesReplaces(t *testing.T) {
	b := newBlock(t, map[string]secretstores.Store{"vault": newFake()})
	ctx := context.Background()
	b.SetScopes([]secrets.Scope{{StoreName: "vault", DefaultAccess: "deny"}})
	if _, err := b.Get(ctx, secrets.GetRequest{Store: "vault", Name: "db"}); err == nil {
		t.Fatal("Get allowed under defaultAccess deny")
	}
	b.SetScopes(nil)
	if _, err := b.Get(ctx, secrets.GetRequest{Store: "vault", Name: "db"}); err != nil {
		t.Fatalf("Get after clearing scopes: %v", err)
	}
}

func TestConcurrentScopeUpdates(t *testing.T) {
	b := newBlock(t, map[string]secretstores.Store{"vault": newFake()})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				if (i+j)%2 == 0 {
					b.SetScopes([]secrets.Scope{{StoreName: "vault", DeniedSecrets: []string{"db"}}})
				} else {
					_, _ = b.Get(context.Background(), secrets.GetRequest{Store: "vault", Name: "db"})
					_, _ = b.BulkGet(context.Background(), secrets.BulkGetRequest{Store: "vault"})
				}
			}
		})
	}
	wg.Wait()
}

func TestResolve(t *testing.T) {
	b := newBlock(t, map[string]secretstores.Store{"vault": newFake()})
	ctx := context.Background()
	tests := []struct {
		name, store, secret, key string
		want                     string
		wantErr                  string
	}{
		{name: "key defaults to name", store: "vault", secret: "api", want: "k"},
		{name: "explicit key", store: "vault", secret: "db", key: "password", want: "p"},
		{name: "missing key", store: "vault", secret: "db", key: "nope", wantErr: "secret db in store vault has no key nope"},
		{name: "missing secret", store: "vault", secret: "nope", wantErr: "secret nope in store vault: secret nope: secret not found"},
		{name: "missing store", store: "ghost", secret: "db", wantErr: "secret store ghost is not loaded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.Resolve(ctx, tc.store, tc.secret, tc.key)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCloseClosesStores(t *testing.T) {
	f := newFake()
	b := secrets.New()
	if err := b.Add("vault", f); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("vault", newFake()); err == nil {
		t.Fatal("duplicate Add accepted")
	}
	if got := b.Names(); len(got) != 1 || got[0] != "vault" {
		t.Fatalf("Names = %v", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if f.closed != 1 {
		t.Fatalf("store closed %d times, want 1", f.closed)
	}
}

func sortedJoin(s []string) string {
	out := slices.Clone(s)
	slices.Sort(out)
	return strings.Join(out, ",")
}
