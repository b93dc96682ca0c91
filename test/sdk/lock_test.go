package sdk

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const lockStoreName = "lockstore"

// lockStore is one lock store type the lock tests run against.
type lockStore struct {
	Name string
	Type string
	// Env must hold the service address ("" = none needed).
	Env string
	// connection returns the connection metadata; dir lives as long as the
	// test (for file-based stores). Sidecars given the same dir share the
	// backend.
	connection func(dir string) map[string]string
}

var lockStores = []lockStore{
	{Name: "in-memory", Type: "lock.in-memory", connection: func(string) map[string]string { return map[string]string{} }},
	{Name: "sqlite", Type: "lock.sqlite", connection: func(dir string) map[string]string {
		return map[string]string{"connectionString": filepath.Join(dir, "locks.db")}
	}},
	{Name: "redis", Type: "lock.redis", Env: "REDIS_ADDR", connection: func(string) map[string]string {
		return map[string]string{"redisHost": os.Getenv("REDIS_ADDR")}
	}},
	// One fixed table: this module cannot drop tables (no driver), and
	// every test uses its own resource ids, released or expiring.
	{Name: "postgresql", Type: "lock.postgresql", Env: "PG_DSN", connection: func(string) map[string]string {
		return map[string]string{"connectionString": os.Getenv("PG_DSN"), "tableName": "mecha_sdk_locks"}
	}},
}

func (ls lockStore) requireService(t testing.TB) {
	t.Helper()
	stateStore{Name: ls.Name, Env: ls.Env}.requireService(t)
}

func (ls lockStore) resources(dir string, extra map[string]string) map[string]string {
	md := ls.connection(dir)
	for k, v := range extra {
		md[k] = v
	}
	return map[string]string{lockStoreName + ".yaml": componentYAML(lockStoreName, ls.Type, md)}
}

func TestSDKLock(t *testing.T) {
	t.Parallel()
	for _, ls := range lockStores {
		t.Run(ls.Name, func(t *testing.T) {
			t.Parallel()
			ls.requireService(t)
			s := startSidecar(t, sidecarConfig{Resources: ls.resources(t.TempDir(), nil)})
			testSDKLock(t, s.sdkClient(t))
		})
	}
}

func testSDKLock(t *testing.T, c client.Client) {
	run := "sdk-" + uniqueID() + "-"
	lock := func(t *testing.T, res, owner string, expiry int32) bool {
		t.Helper()
		resp, err := c.TryLockAlpha1(ctxT(t), lockStoreName, &client.LockRequest{ResourceID: res, LockOwner: owner, ExpiryInSeconds: expiry})
		must(t, fmt.Sprintf("TryLockAlpha1(%s, %s)", res, owner), err)
		return resp.Success
	}
	unlock := func(t *testing.T, res, owner string, wantCode int32, wantName string) {
		t.Helper()
		resp, err := c.UnlockAlpha1(ctxT(t), lockStoreName, &client.UnlockRequest{ResourceID: res, LockOwner: owner})
		must(t, fmt.Sprintf("UnlockAlpha1(%s, %s)", res, owner), err)
		if resp.StatusCode != wantCode || resp.Status != wantName {
			t.Fatalf("UnlockAlpha1(%s, %s) = %d %s, want %d %s", res, owner, resp.StatusCode, resp.Status, wantCode, wantName)
		}
	}

	t.Run("LockUnlock", func(t *testing.T) {
		res := run + "order-42"
		if !lock(t, res, "owner-a", 60) {
			t.Fatal("first lock failed")
		}
		if lock(t, res, "owner-b", 60) {
			t.Fatal("a second owner got a held lock")
		}
		if lock(t, res, "owner-a", 60) {
			t.Fatal("the owner re-locked a held lock; Dapr locks are not re-entrant")
		}
		unlock(t, res, "owner-b", 2, "LOCK_BELONGS_TO_OTHERS")
		unlock(t, res, "owner-a", 0, "SUCCESS")
		unlock(t, res, "owner-a", 1, "LOCK_DOES_NOT_EXIST")
		if !lock(t, res, "owner-b", 60) {
			t.Fatal("lock after unlock failed")
		}
		unlock(t, res, "owner-b", 0, "SUCCESS")
		unlock(t, run+"never-locked", "owner-a", 1, "LOCK_DOES_NOT_EXIST")
	})

	t.Run("UnicodeIDs", func(t *testing.T) {
		res, owner := run+"ресурс/🔒 鍵", "владелец 👤"
		if !lock(t, res, owner, 60) {
			t.Fatal("lock failed")
		}
		if lock(t, res, "other", 60) {
			t.Fatal("second lock succeeded")
		}
		unlock(t, res, owner, 0, "SUCCESS")
	})

	t.Run("ExpiryReleases", func(t *testing.T) {
		res := run + "expiry"
		start := time.Now()
		if !lock(t, res, "owner-a", 1) {
			t.Fatal("lock failed")
		}
		deadline := start.Add(10 * time.Second)
		for !lock(t, res, "owner-b", 60) {
			if time.Now().After(deadline) {
				t.Fatalf("a lock with expiryInSeconds=1 was still held after %v", time.Since(start))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if el := time.Since(start); el < 900*time.Millisecond {
			t.Fatalf("a 1s lock was released after %v", el)
		}
		unlock(t, res, "owner-a", 2, "LOCK_BELONGS_TO_OTHERS")
		unlock(t, res, "owner-b", 0, "SUCCESS")
	})

	t.Run("BadRequests", func(t *testing.T) {
		tests := []struct {
			name  string
			store string
			req   client.LockRequest
			code  codes.Code
			msg   string
		}{
			{"empty owner", lockStoreName, client.LockRequest{ResourceID: "r", ExpiryInSeconds: 10}, codes.InvalidArgument, "LockOwner is empty in lock store lockstore"},
			{"empty resource", lockStoreName, client.LockRequest{LockOwner: "o", ExpiryInSeconds: 10}, codes.InvalidArgument, "ResourceId is empty in lock store lockstore"},
			{"zero expiry", lockStoreName, client.LockRequest{ResourceID: "r", LockOwner: "o"}, codes.InvalidArgument, "ExpiryInSeconds is not positive in lock store lockstore"},
			{"unknown store", "nope", client.LockRequest{ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 10}, codes.InvalidArgument, "lock store nope not found"},
			{"illegal resource", lockStoreName, client.LockRequest{ResourceID: "a||b", LockOwner: "o", ExpiryInSeconds: 10}, codes.Internal, "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := c.TryLockAlpha1(ctxT(t), tt.store, &tt.req)
				expectCode(t, "TryLockAlpha1", err, tt.code)
				if got := innerStatus(err).Message(); got != tt.msg {
					t.Fatalf("TryLockAlpha1 message %q, want %q (resp %v)", got, tt.msg, resp)
				}
			})
		}
		_, err := c.UnlockAlpha1(ctxT(t), lockStoreName, &client.UnlockRequest{ResourceID: "r"})
		expectCode(t, "UnlockAlpha1 without owner", err, codes.InvalidArgument)
		_, err = c.UnlockAlpha1(ctxT(t), "nope", &client.UnlockRequest{ResourceID: "r", LockOwner: "o"})
		expectCode(t, "UnlockAlpha1 unknown store", err, codes.InvalidArgument)
		// The SDK refuses an empty store name before calling.
		if _, err := c.TryLockAlpha1(ctxT(t), "", &client.LockRequest{ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 1}); err == nil {
			t.Fatal("TryLockAlpha1 with no store name: no error")
		}
	})
}

// innerStatus is the gRPC status the sidecar sent; the SDK wraps it ("error
// getting lock: ..."), and status.Convert would report the wrapper's text.
func innerStatus(err error) *status.Status {
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		return gs.GRPCStatus()
	}
	return status.Convert(err)
}

// TestSDKLockNotConfigured: without a lock store the API answers
// FailedPrecondition (gRPC) and 500 ERR_LOCK_STORE_NOT_CONFIGURED (HTTP).
func TestSDKLockNotConfigured(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{})
	c := s.sdkClient(t)
	_, err := c.TryLockAlpha1(ctxT(t), lockStoreName, &client.LockRequest{ResourceID: "r", LockOwner: "o", ExpiryInSeconds: 10})
	expectCode(t, "TryLockAlpha1 without lock stores", err, codes.FailedPrecondition)
	_, err = c.UnlockAlpha1(ctxT(t), lockStoreName, &client.UnlockRequest{ResourceID: "r", LockOwner: "o"})
	expectCode(t, "UnlockAlpha1 without lock stores", err, codes.FailedPrecondition)
	r := s.doJSON(t, http.MethodPost, "/v1.0-alpha1/lock/"+lockStoreName, map[string]any{"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 10})
	expectError(t, "POST lock without lock stores", r, http.StatusInternalServerError, "ERR_LOCK_STORE_NOT_CONFIGURED")
}

// TestHTTPLock: the HTTP shapes, and that HTTP and gRPC see the same locks.
func TestHTTPLock(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: lockStores[0].resources(t.TempDir(), nil)})
	c := s.sdkClient(t)
	res := "http-" + uniqueID()
	r := s.doJSON(t, http.MethodPost, "/v1.0-alpha1/lock/"+lockStoreName, map[string]any{"resourceId": res, "lockOwner": "http", "expiryInSeconds": 60})
	if r.Status != http.StatusOK || string(r.Body) != `{"success":true}` {
		t.Fatalf("POST lock = %s, want 200 {\"success\":true}", r)
	}
	resp, err := c.TryLockAlpha1(ctxT(t), lockStoreName, &client.LockRequest{ResourceID: res, LockOwner: "grpc", ExpiryInSeconds: 60})
	must(t, "TryLockAlpha1", err)
	if resp.Success {
		t.Fatal("gRPC got a lock held over HTTP")
	}
	r = s.doJSON(t, http.MethodPost, "/v1.0-alpha1/lock/"+lockStoreName, map[string]any{"resourceId": res, "lockOwner": "other", "expiryInSeconds": 60})
	if r.Status != http.StatusOK || string(r.Body) != `{"success":false}` {
		t.Fatalf("POST lock of a held lock = %s, want 200 {\"success\":false}", r)
	}
	r = s.doJSON(t, http.MethodPost, "/v1.0-alpha1/unlock/"+lockStoreName, map[string]any{"resourceId": res, "lockOwner": "grpc"})
	if r.Status != http.StatusOK || string(r.Body) != `{"status":2}` {
		t.Fatalf("POST unlock by another owner = %s, want 200 {\"status\":2}", r)
	}
	u, err := c.UnlockAlpha1(ctxT(t), lockStoreName, &client.UnlockRequest{ResourceID: res, LockOwner: "http"})
	must(t, "UnlockAlpha1", err)
	if u.StatusCode != 0 {
		t.Fatalf("gRPC unlock of the HTTP lock = %d %s", u.StatusCode, u.Status)
	}
	r = s.doJSON(t, http.MethodPost, "/v1.0-alpha1/unlock/"+lockStoreName, map[string]any{"resourceId": res, "lockOwner": "http"})
	if r.Status != http.StatusOK || string(r.Body) != `{"status":1}` {
		t.Fatalf("POST unlock of a released lock = %s, want 200 {\"status\":1}", r)
	}
	for _, bad := range []struct {
		path string
		body map[string]any
		code string
	}{
		{"lock", map[string]any{"resourceId": res, "lockOwner": "", "expiryInSeconds": 60}, "ERR_MALFORMED_REQUEST"},
		{"lock", map[string]any{"resourceId": res, "lockOwner": "o", "expiryInSeconds": 0}, "ERR_MALFORMED_REQUEST"},
		{"unlock", map[string]any{"resourceId": "", "lockOwner": "o"}, "ERR_MALFORMED_REQUEST"},
	} {
		r := s.doJSON(t, http.MethodPost, "/v1.0-alpha1/"+bad.path+"/"+lockStoreName, bad.body)
		expectError(t, "POST "+bad.path+" bad request", r, http.StatusBadRequest, bad.code)
	}
	r = s.doJSON(t, http.MethodPost, "/v1.0-alpha1/lock/nope", map[string]any{"resourceId": res, "lockOwner": "o", "expiryInSeconds": 60})
	expectError(t, "POST lock unknown store", r, http.StatusBadRequest, "ERR_LOCK_STORE_NOT_FOUND")
}

// TestSDKLockKeyPrefix runs two sidecar processes (two app ids) on one
// SQLite file: by default each app has its own locks (Dapr prefixes lock
// keys with the app id); with keyPrefix=name they share them.
func TestSDKLockKeyPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		extra  map[string]string
		shared bool
	}{
		{"appid", nil, false},
		{"name", map[string]string{"keyPrefix": "name"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			res := lockStores[1].resources(dir, tc.extra) // sqlite, one file
			a := startSidecar(t, sidecarConfig{Resources: res})
			b := startSidecar(t, sidecarConfig{Resources: res})
			ca, cb := a.sdkClient(t), b.sdkClient(t)
			id := "shared-" + uniqueID()

			got, err := ca.TryLockAlpha1(ctxT(t), lockStoreName, &client.LockRequest{ResourceID: id, LockOwner: "owner-a", ExpiryInSeconds: 60})
			must(t, "app a: TryLockAlpha1", err)
			if !got.Success {
				t.Fatal("app a: lock failed")
			}
			got, err = cb.TryLockAlpha1(ctxT(t), lockStoreName, &client.LockRequest{ResourceID: id, LockOwner: "owner-b", ExpiryInSeconds: 60})
			must(t, "app b: TryLockAlpha1", err)
			if got.Success == tc.shared {
				if !tc.shared {
					knownBug(t, "lock-key-prefix-wiring", "app %s got app %s's lock: the runtime does not pass the app id to the lock block yet", b.AppID, a.AppID)
				}
				t.Fatalf("app b: lock = %v, want %v (shared = %v)", got.Success, !tc.shared, tc.shared)
			}
			u, err := cb.UnlockAlpha1(ctxT(t), lockStoreName, &client.UnlockRequest{ResourceID: id, LockOwner: "owner-a"})
			must(t, "app b: UnlockAlpha1", err)
			want := int32(2) // app b's lock is owner-b's
			if tc.shared {
				want = 0 // one lock: owner-a may release it through app b
			}
			if u.StatusCode != want {
				t.Fatalf("app b: unlock by owner-a = %d %s, want %d", u.StatusCode, u.Status, want)
			}
		})
	}
}
