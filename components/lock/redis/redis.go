// Package redis is the lock.redis component: distributed locks on a single
// Redis node, compatible with Dapr's lock.redis so that daprd and Mecha
// sidecars sharing a Redis exclude each other.
//
// A lock is one string key whose value is the owner, written with
// SET key owner NX PX expiry: the write happens only if the key is absent,
// and Redis itself drops it when the expiry passes. Unlock is a Lua script
// that deletes the key only when the caller owns it and returns Dapr's
// unlock status directly, so the check and the delete are atomic.
//
// Commands are not retried by default (maxRetries 0): a lock whose reply
// was lost would be retried into "already held" by its own owner, and a
// replayed unlock would report that the lock does not exist. Callers see the
// error and decide.
//
// Metadata (Dapr's names, case-insensitive): redisHost (required),
// redisPort, redisUsername, redisPassword, redisDB, enableTLS,
// insecureSkipTLSVerify, clientCert, clientKey, dialTimeout, readTimeout,
// writeTimeout, maxRetries, redisMinRetryInterval, maxRetryBackoff, poolSize,
// minIdleConns, poolTimeout, idleTimeout, maxConnAge.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
	"github.com/mecha-dev/mecha/components/lock"
)

// unlockScript deletes KEYS[1] if it holds ARGV[1] and returns the Dapr
// unlock status: 0 success, 1 the lock does not exist, 2 it belongs to
// someone else.
const unlockScript = `
local v = redis.call("GET", KEYS[1])
if not v then return 1 end
if v ~= ARGV[1] then return 2 end
redis.call("DEL", KEYS[1])
return 0`

// Store is the Redis lock store.
type Store struct {
	log    *slog.Logger
	unlock *goredis.Script

	client *goredis.Client
	addr   string

	closeMu sync.Mutex
	closed  bool
}

var _ lock.Store = (*Store)(nil)

// New returns an uninitialised store. It does no I/O.
func New(deps components.Deps) lock.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log, unlock: goredis.NewScript(unlockScript)}
}

// Init decodes the metadata, connects and pings Redis. Without a deadline in
// ctx the ping is bounded by dialTimeout+readTimeout (at least 10s).
func (s *Store) Init(ctx context.Context, md components.Metadata) error {
	cfg, warnings, err := parseSettings(md)
	if err != nil {
		return fmt.Errorf("redis: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		s.log.Warn(w)
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = -1 // go-redis reads 0 as "its default, 3"; -1 is none
	}
	client, err := redisconn.Connect(ctx, s.log, cfg)
	if err != nil {
		return err
	}
	s.client, s.addr = client, cfg.Addr
	return nil
}

// TryLock runs SET key owner NX PX expiry.
func (s *Store) TryLock(ctx context.Context, req lock.TryLockRequest) (bool, error) {
	if req.Expiry <= 0 {
		return false, fmt.Errorf("redis: lock expiry must be positive, got %v", req.Expiry)
	}
	ok, err := s.client.SetNX(ctx, req.ResourceID, req.LockOwner, max(req.Expiry, time.Millisecond)).Result()
	if err != nil {
		return false, s.wrap(ctx, "lock", err)
	}
	return ok, nil
}

// Unlock runs the owner-checked delete script.
func (s *Store) Unlock(ctx context.Context, req lock.UnlockRequest) (lock.UnlockStatus, error) {
	n, err := s.unlock.Run(ctx, s.client, []string{req.ResourceID}, req.LockOwner).Int()
	if err != nil {
		return lock.InternalError, s.wrap(ctx, "unlock", err)
	}
	switch st := lock.UnlockStatus(n); st {
	case lock.Success, lock.LockDoesNotExist, lock.LockBelongsToOthers:
		return st, nil
	}
	return lock.InternalError, fmt.Errorf("redis: unlock script returned %d", n)
}

// wrap names the operation and the server, and keeps a context error
// recognisable (errors.Is) when the caller gave up.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redis %s on %s: %w (%w)", op, s.addr, cerr, err)
	}
	return fmt.Errorf("redis %s on %s: %w", op, s.addr, err)
}

// Close closes the connection pool. It is idempotent.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.client == nil || s.closed {
		return nil
	}
	s.closed = true
	return s.client.Close()
}
