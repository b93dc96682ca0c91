package lock_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mecha-dev/mecha/components"
	clock "github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/components/lock/inmemory"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/lock"
)

// recorder is a lock store that records the keys it is asked for and can
// fail on demand.
type recorder struct {
	keys []string
	err  error
	st   clock.UnlockStatus
}

func (r *recorder) Init(context.Context, components.Metadata) error { return nil }
func (r *recorder) Close() error                                    { return nil }
func (r *recorder) TryLock(_ context.Context, req clock.TryLockRequest) (bool, error) {
	r.keys = append(r.keys, req.ResourceID)
	return r.err == nil, r.err
}
func (r *recorder) Unlock(_ context.Context, req clock.UnlockRequest) (clock.UnlockStatus, error) {
	r.keys = append(r.keys, req.ResourceID)
	if r.err != nil {
		return clock.InternalError, r.err
	}
	return r.st, nil
}

func md(kv ...string) components.Metadata {
	m := components.Metadata{Name: "lockstore", Type: "lock.test", Properties: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Properties[kv[i]] = kv[i+1]
	}
	return m
}

// wantErr checks the error's Dapr code, HTTP status, gRPC code and message.
func wantErr(t *testing.T, err error, kind apierr.Kind, msg string) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v (%T), want *apierr.Error %s", err, err, kind.Code)
	}
	if ae.Kind != kind || ae.Message != msg {
		t.Fatalf("error = %s %d %v %q, want %s %d %v %q", ae.Kind.Code, ae.Kind.HTTP, ae.Kind.GRPC, ae.Message, kind.Code, kind.HTTP, kind.GRPC, msg)
	}
}

func TestKeyScheme(t *testing.T) {
	tests := []struct {
		name  string
		appID string
		md    components.Metadata
		want  string
	}{
		{"default is the app id", "myapp", md(), "lock||myapp||order-1"},
		{"appid", "myapp", md("keyPrefix", "appid"), "lock||myapp||order-1"},
		{"strategy is case-insensitive", "myapp", md("KEYPREFIX", "AppID"), "lock||myapp||order-1"},
		{"appid without an app id", "", md(), "lock||order-1"},
		{"name", "myapp", md("keyPrefix", "name"), "lock||lockstore||order-1"},
		{"none", "myapp", md("keyPrefix", "none"), "lock||order-1"},
		{"literal, lower-cased as daprd does", "myapp", md("keyPrefix", "Shared-Prefix"), "lock||shared-prefix||order-1"},
		{"empty means the default", "myapp", md("keyPrefix", ""), "lock||myapp||order-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := lock.NewForApp(tt.appID)
			rec := &recorder{}
			if err := b.AddWithMetadata("lockstore", rec, tt.md); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := b.TryLock(ctx, lock.TryLockRequest{Store: "lockstore", ResourceID: "order-1", LockOwner: "o", ExpiryInSeconds: 5}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Unlock(ctx, lock.UnlockRequest{Store: "lockstore", ResourceID: "order-1", LockOwner: "o"}); err != nil {
				t.Fatal(err)
			}
			if len(rec.keys) != 2 || rec.keys[0] != tt.want || rec.keys[1] != tt.want {
				t.Fatalf("keys = %q, want %q twice", rec.keys, tt.want)
			}
		})
	}
}

func TestAddDefaultsToAppID(t *testing.T) {
	b := lock.NewForApp("myapp")
	rec := &recorder{}
	if err := b.Add("lockstore", rec); err != nil {
		t.Fatal(err)
	}
	b.TryLock(context.Background(), lock.TryLockRequest{Store: "lockstore", ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 1})
	if len(rec.keys) != 1 || rec.keys[0] != "lock||myapp||r" {
		t.Fatalf("keys = %q", rec.keys)
	}
	if err := b.Add("lockstore", rec); err == nil {
		t.Fatal("a second store with the same name was accepted")
	}
	if got := b.Names(); len(got) != 1 || got[0] != "lockstore" {
		t.Fatalf("Names() = %v", got)
	}
}

func TestIllegalKeyPrefix(t *testing.T) {
	err := lock.NewForApp("a").AddWithMetadata("lockstore", &recorder{}, md("keyPrefix", "a||b"))
	if err == nil || !strings.Contains(err.Error(), "can't contain '||'") {
		t.Fatalf("AddWithMetadata(keyPrefix a||b) = %v", err)
	}
}

// TestSharing runs two apps' blocks over one store instance, as two
// sidecars on one backend.
func TestSharing(t *testing.T) {
	tests := []struct {
		name   string
		md     components.Metadata
		shared bool
	}{
		{"appid", md(), false},
		{"name", md("keyPrefix", "name"), true},
		{"none", md("keyPrefix", "none"), true},
		{"literal", md("keyPrefix", "team"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := inmemory.New(components.Deps{})
			a, b := lock.NewForApp("app-a"), lock.NewForApp("app-b")
			if err := a.AddWithMetadata("lockstore", s, tt.md); err != nil {
				t.Fatal(err)
			}
			if err := b.AddWithMetadata("lockstore", s, tt.md); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			req := lock.TryLockRequest{Store: "lockstore", ResourceID: "res", LockOwner: "owner-a", ExpiryInSeconds: 60}
			if ok, err := a.TryLock(ctx, req); !ok || err != nil {
				t.Fatalf("app-a TryLock = %v, %v", ok, err)
			}
			req.LockOwner = "owner-b"
			ok, err := b.TryLock(ctx, req)
			if err != nil || ok == tt.shared {
				t.Fatalf("app-b TryLock = %v, %v; want %v", ok, err, !tt.shared)
			}
			// Through app-b, owner-a releases app-a's lock when it is shared,
			// and meets owner-b's own lock when it is not.
			st, err := b.Unlock(ctx, lock.UnlockRequest{Store: "lockstore", ResourceID: "res", LockOwner: "owner-a"})
			want := clock.LockBelongsToOthers
			if tt.shared {
				want = clock.Success
			}
			if err != nil || st != want {
				t.Fatalf("app-b Unlock(owner-a) = %v, %v; want %v", st, err, want)
			}
			if !tt.shared {
				if st, _ := a.Unlock(ctx, lock.UnlockRequest{Store: "lockstore", ResourceID: "res", LockOwner: "owner-a"}); st != clock.Success {
					t.Fatalf("app-a Unlock(owner-a) = %v, want Success", st)
				}
			}
		})
	}
}

func TestValidation(t *testing.T) {
	ok := lock.TryLockRequest{Store: "lockstore", ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 10}
	tests := []struct {
		name   string
		empty  bool // no stores at all
		req    lock.TryLockRequest
		kind   apierr.Kind
		msg    string
		unlock bool // the same holds for Unlock
	}{
		{"expiry zero", false, with(ok, func(r *lock.TryLockRequest) { r.ExpiryInSeconds = 0 }), apierr.MalformedRequest, "ExpiryInSeconds is not positive in lock store lockstore", false},
		{"expiry negative", false, with(ok, func(r *lock.TryLockRequest) { r.ExpiryInSeconds = -5 }), apierr.MalformedRequest, "ExpiryInSeconds is not positive in lock store lockstore", false},
		{"expiry checked before the store exists", true, with(ok, func(r *lock.TryLockRequest) { r.ExpiryInSeconds = 0 }), apierr.MalformedRequest, "ExpiryInSeconds is not positive in lock store lockstore", false},
		{"no stores", true, ok, apierr.LockStoreNotConfigured, "lock store is not configured", true},
		{"no stores beats empty fields", true, with(ok, func(r *lock.TryLockRequest) { r.ResourceID, r.LockOwner = "", "" }), apierr.LockStoreNotConfigured, "lock store is not configured", true},
		{"empty resource", false, with(ok, func(r *lock.TryLockRequest) { r.ResourceID = "" }), apierr.MalformedRequest, "ResourceId is empty in lock store lockstore", true},
		{"empty owner", false, with(ok, func(r *lock.TryLockRequest) { r.LockOwner = "" }), apierr.MalformedRequest, "LockOwner is empty in lock store lockstore", true},
		{"empty fields before unknown store", false, with(ok, func(r *lock.TryLockRequest) { r.Store, r.LockOwner = "nope", "" }), apierr.MalformedRequest, "LockOwner is empty in lock store nope", true},
		{"unknown store", false, with(ok, func(r *lock.TryLockRequest) { r.Store = "nope" }), apierr.LockStoreNotFound, "lock store nope not found", true},
		{"empty store name", false, with(ok, func(r *lock.TryLockRequest) { r.Store = "" }), apierr.LockStoreNotFound, "lock store  not found", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := lock.NewForApp("myapp")
			if !tt.empty {
				if err := b.Add("lockstore", inmemory.New(components.Deps{})); err != nil {
					t.Fatal(err)
				}
			}
			got, err := b.TryLock(context.Background(), tt.req)
			if got {
				t.Fatal("TryLock = true on a bad request")
			}
			wantErr(t, err, tt.kind, tt.msg)
			if !tt.unlock {
				return
			}
			st, err := b.Unlock(context.Background(), lock.UnlockRequest{Store: tt.req.Store, ResourceID: tt.req.ResourceID, LockOwner: tt.req.LockOwner})
			if st != clock.InternalError {
				t.Fatalf("Unlock status = %v, want InternalError alongside the error", st)
			}
			wantErr(t, err, tt.kind, tt.msg)
		})
	}
}

func with(r lock.TryLockRequest, f func(*lock.TryLockRequest)) lock.TryLockRequest {
	f(&r)
	return r
}

func TestKinds(t *testing.T) {
	for _, tt := range []struct {
		k    apierr.Kind
		code string
		http int
		grpc codes.Code
	}{
		{apierr.LockStoreNotConfigured, "ERR_LOCK_STORE_NOT_CONFIGURED", http.StatusInternalServerError, codes.FailedPrecondition},
		{apierr.LockStoreNotFound, "ERR_LOCK_STORE_NOT_FOUND", http.StatusBadRequest, codes.InvalidArgument},
		{apierr.LockTry, "ERR_TRY_LOCK", http.StatusInternalServerError, codes.Internal},
		{apierr.LockUnlock, "ERR_UNLOCK", http.StatusInternalServerError, codes.Internal},
	} {
		if tt.k.Code != tt.code || tt.k.HTTP != tt.http || tt.k.GRPC != tt.grpc {
			t.Errorf("kind %+v, want %s %d %v", tt.k, tt.code, tt.http, tt.grpc)
		}
	}
}

func TestIllegalResourceID(t *testing.T) {
	b := lock.NewForApp("myapp")
	rec := &recorder{}
	b.Add("lockstore", rec)
	_, err := b.TryLock(context.Background(), lock.TryLockRequest{Store: "lockstore", ResourceID: "other||r", LockOwner: "o", ExpiryInSeconds: 1})
	wantErr(t, err, apierr.LockTry, "failed to try acquiring lock: input key/keyPrefix 'other||r' can't contain '||'")
	st, err := b.Unlock(context.Background(), lock.UnlockRequest{Store: "lockstore", ResourceID: "other||r", LockOwner: "o"})
	wantErr(t, err, apierr.LockUnlock, "failed to release lock: input key/keyPrefix 'other||r' can't contain '||'")
	if st != clock.InternalError || len(rec.keys) != 0 {
		t.Fatalf("status %v, store calls %q; want InternalError and none", st, rec.keys)
	}
}

func TestBackendErrors(t *testing.T) {
	boom := errors.New("connection refused")
	b := lock.NewForApp("myapp")
	b.Add("lockstore", &recorder{err: boom})
	ctx := context.Background()
	ok, err := b.TryLock(ctx, lock.TryLockRequest{Store: "lockstore", ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 1})
	wantErr(t, err, apierr.LockTry, "failed to try acquiring lock: connection refused")
	if ok || !errors.Is(err, boom) {
		t.Fatalf("TryLock = %v, %v; want false wrapping the cause", ok, err)
	}
	st, err := b.Unlock(ctx, lock.UnlockRequest{Store: "lockstore", ResourceID: "r", LockOwner: "o"})
	wantErr(t, err, apierr.LockUnlock, "failed to release lock: connection refused")
	if st != clock.InternalError || !errors.Is(err, boom) {
		t.Fatalf("Unlock = %v, %v", st, err)
	}
}

func TestStatusesPassThrough(t *testing.T) {
	for _, st := range []clock.UnlockStatus{clock.Success, clock.LockDoesNotExist, clock.LockBelongsToOthers} {
		b := lock.NewForApp("myapp")
		b.Add("lockstore", &recorder{st: st})
		got, err := b.Unlock(context.Background(), lock.UnlockRequest{Store: "lockstore", ResourceID: "r", LockOwner: "o"})
		if got != st || err != nil {
			t.Fatalf("Unlock = %v, %v; want %v", got, err, st)
		}
	}
}

func TestExpiryIsSeconds(t *testing.T) {
	var got time.Duration
	b := lock.NewForApp("myapp")
	b.Add("lockstore", expiryRecorder{&got})
	b.TryLock(context.Background(), lock.TryLockRequest{Store: "lockstore", ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 2147483647})
	if want := 2147483647 * time.Second; got != want {
		t.Fatalf("expiry = %v, want %v", got, want)
	}
}

type expiryRecorder struct{ d *time.Duration }

func (e expiryRecorder) Init(context.Context, components.Metadata) error { return nil }
func (e expiryRecorder) Close() error                                    { return nil }
func (e expiryRecorder) TryLock(_ context.Context, req clock.TryLockRequest) (bool, error) {
	*e.d = req.Expiry
	return true, nil
}
func (e expiryRecorder) Unlock(context.Context, clock.UnlockRequest) (clock.UnlockStatus, error) {
	return clock.Success, nil
}

func TestCloseClosesStores(t *testing.T) {
	b := lock.New()
	c := &closeCounter{}
	b.Add("a", c)
	if err := b.Close(); err != nil || c.n != 1 {
		t.Fatalf("Close = %v, store closed %d times", err, c.n)
	}
	// After Close the block has no stores.
	_, err := b.TryLock(context.Background(), lock.TryLockRequest{Store: "a", ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 1})
	wantErr(t, err, apierr.LockStoreNotConfigured, "lock store is not configured")
}

type closeCounter struct {
	recorder
	n int
}

func (c *closeCounter) Close() error { c.n++; return nil }
