package redis

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/configuration/configurationtest"
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// writer writes Dapr's "value||version" strings with a fresh version per
// write, as an operator would with SET, and deletes what it wrote at the end.
type writer struct {
	c       *goredis.Client
	version atomic.Int64
	mu      sync.Mutex
	keys    map[string]bool
}

func newWriter(t *testing.T, addr string) *writer {
	w := &writer{c: goredis.NewClient(&goredis.Options{Addr: addr}), keys: map[string]bool{}}
	w.version.Store(time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		w.mu.Lock()
		defer w.mu.Unlock()
		for k := range w.keys {
			w.c.Del(ctx, k)
		}
		w.c.Close()
	})
	return w
}

func (w *writer) Set(ctx context.Context, key, value string) error {
	w.mu.Lock()
	w.keys[key] = true
	w.mu.Unlock()
	return w.c.Set(ctx, key, value+"||"+strconv.FormatInt(w.version.Add(1), 10), 0).Err()
}

func (w *writer) Delete(ctx context.Context, key string) error {
	return w.c.Del(ctx, key).Err()
}

func newStore(t *testing.T, addr string) configuration.Store {
	t.Helper()
	s := New(components.Deps{Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Init(ctx, components.Metadata{Name: "config", Type: "configuration.redis", Properties: map[string]string{"redisHost": addr}}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	addr := configurationtest.ServiceEnv(t, "REDIS_ADDR")
	w := newWriter(t, addr)
	configurationtest.Run(t, func(t *testing.T) (configuration.Store, configurationtest.Writer) {
		return newStore(t, addr), w
	}, configurationtest.Options{})
}

// TestDaprLayout reads values written the way Dapr documents them, and
// skips what Dapr skips.
func TestDaprLayout(t *testing.T) {
	addr := configurationtest.ServiceEnv(t, "REDIS_ADDR")
	s := newStore(t, addr)
	w := newWriter(t, addr)
	ctx := context.Background()
	p := "cfgredis-" + strconv.FormatInt(time.Now().UnixNano(), 10) + "-"
	raw := map[string]string{p + "plain": "v", p + "versioned": "v||3", p + "empty": "", p + "emptyvalue": "||4", p + "extra": "a||b||c"}
	for k, v := range raw {
		w.keys[k] = true
		if err := w.c.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	w.keys[p+"hash"] = true
	w.c.HSet(ctx, p+"hash", "f", "v")
	keys := []string{p + "plain", p + "versioned", p + "empty", p + "emptyvalue", p + "extra", p + "hash", p + "missing"}
	got, err := s.Get(ctx, configuration.GetRequest{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{p + "plain": {"v", ""}, p + "versioned": {"v", "3"}, p + "extra": {"a", "b"}}
	if len(got) != len(want) {
		t.Fatalf("Get = %v, want %v", got, want)
	}
	for k, vv := range want {
		if it := got[k]; it == nil || it.Value != vv[0] || it.Version != vv[1] {
			t.Errorf("Get(%s) = %+v, want value %q version %q", k, it, vv[0], vv[1])
		}
	}
	all, err := s.Get(ctx, configuration.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if all[k] == nil {
			t.Errorf("Get(all) lacks %s", k)
		}
	}
	if _, ok := all[p+"hash"]; ok {
		t.Error("Get(all) returned a hash key")
	}
}

func TestParseValue(t *testing.T) {
	tests := []struct {
		raw, value, version string
		ok                  bool
	}{
		{"v", "v", "", true},
		{"v||1", "v", "1", true},
		{"v||1||x", "v", "1", true},
		{"", "", "", false},
		{"||1", "", "", false},
		{"with spaces||v2", "with spaces", "v2", true},
	}
	for _, tt := range tests {
		it, ok := parseValue(tt.raw)
		if ok != tt.ok {
			t.Errorf("parseValue(%q) ok = %v, want %v", tt.raw, ok, tt.ok)
			continue
		}
		if ok && (it.Value != tt.value || it.Version != tt.version) {
			t.Errorf("parseValue(%q) = %q, %q; want %q, %q", tt.raw, it.Value, it.Version, tt.value, tt.version)
		}
	}
}

func TestMergeFlags(t *testing.T) {
	tests := map[string]string{
		"":      "K$gxe",
		"KA":    "KA",
		"AE":    "AEK",
		"Ex":    "ExK$ge",
		"K$gxe": "K$gxe",
		"Kg":    "Kg$xe",
	}
	for cur, want := range tests {
		if got := mergeFlags(cur); got != want {
			t.Errorf("mergeFlags(%q) = %q, want %q", cur, got, want)
		}
	}
}

func TestInvalidMetadata(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  string
	}{
		{"no host", map[string]string{}, "redisHost"},
		{"bad db", map[string]string{"redisHost": "h", "redisDB": "x"}, "redisDB"},
		{"negative db", map[string]string{"redisHost": "h", "redisDB": "-1"}, "redisDB"},
		{"bad port", map[string]string{"redisHost": "h", "redisPort": "99999"}, "redisPort"},
		{"cluster", map[string]string{"redisHost": "h", "redisType": "cluster"}, "redisType"},
		{"failover", map[string]string{"redisHost": "h", "failover": "true"}, "failover"},
		{"half a client cert", map[string]string{"redisHost": "h", "enableTLS": "true", "clientCert": "x"}, "clientKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(components.Deps{})
			err := s.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init = %v, want an error naming %s", err, tt.want)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close after failed Init: %v", err)
			}
		})
	}
}

func TestSettings(t *testing.T) {
	s, warnings, err := parseSettings(components.Metadata{Properties: map[string]string{
		"redisHost": "example", "redisPort": "6380", "REDISDB": "2", "dialTimeout": "250", "readTimeout": "2s", "unknownThing": "x",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr != "example:6380" || s.DB != 2 || s.DialTimeout != 250*time.Millisecond || s.ReadTimeout != 2*time.Second || s.WriteTimeout != 2*time.Second {
		t.Fatalf("settings = %+v", s)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "unknownThing") {
		t.Fatalf("warnings = %v", warnings)
	}
}

func TestNotInitialised(t *testing.T) {
	s := New(components.Deps{})
	if _, err := s.Get(context.Background(), configuration.GetRequest{}); err == nil {
		t.Error("Get before Init succeeded")
	}
	if _, err := s.Subscribe(context.Background(), configuration.SubscribeRequest{}, func(context.Context, *configuration.UpdateEvent) error { return nil }); err == nil {
		t.Error("Subscribe before Init succeeded")
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

// TestUnreachable fails Init promptly against a port nobody listens on.
func TestUnreachable(t *testing.T) {
	s := New(components.Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Init(ctx, components.Metadata{Properties: map[string]string{"redisHost": "127.0.0.1:1", "maxRetries": "-1", "dialTimeout": "200ms"}})
	if err == nil {
		t.Fatal("Init against a closed port succeeded")
	}
	if time.Since(start) > 4*time.Second {
		t.Fatalf("Init took %v to fail", time.Since(start))
	}
	s.Close()
}
