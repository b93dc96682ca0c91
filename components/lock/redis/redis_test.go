package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/components/lock/locktest"
	"github.com/mecha-dev/mecha/components/lock/redis"
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func timeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// newStore returns an initialised store closed at the end of the test.
func newStore(tb testing.TB, props map[string]string) lock.Store {
	tb.Helper()
	s := redis.New(components.Deps{Logger: testLogger(tb)})
	if err := s.Init(timeout(tb, 10*time.Second), components.Metadata{Name: "lockstore", Type: "lock.redis", Properties: props}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	addr := locktest.ServiceEnv(t, "REDIS_ADDR")
	locktest.Run(t, func(t *testing.T) lock.Store {
		return newStore(t, map[string]string{"redisHost": addr})
	})
}

// TestDaprLayout checks that a lock is what daprd's lock.redis writes: a
// string key holding the owner, with the expiry as the key's TTL, so daprd
// and Mecha sidecars on one Redis exclude each other.
func TestDaprLayout(t *testing.T) {
	addr := locktest.ServiceEnv(t, "REDIS_ADDR")
	s := newStore(t, map[string]string{"redisHost": addr})
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { rc.Close() })
	ctx := timeout(t, 10*time.Second)
	key := fmt.Sprintf("lock||layout-%d||order-1", time.Now().UnixNano())
	t.Cleanup(func() { rc.Del(context.Background(), key) })

	if ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: key, LockOwner: "owner-1", Expiry: 30 * time.Second}); !ok || err != nil {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if v, err := rc.Get(ctx, key).Result(); v != "owner-1" || err != nil {
		t.Fatalf("GET %s = %q, %v; want the owner", key, v, err)
	}
	if ttl := rc.PTTL(ctx, key).Val(); ttl <= 29*time.Second || ttl > 30*time.Second {
		t.Fatalf("PTTL %s = %v, want about 30s", key, ttl)
	}
	// A lock daprd took (same layout) is honoured.
	other := key + "-daprd"
	t.Cleanup(func() { rc.Del(context.Background(), other) })
	rc.Set(ctx, other, "daprd-owner", time.Minute)
	if ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: other, LockOwner: "mecha", Expiry: time.Minute}); ok || err != nil {
		t.Fatalf("TryLock over daprd's lock = %v, %v; want false", ok, err)
	}
	if st, err := s.Unlock(ctx, lock.UnlockRequest{ResourceID: other, LockOwner: "daprd-owner"}); st != lock.Success || err != nil {
		t.Fatalf("Unlock(daprd's lock by its owner) = %v, %v", st, err)
	}
	if n := rc.Exists(ctx, other).Val(); n != 0 {
		t.Fatalf("key still exists after unlock")
	}
}

// TestWrongTypeKey: a key that is not a string (someone else's data) makes
// Unlock fail with an error and InternalError, not a wrong status.
func TestWrongTypeKey(t *testing.T) {
	addr := locktest.ServiceEnv(t, "REDIS_ADDR")
	s := newStore(t, map[string]string{"redisHost": addr})
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { rc.Close() })
	ctx := timeout(t, 10*time.Second)
	key := fmt.Sprintf("locktest-hash-%d", time.Now().UnixNano())
	t.Cleanup(func() { rc.Del(context.Background(), key) })
	rc.HSet(ctx, key, "data", "x")

	st, err := s.Unlock(ctx, lock.UnlockRequest{ResourceID: key, LockOwner: "o"})
	if err == nil || st != lock.InternalError {
		t.Fatalf("Unlock(hash key) = %v, %v; want InternalError and an error", st, err)
	}
	if ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: key, LockOwner: "o", Expiry: time.Second}); ok || err != nil {
		t.Fatalf("TryLock(existing key) = %v, %v; want false", ok, err)
	}
}

func TestInitErrors(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no host", map[string]string{}, `"redisHost": is required`},
		{"bad port", map[string]string{"redisHost": "localhost", "redisPort": "x"}, `"redisPort"`},
		{"bad db", map[string]string{"redisHost": "localhost", "redisDB": "-1"}, `"redisDB": must not be negative`},
		{"bad duration", map[string]string{"redisHost": "localhost", "dialTimeout": "soon"}, `"dialTimeout"`},
		{"cluster", map[string]string{"redisHost": "localhost", "redisType": "cluster"}, `"redisType"`},
		{"several hosts", map[string]string{"redisHost": "a:1,b:2"}, "only a single node"},
		{"half a client cert", map[string]string{"redisHost": "localhost", "enableTLS": "true", "clientCert": "x"}, "must be set together"},
		{"unreachable", map[string]string{"redisHost": dead, "dialTimeout": "200ms"}, "cannot reach " + dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redis.New(components.Deps{})
			defer s.Close()
			err := s.Init(timeout(t, 5*time.Second), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestUnreachableAfterInit: calls during an outage fail promptly with an
// error instead of hanging.
func TestUnreachableAfterInit(t *testing.T) {
	addr := locktest.ServiceEnv(t, "REDIS_ADDR")
	s := newStore(t, map[string]string{"redisHost": addr})
	s.Close()
	ctx := timeout(t, 5*time.Second)
	if _, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: "x", LockOwner: "o", Expiry: time.Second}); err == nil {
		t.Fatal("TryLock on a closed store: no error")
	}
	if st, err := s.Unlock(ctx, lock.UnlockRequest{ResourceID: "x", LockOwner: "o"}); err == nil || st != lock.InternalError {
		t.Fatalf("Unlock on a closed store = %v, %v", st, err)
	}
}
