package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/redis"
	"github.com/mecha-dev/mecha/components/state/statetest"
)

// redisAddr returns the address of the shared test Redis (REDIS_ADDR). It
// skips the test when there is none, unless MECHA_REQUIRE_SERVICES=1, as in
// CI, where a missing service must fail rather than pass silently.
func redisAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
			tb.Fatal("REDIS_ADDR is not set and MECHA_REQUIRE_SERVICES=1")
		}
		tb.Skip("REDIS_ADDR is not set (bash /work/shared/services/start-services.sh redis)")
	}
	return addr
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func timeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// newStore returns an initialised store that is closed at the end of the
// test. props are added to redisHost=addr.
func newStore(tb testing.TB, addr string, props map[string]string) state.Store {
	tb.Helper()
	p := map[string]string{"redisHost": addr}
	for k, v := range props {
		p[k] = v
	}
	s := redis.New(components.Deps{Logger: testLogger(tb)})
	if err := s.Init(timeout(tb, 10*time.Second), components.Metadata{Name: "statestore", Type: "state.redis", Properties: p}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// rawClient is a plain go-redis client on addr, standing in for daprd. Keys
// under prefix are deleted at the end of the test (never FLUSHALL: the
// server is shared).
func rawClient(t *testing.T, addr, prefix string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup of %s*: %v", prefix, err)
		}
		c.Close()
	})
	return c
}

func uniquePrefix(name string) string {
	return fmt.Sprintf("redistest-%s-%d||", name, time.Now().UnixNano())
}

func TestConformance(t *testing.T) {
	addr := redisAddr(t)
	statetest.Run(t, func(t *testing.T) state.Store { return newStore(t, addr, nil) })
}

func BenchmarkStore(b *testing.B) {
	statetest.Bench(b, newStore(b, redisAddr(b), nil))
}

func TestInitErrors(t *testing.T) {
	// An address where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	// A server that accepts connections and never answers.
	stalled := silentServer(t)

	tests := []struct {
		name    string
		props   map[string]string
		ctx     time.Duration // Init deadline; 0: none
		want    []string      // substrings of the error
		maxTime time.Duration // 0: not checked
	}{
		{name: "missing redisHost", props: map[string]string{}, want: []string{`"redisHost"`, "required"}},
		{name: "bad redisDB", props: map[string]string{"redisHost": refused, "redisDB": "one"}, want: []string{`"redisDB"`}},
		{name: "negative redisDB", props: map[string]string{"redisHost": refused, "redisDB": "-1"}, want: []string{`"redisDB"`}},
		{name: "bad dialTimeout", props: map[string]string{"redisHost": refused, "dialTimeout": "soon"}, want: []string{`"dialTimeout"`}},
		{name: "bad enableTLS", props: map[string]string{"redisHost": refused, "enableTLS": "maybe"}, want: []string{`"enableTLS"`}},
		{name: "bad redisPort", props: map[string]string{"redisHost": "localhost", "redisPort": "http"}, want: []string{`"redisPort"`}},
		{name: "conflicting ports", props: map[string]string{"redisHost": "localhost:1234", "redisPort": "6379"}, want: []string{`"redisHost"`}},
		{name: "cluster", props: map[string]string{"redisHost": refused, "redisType": "cluster"}, want: []string{`"redisType"`}},
		{name: "several hosts", props: map[string]string{"redisHost": "a:1,b:2"}, want: []string{`"redisHost"`}},
		{name: "failover", props: map[string]string{"redisHost": refused, "failover": "true"}, want: []string{`"failover"`}},
		{
			name:  "all problems at once",
			props: map[string]string{"redisDB": "x", "poolSize": "-3", "readTimeout": "later"},
			want:  []string{`"redisHost"`, `"redisDB"`, `"poolSize"`, `"readTimeout"`},
		},
		{
			name:    "connection refused",
			props:   map[string]string{"redisHost": refused, "dialTimeout": "200ms"},
			want:    []string{refused},
			maxTime: 3 * time.Second,
		},
		{
			name:    "stalled server, ctx deadline",
			props:   map[string]string{"redisHost": stalled, "readTimeout": "10s"},
			ctx:     500 * time.Millisecond,
			want:    []string{stalled},
			maxTime: 2 * time.Second,
		},
		{
			name:    "stalled server, read timeout",
			props:   map[string]string{"redisHost": stalled, "readTimeout": "200ms", "maxRetries": "1"},
			want:    []string{stalled},
			maxTime: 3 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.ctx > 0 {
				ctx = timeout(t, tt.ctx)
			}
			s := redis.New(components.Deps{}) // nil logger must be fine
			defer s.Close()
			start := time.Now()
			err := s.Init(ctx, components.Metadata{Properties: tt.props})
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Init succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init error %q does not mention %s", err, w)
				}
			}
			if tt.maxTime > 0 && elapsed > tt.maxTime {
				t.Errorf("Init took %v to fail, want under %v", elapsed, tt.maxTime)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close after a failed Init: %v", err)
			}
		})
	}
}

// silentServer accepts TCP connections and never writes a byte.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestCloseIsIdempotent(t *testing.T) {
	if err := redis.New(components.Deps{}).Close(); err != nil {
		t.Errorf("Close before Init: %v", err)
	}
	s := newStore(t, redisAddr(t), nil)
	for range 2 {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// TestDaprLayout checks that data written by daprd's state.redis (a hash
// with data and version fields) reads back with its ETag, and that what the
// store writes is what daprd expects.
func TestDaprLayout(t *testing.T) {
	addr := redisAddr(t)
	prefix := uniquePrefix("layout")
	raw := rawClient(t, addr, prefix)
	s := newStore(t, addr, nil)
	ctx := timeout(t, 30*time.Second)

	t.Run("dapr to mecha", func(t *testing.T) {
		k := prefix + "from-dapr"
		if err := raw.HSet(ctx, k, "data", "X", "version", 7, "first-write", 0).Err(); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Get(ctx, &state.GetRequest{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Data) != "X" || resp.ETag != "7" || resp.ExpireTime != nil {
			t.Fatalf("Get = data %q etag %q expire %v, want X, 7, none", resp.Data, resp.ETag, resp.ExpireTime)
		}
		stale := "6"
		if err := s.Set(ctx, &state.SetRequest{Key: k, Value: []byte("Y"), ETag: &stale}); !errors.Is(err, state.ErrETagMismatch) {
			t.Fatalf("Set with etag 6 = %v, want ErrETagMismatch", err)
		}
		cur := "7"
		if err := s.Set(ctx, &state.SetRequest{Key: k, Value: []byte("Y"), ETag: &cur}); err != nil {
			t.Fatalf("Set with etag 7: %v", err)
		}
		got, err := raw.HGetAll(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"data": "Y", "version": "8", "first-write": "0"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("hash after Set = %v, want %v", got, want)
		}
	})

	t.Run("mecha to dapr", func(t *testing.T) {
		k := prefix + "from-mecha"
		value := []byte{0, 1, 2, 0xff, 'x'}
		if err := s.Set(ctx, &state.SetRequest{Key: k, Value: value, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if typ := raw.Type(ctx, k).Val(); typ != "hash" {
			t.Fatalf("TYPE = %q, want hash", typ)
		}
		got, err := raw.HGetAll(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got["data"] != string(value) || got["version"] != "1" || len(got) != 2 {
			t.Fatalf("hash = %q, want data %q and version 1", got, value)
		}
		if ttl := raw.PTTL(ctx, k).Val(); ttl < 59*time.Minute || ttl > time.Hour {
			t.Fatalf("PTTL = %v, want about 1h", ttl)
		}
		// Rewriting without a TTL persists the key.
		if err := s.Set(ctx, &state.SetRequest{Key: k, Value: []byte("z")}); err != nil {
			t.Fatal(err)
		}
		if ttl := raw.TTL(ctx, k).Val(); ttl != -1 {
			t.Fatalf("TTL after a write without TTL = %v, want -1 (persistent)", ttl)
		}
		if v := raw.HGet(ctx, k, "version").Val(); v != "2" {
			t.Fatalf("version = %q, want 2", v)
		}
	})

	t.Run("not a hash", func(t *testing.T) {
		k := prefix + "plain-string"
		if err := raw.Set(ctx, k, "legacy", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, &state.GetRequest{Key: k}); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Errorf("Get of a string key = %v, want a WRONGTYPE error", err)
		}
		items, err := s.(state.BulkGetter).BulkGet(ctx, []string{k, prefix + "from-dapr"}, state.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if items[0].Error == "" || items[1].Error != "" || string(items[1].Data) != "Y" {
			t.Errorf("BulkGet = %+v, want an error for the string key only", items)
		}
		// An atomic transaction touching it fails as a whole, before writing.
		err = s.(state.Transactional).Multi(ctx, &state.TransactionRequest{Operations: []state.Operation{
			{Set: &state.SetRequest{Key: prefix + "tx-untouched", Value: []byte("a")}},
			{Set: &state.SetRequest{Key: k, Value: []byte("b")}},
		}})
		if err == nil {
			t.Fatal("Multi writing over a string key succeeded")
		}
		if n := raw.Exists(ctx, prefix+"tx-untouched").Val(); n != 0 {
			t.Errorf("a failed transaction wrote its first operation")
		}
	})
}

// TestTransactionSemantics covers what the conformance suite does not: ETags
// produced by earlier operations of the same transaction, first-write after
// a delete, and invalid ETags.
func TestTransactionSemantics(t *testing.T) {
	addr := redisAddr(t)
	prefix := uniquePrefix("tx")
	raw := rawClient(t, addr, prefix)
	s := newStore(t, addr, nil)
	tx := s.(state.Transactional)
	ctx := timeout(t, 30*time.Second)
	a, b := prefix+"a", prefix+"b"
	if err := s.Set(ctx, &state.SetRequest{Key: a, Value: []byte("a0")}); err != nil {
		t.Fatal(err)
	}
	resp, _ := s.Get(ctx, &state.GetRequest{Key: a})
	e1 := resp.ETag
	if e1 != "1" {
		t.Fatalf("etag of a new key = %q, want 1", e1)
	}
	e2 := "2"
	fw := state.WriteOptions{Concurrency: state.FirstWrite}

	err := tx.Multi(ctx, &state.TransactionRequest{Operations: []state.Operation{
		{Set: &state.SetRequest{Key: a, Value: []byte("a1"), ETag: &e1}},
		{Set: &state.SetRequest{Key: a, Value: []byte("a2"), ETag: &e2}}, // the etag the first op produces
		{Set: &state.SetRequest{Key: b, Value: []byte("b0"), Options: fw}},
		{Delete: &state.DeleteRequest{Key: b}},
		{Set: &state.SetRequest{Key: b, Value: []byte("b1"), Options: fw}}, // b is gone again
	}})
	if err != nil {
		t.Fatalf("Multi: %v", err)
	}
	if got := raw.HGetAll(ctx, a).Val(); got["data"] != "a2" || got["version"] != "3" {
		t.Errorf("a = %v, want data a2 version 3", got)
	}
	if got := raw.HGetAll(ctx, b).Val(); got["data"] != "b1" || got["version"] != "1" {
		t.Errorf("b = %v, want data b1 version 1", got)
	}

	// A first-write on an existing key aborts everything, and the error
	// names the operation.
	err = tx.Multi(ctx, &state.TransactionRequest{Operations: []state.Operation{
		{Delete: &state.DeleteRequest{Key: a}},
		{Set: &state.SetRequest{Key: b, Value: []byte("b2"), Options: fw}},
	}})
	if !errors.Is(err, state.ErrETagMismatch) || !strings.Contains(err.Error(), "operation 1") {
		t.Fatalf("Multi with first-write on an existing key = %v, want ErrETagMismatch naming operation 1", err)
	}
	if n := raw.Exists(ctx, a).Val(); n != 1 {
		t.Errorf("a failed transaction deleted a")
	}

	bad := "v1"
	err = tx.Multi(ctx, &state.TransactionRequest{Operations: []state.Operation{
		{Delete: &state.DeleteRequest{Key: a}},
		{Delete: &state.DeleteRequest{Key: b, ETag: &bad}},
	}})
	if !errors.Is(err, state.ErrETagInvalid) {
		t.Fatalf("Multi with a malformed etag = %v, want ErrETagInvalid", err)
	}
	if err := s.Delete(ctx, &state.DeleteRequest{Key: a, ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Fatalf("Delete with a malformed etag = %v, want ErrETagInvalid", err)
	}
}

// TestDefaultTTL checks the ttlInSeconds component property and Dapr's
// per-request ttlInSeconds metadata (-1: never expire).
func TestDefaultTTL(t *testing.T) {
	addr := redisAddr(t)
	prefix := uniquePrefix("ttl")
	raw := rawClient(t, addr, prefix)
	s := newStore(t, addr, map[string]string{"ttlInSeconds": "3600"})
	ctx := timeout(t, 30*time.Second)

	tests := []struct {
		name string
		req  state.SetRequest
		want time.Duration // -1: no expiry
	}{
		{name: "default", req: state.SetRequest{}, want: time.Hour},
		{name: "request TTL", req: state.SetRequest{TTL: time.Minute}, want: time.Minute},
		{name: "request metadata", req: state.SetRequest{Metadata: map[string]string{"ttlInSeconds": "120"}}, want: 2 * time.Minute},
		{name: "never", req: state.SetRequest{Metadata: map[string]string{"ttlInSeconds": "-1"}}, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.Key, req.Value = prefix+tt.name, []byte("v")
			if err := s.Set(ctx, &req); err != nil {
				t.Fatal(err)
			}
			got := raw.PTTL(ctx, req.Key).Val()
			if tt.want < 0 {
				if got != -1 {
					t.Errorf("PTTL = %v, want -1 (none)", got)
				}
				return
			}
			if got > tt.want || got < tt.want-5*time.Second {
				t.Errorf("PTTL = %v, want about %v", got, tt.want)
			}
		})
	}
	err := s.Set(ctx, &state.SetRequest{Key: prefix + "bad", Value: []byte("v"), Metadata: map[string]string{"ttlInSeconds": "soon"}})
	if err == nil || !strings.Contains(err.Error(), "ttlInSeconds") {
		t.Errorf("Set with ttlInSeconds=soon = %v, want an error naming ttlInSeconds", err)
	}
}

// TestOutageAndRecovery puts a TCP proxy between the store and Redis, takes
// it down and stalls it, and checks that calls fail promptly and that the
// store works again once Redis is back.
func TestOutageAndRecovery(t *testing.T) {
	addr := redisAddr(t)
	prefix := uniquePrefix("outage")
	rawClient(t, addr, prefix) // for cleanup
	p := startProxy(t, addr)
	// A small pool: enough failed dials put go-redis's pool into its
	// fail-fast mode, which the recovery must get out of.
	s := newStore(t, p.addr(), map[string]string{"dialTimeout": "500ms", "readTimeout": "500ms", "poolSize": "4"})
	k := prefix + "k"
	value := []byte("before")

	setGet := func(ctx context.Context, v []byte) error {
		if err := s.Set(ctx, &state.SetRequest{Key: k, Value: v}); err != nil {
			return err
		}
		resp, err := s.Get(ctx, &state.GetRequest{Key: k})
		if err != nil {
			return err
		}
		if !bytes.Equal(resp.Data, v) {
			return fmt.Errorf("read %q, want %q", resp.Data, v)
		}
		return nil
	}
	// waitRecovered waits until a set+get round trip works again.
	waitRecovered := func(t *testing.T, v []byte) {
		t.Helper()
		start := time.Now()
		var err error
		for time.Since(start) < 15*time.Second {
			if err = setGet(timeout(t, 2*time.Second), v); err == nil {
				t.Logf("recovered after %v", time.Since(start))
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("store did not recover in %v: %v", time.Since(start), err)
	}
	if err := setGet(timeout(t, 5*time.Second), value); err != nil {
		t.Fatal(err)
	}

	t.Run("down", func(t *testing.T) {
		p.down()
		for i := range 5 {
			start := time.Now()
			err := setGet(timeout(t, 10*time.Second), []byte("during"))
			if el := time.Since(start); err == nil || el > 3*time.Second {
				t.Fatalf("call %d with Redis down: err %v after %v, want an error within 3s", i, err, el)
			}
			t.Logf("call %d with Redis down failed after %v: %v", i, time.Since(start), err)
		}
		if err := s.(state.Pinger).Ping(timeout(t, 10*time.Second)); err == nil {
			t.Fatal("Ping with Redis down succeeded")
		}
		p.up(t)
		waitRecovered(t, []byte("after down"))
	})

	t.Run("stalled", func(t *testing.T) {
		p.stall.Store(true)
		start := time.Now()
		_, err := s.Get(timeout(t, 300*time.Millisecond), &state.GetRequest{Key: k})
		if el := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || el > time.Second {
			t.Fatalf("Get on a stalled Redis: err %v after %v, want DeadlineExceeded within 1s", err, el)
		}
		// Without a ctx deadline, readTimeout (and the retries) bound it.
		start = time.Now()
		err = s.Set(context.Background(), &state.SetRequest{Key: k, Value: []byte("stalled")})
		if el := time.Since(start); err == nil || el > 5*time.Second {
			t.Fatalf("Set on a stalled Redis without deadline: err %v after %v, want an error within 5s", err, el)
		}
		p.stall.Store(false)
		waitRecovered(t, []byte("after stall"))
	})
}

// proxy forwards TCP connections to a Redis server; it can be taken down
// (listener and connections closed) and brought back on the same address,
// or stalled (bytes from clients are dropped, so no reply ever comes).
type proxy struct {
	target string
	stall  atomic.Bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(up, c, true) })
			p.wg.Go(func() { p.pipe(c, up, false) })
		}
	})
}

func (p *proxy) pipe(dst, src net.Conn, fromClient bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !(fromClient && p.stall.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// down closes the listener and every connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// up listens again on the same address.
func (p *proxy) up(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr())
	if err != nil {
		t.Fatalf("proxy: listen again on %s: %v", p.addr(), err)
	}
	p.serve(ln)
}
