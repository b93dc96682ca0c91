package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/redis"
)

// rawValue is the value saved by gRPC and direct scenarios: size printable
// bytes.
func rawValue(size int) []byte {
	v := make([]byte, size)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// jsonValue is the value saved over HTTP: a JSON string whose encoding is
// exactly size bytes (quotes included), so that every scenario stores and
// reads back size bytes.
func jsonValue(size int) []byte {
	v := rawValue(size)
	v[0], v[size-1] = '"', '"'
	return v
}

// keySeparator is Dapr's key separator: the sidecar stores "appid||key".
const keySeparator = "||"

// workerKey is worker id's key number k.
func workerKey(prefix string, id, k int) string {
	return prefix + "w" + strconv.Itoa(id) + "-" + strconv.Itoa(k)
}

// newHTTPClient returns a keep-alive client with an idle connection per
// worker, no proxy and no compression.
func newHTTPClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        2 * concurrency,
			MaxIdleConnsPerHost: 2 * concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// httpWorkers builds save+get pairs over the Dapr HTTP API at base
// ("http://127.0.0.1:3500") against store.
func httpWorkers(client *http.Client, base, store, keyPrefix string, keys, valueSize int) func(id int) (pairFunc, error) {
	value := jsonValue(valueSize)
	saveURL := strings.TrimRight(base, "/") + "/v1.0/state/" + url.PathEscape(store)
	return func(id int) (pairFunc, error) {
		getURLs := make([]string, keys)
		bodies := make([][]byte, keys)
		for k := range keys {
			key := workerKey(keyPrefix, id, k)
			getURLs[k] = saveURL + "/" + url.PathEscape(key)
			var b bytes.Buffer
			b.WriteString(`[{"key":`)
			b.WriteString(strconv.Quote(key))
			b.WriteString(`,"value":`)
			b.Write(value)
			b.WriteString(`}]`)
			bodies[k] = b.Bytes()
		}
		var buf bytes.Buffer
		return func(ctx context.Context, k int) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, saveURL, bytes.NewReader(bodies[k]))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			status, err := do(client, req, &buf)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			if status != http.StatusNoContent {
				return fmt.Errorf("save: HTTP %d: %.200s", status, buf.Bytes())
			}
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, getURLs[k], nil)
			if err != nil {
				return err
			}
			status, err = do(client, req, &buf)
			if err != nil {
				return fmt.Errorf("get: %w", err)
			}
			if status != http.StatusOK || buf.Len() != valueSize {
				return fmt.Errorf("get: HTTP %d with %d bytes, want 200 with %d: %.200s", status, buf.Len(), valueSize, buf.Bytes())
			}
			return nil
		}, nil
	}
}

// do sends req and reads the whole body into buf, so the connection is
// reused.
func do(client *http.Client, req *http.Request, buf *bytes.Buffer) (int, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// dialGRPC opens n client connections to addr.
func dialGRPC(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy())
		if err != nil {
			closeConns(conns)
			return nil, err
		}
		c.Connect()
		conns = append(conns, c)
	}
	return conns, nil
}

func closeConns(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// grpcWorkers builds SaveState+GetState pairs; worker i uses conns[i%len].
func grpcWorkers(conns []*grpc.ClientConn, store, keyPrefix string, keys, valueSize int) func(id int) (pairFunc, error) {
	value := rawValue(valueSize)
	return func(id int) (pairFunc, error) {
		client := runtimev1.NewDaprClient(conns[id%len(conns)])
		saves := make([]*runtimev1.SaveStateRequest, keys)
		gets := make([]*runtimev1.GetStateRequest, keys)
		for k := range keys {
			key := workerKey(keyPrefix, id, k)
			saves[k] = &runtimev1.SaveStateRequest{StoreName: store, States: []*commonv1.StateItem{{Key: key, Value: value}}}
			gets[k] = &runtimev1.GetStateRequest{StoreName: store, Key: key}
		}
		return func(ctx context.Context, k int) error {
			if _, err := client.SaveState(ctx, saves[k]); err != nil {
				return fmt.Errorf("SaveState: %w", err)
			}
			resp, err := client.GetState(ctx, gets[k])
			if err != nil {
				return fmt.Errorf("GetState: %w", err)
			}
			if len(resp.GetData()) != valueSize {
				return fmt.Errorf("GetState: %d bytes, want %d", len(resp.GetData()), valueSize)
			}
			return nil
		}, nil
	}
}

// newRedisStore initialises the state.redis component on addr, configured
// as the sidecar configures it from a Component with only redisHost.
func newRedisStore(ctx context.Context, addr string) (state.Store, error) {
	s := redis.New(components.Deps{})
	md := components.Metadata{Name: "statestore", Type: "state.redis", Version: "v1", Properties: map[string]string{"redisHost": addr}}
	if err := s.Init(ctx, md); err != nil {
		return nil, err
	}
	return s, nil
}

// storeWorkers builds Set+Get pairs straight on a state store: the storage
// operations the sidecar performs for one HTTP or gRPC save and get.
func storeWorkers(s state.Store, keyPrefix string, keys, valueSize int) func(id int) (pairFunc, error) {
	value := rawValue(valueSize)
	return func(id int) (pairFunc, error) {
		sets := make([]state.SetRequest, keys)
		gets := make([]state.GetRequest, keys)
		for k := range keys {
			key := workerKey(keyPrefix, id, k)
			sets[k] = state.SetRequest{Key: key, Value: value}
			gets[k] = state.GetRequest{Key: key}
		}
		return func(ctx context.Context, k int) error {
			if err := s.Set(ctx, &sets[k]); err != nil {
				return err
			}
			resp, err := s.Get(ctx, &gets[k])
			if err != nil {
				return err
			}
			if len(resp.Data) != valueSize {
				return fmt.Errorf("get: %d bytes, want %d", len(resp.Data), valueSize)
			}
			return nil
		}, nil
	}
}

// newRawRedis returns a plain go-redis client with its defaults (the same
// pool size the component uses).
func newRawRedis(ctx context.Context, addr string) (*goredis.Client, error) {
	c := goredis.NewClient(&goredis.Options{
		Addr:                     addr,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	return c, nil
}

// rawWorkers builds HSET data + HGET data pairs with plain go-redis: the
// floor any Redis-backed state store can reach.
func rawWorkers(c *goredis.Client, keyPrefix string, keys, valueSize int) func(id int) (pairFunc, error) {
	value := rawValue(valueSize)
	return func(id int) (pairFunc, error) {
		names := make([]string, keys)
		for k := range keys {
			names[k] = workerKey(keyPrefix, id, k)
		}
		return func(ctx context.Context, k int) error {
			if err := c.HSet(ctx, names[k], "data", value).Err(); err != nil {
				return err
			}
			b, err := c.HGet(ctx, names[k], "data").Bytes()
			if err != nil {
				return err
			}
			if len(b) != valueSize {
				return fmt.Errorf("hget: %d bytes, want %d", len(b), valueSize)
			}
			return nil
		}, nil
	}
}

// deleteKeys removes every key matching prefix* (SCAN + UNLINK, never a
// flush: the server may be shared).
func deleteKeys(ctx context.Context, c *goredis.Client, prefix string) error {
	if prefix == "" || strings.ContainsAny(prefix, "*?[") {
		return errors.New("refusing to delete keys with an empty or pattern prefix")
	}
	iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
	batch := make([]string, 0, 500)
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.Unlink(ctx, batch...).Err()
	}
	return nil
}

// deleteKeysAfter is deleteKeys for a deferred clean-up: it gets its own
// 30s budget (ctx may have been cancelled by Ctrl-C) and reports a failure
// through *errp unless that already holds an error.
func deleteKeysAfter(ctx context.Context, c *goredis.Client, prefix string, errp *error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := deleteKeys(cctx, c, prefix); err != nil && *errp == nil {
		*errp = fmt.Errorf("deleting benchmark keys: %w", err)
	}
}

// redisServerPID asks a local Redis for its process id (INFO server), so its
// CPU can be read from /proc; 0 when unknown or not a local process.
func redisServerPID(ctx context.Context, c *goredis.Client) int {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil || !processLooksLike(pid, "redis") {
				return 0
			}
			return pid
		}
	}
	return 0
}
