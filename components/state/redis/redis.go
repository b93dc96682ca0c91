// Package redis is the state.redis component: a state store on a single Redis
// node, with ETags, TTLs and atomic transactions.
//
// It keeps Dapr's storage layout so that daprd and Mecha can share a
// database: every key is a Redis hash with the field "data" (the value's raw
// bytes) and the field "version" (an integer, bumped by HINCRBY on every
// write, which is the key's ETag). A TTL is the hash's own expiry. Other
// fields, such as the "first-write" marker daprd sets, are left alone.
//
// Every conditional operation is one Lua script, so an ETag check and the
// write it guards are atomic; a transaction is a single script that checks
// all of its operations before it applies any of them.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
	"github.com/mecha-dev/mecha/components/state"
)

// readScript reads many keys: for each one it returns data (nil when the
// key is missing), version (nil when absent), the PTTL in milliseconds (-1:
// no expiry) and an error message (nil unless that key alone failed, for
// example because it holds a value that is not a hash).
const readScript = `
local out = {}
for _, k in ipairs(KEYS) do
  local v = redis.pcall("HMGET", k, "data", "version")
  if v.err then
    out[#out+1] = false; out[#out+1] = false; out[#out+1] = -2; out[#out+1] = v.err
  else
    local pttl = -2
    if v[1] then pttl = redis.call("PTTL", k) end
    out[#out+1] = v[1]; out[#out+1] = v[2]; out[#out+1] = pttl; out[#out+1] = false
  end
end
return out`

// setScript writes KEYS[1]. ARGV: etag ("" for none), first-write ("1":
// the key must not exist), value, TTL in milliseconds ("0": no expiry).
// It returns the new version, or -1 when the condition fails. The version is
// bumped before the data is written so that a corrupt version field fails
// the script before anything changes.
const setScript = `
local k = KEYS[1]
if ARGV[1] ~= "" then
  if redis.call("HGET", k, "version") ~= ARGV[1] then return -1 end
elseif ARGV[2] == "1" then
  if redis.call("EXISTS", k) == 1 then return -1 end
end
local v = redis.call("HINCRBY", k, "version", 1)
redis.call("HSET", k, "data", ARGV[3])
if ARGV[4] ~= "0" then redis.call("PEXPIRE", k, ARGV[4]) else redis.call("PERSIST", k) end
return v`

// deleteScript deletes KEYS[1] if its version is ARGV[1]; it returns -1
// when it is not (or the key is missing).
const deleteScript = `
if redis.call("HGET", KEYS[1], "version") ~= ARGV[1] then return -1 end
return redis.call("DEL", KEYS[1])`

// multiScript applies a transaction: KEYS[i] is operation i's key and
// ARGV[5i-4..5i] are its kind ("set" or "del"), etag, first-write flag,
// value and TTL in milliseconds, as in setScript. The first loop checks every
// condition against the state as the earlier operations leave it, without
// writing; it returns the 1-based index of the first operation that fails.
// Only when all pass does the second loop write, and it returns 0. Every
// Redis error that could stop the second loop half way (a key that is not a
// hash, a version that is not an integer) is raised by the first.
const multiScript = `
local known = {}
local function version(k)
  local v = known[k]
  if v == nil then
    if redis.call("EXISTS", k) == 0 then
      v = false
    else
      v = redis.call("HGET", k, "version") or ""
    end
    known[k] = v
  end
  return v
end
for i, k in ipairs(KEYS) do
  local j = (i - 1) * 5
  local kind, etag, fw = ARGV[j+1], ARGV[j+2], ARGV[j+3]
  if kind == "del" and etag == "" then
    known[k] = false
  else
    local cur = version(k)
    if etag ~= "" then
      if cur ~= etag then return i end
    elseif fw == "1" and cur then
      return i
    end
    if kind == "del" then
      known[k] = false
    else
      local n = 0
      if cur and cur ~= "" then
        n = tonumber(cur)
        if not n then return redis.error_reply("ERR version of key " .. k .. " is not an integer") end
      end
      known[k] = string.format("%d", n + 1)
    end
  end
end
for i, k in ipairs(KEYS) do
  local j = (i - 1) * 5
  if ARGV[j+1] == "del" then
    redis.call("DEL", k)
  else
    redis.call("HINCRBY", k, "version", 1)
    redis.call("HSET", k, "data", ARGV[j+4])
    if ARGV[j+5] ~= "0" then redis.call("PEXPIRE", k, ARGV[j+5]) else redis.call("PERSIST", k) end
  end
end
return 0`

// Store is the Redis state store.
type Store struct {
	log *slog.Logger

	client *goredis.Client
	addr   string
	ttl    time.Duration // default TTL of writes without one
	read   *goredis.Script
	set    *goredis.Script
	del    *goredis.Script
	multi  *goredis.Script

	closeMu sync.Mutex
	closed  bool
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.BulkGetter    = (*Store)(nil)
	_ state.Pinger        = (*Store)(nil)
)

// New returns an uninitialised store. It does no I/O.
func New(deps components.Deps) state.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{
		log:   log,
		read:  goredis.NewScript(readScript),
		set:   goredis.NewScript(setScript),
		del:   goredis.NewScript(deleteScript),
		multi: goredis.NewScript(multiScript),
	}
}

// Init decodes the metadata (see settings for the properties), connects and
// pings Redis. It fails when Redis does not answer before ctx is done, or
// within dialTimeout+readTimeout (at least 10s) when ctx has no deadline
// (see redisconn.Connect).
func (s *Store) Init(ctx context.Context, md components.Metadata) error {
	cfg, warnings, err := parseSettings(md)
	if err != nil {
		return fmt.Errorf("redis: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		s.log.Warn(w)
	}
	client, err := redisconn.Connect(ctx, s.log, cfg.Settings)
	if err != nil {
		return err
	}
	s.client, s.addr, s.ttl = client, cfg.Addr, cfg.TTL
	return nil
}

// Features reports ETAG, TRANSACTIONAL and TTL.
func (s *Store) Features() []state.Feature {
	return []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL}
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return wrap(ctx, "ping "+s.addr, err)
	}
	return nil
}

// Get reads one key in one round trip (data, version and PTTL together).
func (s *Store) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	items, err := s.readKeys(ctx, []string{req.Key})
	if err != nil {
		return nil, err
	}
	it := items[0]
	if it.Error != "" {
		return nil, fmt.Errorf("redis: get %q: %s", req.Key, it.Error)
	}
	return &state.GetResponse{Data: it.Data, ETag: it.ETag, ExpireTime: it.ExpireTime}, nil
}

// BulkGet reads many keys in one round trip. A key holding something other
// than a state hash gets an Error of its own.
func (s *Store) BulkGet(ctx context.Context, keys []string, _ state.GetOptions) ([]state.BulkItem, error) {
	if len(keys) == 0 {
		return []state.BulkItem{}, nil
	}
	return s.readKeys(ctx, keys)
}

func (s *Store) readKeys(ctx context.Context, keys []string) ([]state.BulkItem, error) {
	res, err := s.read.Run(ctx, s.client, keys).Slice()
	if err != nil {
		return nil, wrap(ctx, "get", err)
	}
	if len(res) != 4*len(keys) {
		return nil, fmt.Errorf("redis: get: unexpected reply of %d values for %d keys", len(res), len(keys))
	}
	now := time.Now()
	out := make([]state.BulkItem, len(keys))
	for i, k := range keys {
		r := res[4*i : 4*i+4]
		out[i].Key = k
		if msg, ok := r[3].(string); ok {
			out[i].Error = msg
			continue
		}
		data, ok := r[0].(string)
		if !ok {
			continue // missing
		}
		// make+copy: an empty value must read back as a non-nil slice.
		out[i].Data = make([]byte, len(data))
		copy(out[i].Data, data)
		if v, ok := r[1].(string); ok {
			out[i].ETag = v
		}
		if ms, ok := r[2].(int64); ok && ms >= 0 {
			t := now.Add(time.Duration(ms) * time.Millisecond)
			out[i].ExpireTime = &t
		}
	}
	return out, nil
}

// Set writes one key. With an ETag the write succeeds only if the stored
// version equals it; with first-write concurrency and no ETag, only if the
// key does not exist.
func (s *Store) Set(ctx context.Context, req *state.SetRequest) error {
	args, err := s.setArgs(req)
	if err != nil {
		return err
	}
	n, err := s.set.Run(ctx, s.client, []string{req.Key}, args[:]...).Int64()
	if err != nil {
		return wrap(ctx, fmt.Sprintf("set %q", req.Key), err)
	}
	if n < 0 {
		return fmt.Errorf("redis: set %q: %w", req.Key, state.ErrETagMismatch)
	}
	return nil
}

// Delete removes one key; with an ETag, only if the stored version equals
// it. Deleting a missing key without an ETag succeeds.
func (s *Store) Delete(ctx context.Context, req *state.DeleteRequest) error {
	etag, err := parseETag(req.ETag)
	if err != nil {
		return err
	}
	if etag == "" {
		if err := s.client.Del(ctx, req.Key).Err(); err != nil {
			return wrap(ctx, fmt.Sprintf("delete %q", req.Key), err)
		}
		return nil
	}
	n, err := s.del.Run(ctx, s.client, []string{req.Key}, etag).Int64()
	if err != nil {
		return wrap(ctx, fmt.Sprintf("delete %q", req.Key), err)
	}
	if n < 0 {
		return fmt.Errorf("redis: delete %q: %w", req.Key, state.ErrETagMismatch)
	}
	return nil
}

// Multi applies the operations atomically, in order, in one script: if any
// ETag or first-write condition fails, nothing is written and the error is
// ErrETagMismatch.
func (s *Store) Multi(ctx context.Context, req *state.TransactionRequest) error {
	if len(req.Operations) == 0 {
		return nil
	}
	keys := make([]string, len(req.Operations))
	args := make([]any, 0, 5*len(req.Operations))
	for i, op := range req.Operations {
		switch {
		case op.Set != nil:
			a, err := s.setArgs(op.Set)
			if err != nil {
				return fmt.Errorf("redis: transaction operation %d: %w", i, err)
			}
			keys[i] = op.Set.Key
			args = append(args, "set", a[0], a[1], a[2], a[3])
		case op.Delete != nil:
			etag, err := parseETag(op.Delete.ETag)
			if err != nil {
				return fmt.Errorf("redis: transaction operation %d: %w", i, err)
			}
			keys[i] = op.Delete.Key
			args = append(args, "del", etag, "0", "", "0")
		default:
			return fmt.Errorf("redis: transaction operation %d is neither a set nor a delete", i)
		}
	}
	n, err := s.multi.Run(ctx, s.client, keys, args...).Int64()
	if err != nil {
		return wrap(ctx, "transaction", err)
	}
	if n > 0 {
		return fmt.Errorf("redis: transaction operation %d (key %q): %w", n-1, keys[n-1], state.ErrETagMismatch)
	}
	return nil
}

// setArgs returns setScript's ARGV for req: etag, first-write flag, value
// and TTL in milliseconds.
func (s *Store) setArgs(req *state.SetRequest) ([4]any, error) {
	etag, err := parseETag(req.ETag)
	if err != nil {
		return [4]any{}, err
	}
	firstWrite := "0"
	if req.ETag == nil && req.Options.Concurrency == state.FirstWrite {
		firstWrite = "1"
	}
	ttl, err := s.effectiveTTL(req)
	if err != nil {
		return [4]any{}, err
	}
	// Round up: a positive TTL under 1ms must not mean "no expiry".
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	return [4]any{etag, firstWrite, req.Value, strconv.FormatInt(int64(ms), 10)}, nil
}

// effectiveTTL is req.TTL when set; otherwise the request's ttlInSeconds
// metadata (Dapr's spelling; -1 means no expiry), otherwise the
// component's default.
func (s *Store) effectiveTTL(req *state.SetRequest) (time.Duration, error) {
	if req.TTL > 0 {
		return req.TTL, nil
	}
	md := components.Metadata{Properties: req.Metadata}
	secs, err := md.Int("ttlInSeconds", 0)
	if err != nil {
		return 0, fmt.Errorf("redis: set %q: %w", req.Key, err)
	}
	switch {
	case secs > 0:
		return time.Duration(secs) * time.Second, nil
	case secs < 0:
		return 0, nil
	}
	return s.ttl, nil
}

// parseETag validates an ETag and returns it in the canonical decimal form
// stored in the version field ("" for nil).
func parseETag(etag *string) (string, error) {
	if etag == nil {
		return "", nil
	}
	n, err := strconv.ParseInt(*etag, 10, 64)
	if err != nil {
		return "", fmt.Errorf("redis: etag %q is not an integer: %w", *etag, state.ErrETagInvalid)
	}
	return strconv.FormatInt(n, 10), nil
}

// wrap adds the operation to err. When ctx is done, the context's error is
// what callers get to match (go-redis reports an expired deadline as a
// socket timeout).
func wrap(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redis: %s: %v: %w", op, err, cerr)
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// Close closes the connection pool. It is idempotent and safe after a
// failed Init.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.client == nil || s.closed {
		return nil
	}
	s.closed = true
	return s.client.Close()
}
