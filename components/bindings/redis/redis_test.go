package redis_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/bindingstest"
	"github.com/mecha-dev/mecha/components/bindings/redis"
)

func newBinding(t *testing.T, addr string) bindings.Output {
	t.Helper()
	b := redis.New(components.Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Init(ctx, components.Metadata{Name: "cache", Type: "bindings.redis", Properties: map[string]string{"redisHost": addr}}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// rawClient is a plain client; keys under prefix are deleted when the test
// ends (the server is shared: never FLUSHALL).
func rawClient(t *testing.T, addr, prefix string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c
}

func TestConformance(t *testing.T) {
	addr := bindingstest.ServiceEnv(t, "REDIS_ADDR")
	prefix := fmt.Sprintf("bindingstest-redis-%d-", time.Now().UnixNano())
	raw := rawClient(t, addr, prefix)
	k := func(name string) string { return prefix + name }
	req := func(op bindings.Operation, key, data string, kv ...string) bindings.InvokeRequest {
		md := map[string]string{"key": key}
		for i := 0; i+1 < len(kv); i += 2 {
			md[kv[i]] = kv[i+1]
		}
		r := bindings.InvokeRequest{Operation: op, Metadata: md}
		if data != "" {
			r.Data = []byte(data)
		}
		return r
	}
	ttlNear := func(key string, want time.Duration) func(*testing.T, *bindings.InvokeResponse) {
		return func(t *testing.T, _ *bindings.InvokeResponse) {
			got := raw.TTL(context.Background(), key).Val()
			if got <= want-5*time.Second || got > want {
				t.Fatalf("TTL of %s = %v, want about %v", key, got, want)
			}
		}
	}
	emptyResponse := func(t *testing.T, r *bindings.InvokeResponse) {
		if r == nil || len(r.Data) != 0 {
			t.Fatalf("response = %+v, want an empty, non-nil response (HTTP 200, no body)", r)
		}
	}
	cases := []bindingstest.OutputCase{
		{Name: "create", Request: req("create", k("a"), `{"v":1}`), NoContent: true},
		{Name: "get", Request: req("get", k("a"), ""), WantData: []byte(`{"v":1}`)},
		{Name: "create binary", Request: req("create", k("bin"), "\x00\x01\xff"), NoContent: true},
		{Name: "get binary", Request: req("get", k("bin"), ""), WantData: []byte("\x00\x01\xff")},
		{Name: "create with ttl", Request: req("create", k("ttl"), "t", "ttlInSeconds", "100"), NoContent: true, Check: ttlNear(k("ttl"), 100*time.Second)},
		{Name: "get missing", Request: req("get", k("missing"), ""), Check: emptyResponse},
		{Name: "increment new", Request: req("increment", k("n"), ""), NoContent: true},
		{Name: "increment with ttl", Request: req("increment", k("n"), "", "ttlInSeconds", "50"), NoContent: true, Check: ttlNear(k("n"), 50*time.Second)},
		{Name: "get counter", Request: req("get", k("n"), ""), WantData: []byte("2")},
		{Name: "increment a non-integer", Request: req("increment", k("a"), ""), WantErr: "not an integer"},
		{Name: "get and delete", Request: req("get", k("a"), "", "delete", "true"), WantData: []byte(`{"v":1}`)},
		{Name: "gone after get-delete", Request: req("get", k("a"), ""), Check: emptyResponse},
		{Name: "delete", Request: req("delete", k("bin"), ""), NoContent: true},
		{Name: "gone after delete", Request: req("get", k("bin"), ""), Check: emptyResponse},
		{Name: "delete missing", Request: req("delete", k("bin"), ""), NoContent: true},
		{Name: "missing key", Request: req("create", "", "x"), WantErr: `"key" is required`},
		{Name: "bad ttl", Request: req("create", k("b"), "x", "ttlInSeconds", "-1"), WantErr: `"ttlInSeconds"`},
	}
	bindingstest.RunOutput(t, func(t *testing.T) bindings.Output { return newBinding(t, addr) }, bindingstest.OutputOptions{
		Operations: []bindings.Operation{"create", "get", "delete", "increment"},
		Cases:      cases,
	})
	if n := raw.Exists(context.Background(), k("b")).Val(); n != 0 {
		t.Errorf("a create with an invalid ttl wrote the key")
	}
}

func TestInitErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name  string
		props map[string]string
		want  []string
	}{
		{"missing host", map[string]string{}, []string{`"redisHost"`, "required"}},
		{"bad db", map[string]string{"redisHost": refused, "redisDB": "x"}, []string{`"redisDB"`}},
		{"bad port", map[string]string{"redisHost": "localhost", "redisPort": "web"}, []string{`"redisPort"`}},
		{"cluster", map[string]string{"redisHost": refused, "redisType": "cluster"}, []string{`"redisType"`}},
		{"several at once", map[string]string{"dialTimeout": "x", "enableTLS": "maybe"}, []string{`"redisHost"`, `"dialTimeout"`, `"enableTLS"`}},
		{"refused", map[string]string{"redisHost": refused, "dialTimeout": "200ms", "maxRetries": "0"}, []string{refused}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := redis.New(components.Deps{})
			defer b.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := b.Init(ctx, components.Metadata{Properties: tt.props})
			if err == nil {
				t.Fatal("Init succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init error %q does not mention %s", err, w)
				}
			}
		})
	}
}
