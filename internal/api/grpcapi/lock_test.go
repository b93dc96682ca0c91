package grpcapi_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// lockStores returns the Component document of a lock store named
// "lockstore" on each backend; the external ones need REDIS_ADDR / PG_DSN.
func lockStores() []struct {
	name string
	yaml func(t *testing.T) string
} {
	return []struct {
		name string
		yaml func(t *testing.T) string
	}{
		{"in-memory", func(*testing.T) string { return mechatest.Component("lockstore", "lock.in-memory") }},
		{"sqlite", func(t *testing.T) string {
			return mechatest.Component("lockstore", "lock.sqlite", "connectionString", filepath.Join(t.TempDir(), "locks.db"))
		}},
		{"redis", func(t *testing.T) string {
			return mechatest.Component("lockstore", "lock.redis", "redisHost", mechatest.ServiceEnv(t, "REDIS_ADDR"))
		}},
		{"postgresql", func(t *testing.T) string {
			dsn := mechatest.ServiceEnv(t, "PG_DSN")
			table := fmt.Sprintf("lock_grpc_test_%d", time.Now().UnixNano())
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if conn, err := pgx.Connect(ctx, dsn); err == nil {
					conn.Exec(ctx, "DROP TABLE IF EXISTS "+table)
					conn.Close(ctx)
				}
			})
			return mechatest.Component("lockstore", "lock.postgresql", "connectionString", dsn, "tableName", table)
		}},
	}
}

func lockApp(o *runtime.Options) { o.AppID = fmt.Sprintf("glock%d", time.Now().UnixNano()) }

func TestLockOverGRPC(t *testing.T) {
	for _, sc := range lockStores() {
		t.Run(sc.name, func(t *testing.T) {
			s := mechatest.Start(t, lockApp, sc.yaml(t))
			testLockGRPC(t, s.Dapr)
		})
	}
}

func testLockGRPC(t *testing.T, c runtimev1.DaprClient) {
	run := fmt.Sprintf("grpc-%d-", time.Now().UnixNano())
	ctx := context.Background()
	try := func(t *testing.T, res, owner string, expiry int32) bool {
		t.Helper()
		resp, err := c.TryLockAlpha1(ctx, &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: res, LockOwner: owner, ExpiryInSeconds: expiry})
		if err != nil {
			t.Fatalf("TryLockAlpha1(%q, %q): %v", res, owner, err)
		}
		return resp.GetSuccess()
	}
	unlock := func(t *testing.T, res, owner string) runtimev1.UnlockResponse_Status {
		t.Helper()
		resp, err := c.UnlockAlpha1(ctx, &runtimev1.UnlockRequest{StoreName: "lockstore", ResourceId: res, LockOwner: owner})
		if err != nil {
			t.Fatalf("UnlockAlpha1(%q, %q): %v", res, owner, err)
		}
		return resp.GetStatus()
	}

	t.Run("statuses", func(t *testing.T) {
		res := run + "order-🔒"
		steps := []struct {
			op     string
			owner  string
			wantOK bool
			wantSt runtimev1.UnlockResponse_Status
		}{
			{"lock", "a", true, 0},
			{"lock", "b", false, 0},
			{"lock", "a", false, 0}, // not re-entrant
			{"unlock", "b", false, runtimev1.UnlockResponse_LOCK_BELONGS_TO_OTHERS},
			{"unlock", "a", false, runtimev1.UnlockResponse_SUCCESS},
			{"unlock", "a", false, runtimev1.UnlockResponse_LOCK_DOES_NOT_EXIST},
			{"lock", "b", true, 0},
			{"unlock", "b", false, runtimev1.UnlockResponse_SUCCESS},
		}
		for i, st := range steps {
			if st.op == "lock" {
				if got := try(t, res, st.owner, 60); got != st.wantOK {
					t.Fatalf("step %d: lock by %s = %v, want %v", i, st.owner, got, st.wantOK)
				}
				continue
			}
			if got := unlock(t, res, st.owner); got != st.wantSt {
				t.Fatalf("step %d: unlock by %s = %v, want %v", i, st.owner, got, st.wantSt)
			}
		}
	})

	t.Run("expiry", func(t *testing.T) {
		res := run + "expiry"
		if !try(t, res, "a", 1) {
			t.Fatal("lock failed")
		}
		mechatest.Eventually(t, 10*time.Second, func() error {
			if !try(t, res, "b", 60) {
				return fmt.Errorf("a 1s lock is still held")
			}
			return nil
		})
		if got := unlock(t, res, "b"); got != runtimev1.UnlockResponse_SUCCESS {
			t.Fatalf("unlock = %v", got)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		tests := []struct {
			name   string
			lock   *runtimev1.TryLockRequest
			unlock *runtimev1.UnlockRequest
			code   codes.Code
			msg    string
		}{
			{"empty resource", &runtimev1.TryLockRequest{StoreName: "lockstore", LockOwner: "o", ExpiryInSeconds: 10}, &runtimev1.UnlockRequest{StoreName: "lockstore", LockOwner: "o"},
				codes.InvalidArgument, "ResourceId is empty in lock store lockstore"},
			{"empty owner", &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: "r", ExpiryInSeconds: 10}, &runtimev1.UnlockRequest{StoreName: "lockstore", ResourceId: "r"},
				codes.InvalidArgument, "LockOwner is empty in lock store lockstore"},
			{"zero expiry", &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: "r", LockOwner: "o"}, nil,
				codes.InvalidArgument, "ExpiryInSeconds is not positive in lock store lockstore"},
			{"negative expiry", &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: "r", LockOwner: "o", ExpiryInSeconds: -3}, nil,
				codes.InvalidArgument, "ExpiryInSeconds is not positive in lock store lockstore"},
			{"unknown store", &runtimev1.TryLockRequest{StoreName: "nope", ResourceId: "r", LockOwner: "o", ExpiryInSeconds: 10}, &runtimev1.UnlockRequest{StoreName: "nope", ResourceId: "r", LockOwner: "o"},
				codes.InvalidArgument, "lock store nope not found"},
			{"no store name", &runtimev1.TryLockRequest{ResourceId: "r", LockOwner: "o", ExpiryInSeconds: 10}, &runtimev1.UnlockRequest{ResourceId: "r", LockOwner: "o"},
				codes.InvalidArgument, "lock store  not found"},
			{"illegal resource", &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: "x||y", LockOwner: "o", ExpiryInSeconds: 10}, nil,
				codes.Internal, "failed to try acquiring lock: input key/keyPrefix 'x||y' can't contain '||'"},
			{"illegal resource unlock", nil, &runtimev1.UnlockRequest{StoreName: "lockstore", ResourceId: "x||y", LockOwner: "o"},
				codes.Internal, "failed to release lock: input key/keyPrefix 'x||y' can't contain '||'"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.lock != nil {
					resp, err := c.TryLockAlpha1(ctx, tt.lock)
					wantStatus(t, "TryLockAlpha1", resp, err, tt.code, tt.msg)
				}
				if tt.unlock != nil {
					resp, err := c.UnlockAlpha1(ctx, tt.unlock)
					wantStatus(t, "UnlockAlpha1", resp, err, tt.code, tt.msg)
				}
			})
		}
	})
}

func wantStatus(t *testing.T, what string, resp any, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("%s = %v, %v (%q); want %v %q", what, resp, st.Code(), st.Message(), code, msg)
	}
}

func TestLockNotConfiguredOverGRPC(t *testing.T) {
	s := mechatest.Start(t, lockApp, mechatest.InMemory)
	ctx := context.Background()
	_, err := s.Dapr.TryLockAlpha1(ctx, &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: "r", LockOwner: "o", ExpiryInSeconds: 10})
	wantStatus(t, "TryLockAlpha1", nil, err, codes.FailedPrecondition, "lock store is not configured")
	_, err = s.Dapr.UnlockAlpha1(ctx, &runtimev1.UnlockRequest{StoreName: "lockstore", ResourceId: "r", LockOwner: "o"})
	wantStatus(t, "UnlockAlpha1", nil, err, codes.FailedPrecondition, "lock store is not configured")
	// The expiry is checked before the stores, as daprd does.
	_, err = s.Dapr.TryLockAlpha1(ctx, &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: "r", LockOwner: "o"})
	wantStatus(t, "TryLockAlpha1", nil, err, codes.InvalidArgument, "ExpiryInSeconds is not positive in lock store lockstore")
}

// TestLockOutageOverGRPC: a failing backend is codes.Internal.
func TestLockOutageOverGRPC(t *testing.T) {
	p := mechatest.StartProxy(t, mechatest.ServiceEnv(t, "REDIS_ADDR"))
	s := mechatest.Start(t, lockApp, mechatest.Component("lockstore", "lock.redis", "redisHost", p.Addr, "dialTimeout", "500ms"))
	p.SetDown(true)
	t.Cleanup(func() { p.SetDown(false) })
	ctx := context.Background()
	_, err := s.Dapr.TryLockAlpha1(ctx, &runtimev1.TryLockRequest{StoreName: "lockstore", ResourceId: "r", LockOwner: "o", ExpiryInSeconds: 10})
	if st, _ := status.FromError(err); st.Code() != codes.Internal {
		t.Fatalf("TryLockAlpha1 during outage = %v, want Internal", err)
	}
	_, err = s.Dapr.UnlockAlpha1(ctx, &runtimev1.UnlockRequest{StoreName: "lockstore", ResourceId: "r", LockOwner: "o"})
	if st, _ := status.FromError(err); st.Code() != codes.Internal {
		t.Fatalf("UnlockAlpha1 during outage = %v, want Internal", err)
	}
}
