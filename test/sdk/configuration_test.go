package sdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
)

const configStore = "configstore"

// cfgBackend is a configuration store the tests write into directly, as an
// operator would: the configuration API itself is read-only.
type cfgBackend struct {
	Name string
	// setup returns the component YAML and a writer; dir lives as long as
	// the test.
	setup func(t *testing.T, dir string) (string, cfgWriter)
}

type cfgWriter interface {
	set(t *testing.T, key, value string)
	del(t *testing.T, key string)
}

var cfgBackends = []cfgBackend{
	{Name: "sqlite", setup: sqliteBackend},
	{Name: "redis", setup: redisBackend},
}

// sqliteBackend is configuration.sqlite in a file the test writes with the
// sqlite3 command-line shell, a process of its own like any real writer.
func sqliteBackend(t *testing.T, dir string) (string, cfgWriter) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
			t.Fatal("the sqlite3 shell is not on PATH but MECHA_REQUIRE_SERVICES=1")
		}
		t.Skip("the sqlite3 shell is not on PATH")
	}
	db := filepath.Join(dir, "config.db")
	return componentYAML(configStore, "configuration.sqlite", map[string]string{"connectionString": db, "pollInterval": "50ms"}), sqliteCLI(db)
}

type sqliteCLI string

func (db sqliteCLI) exec(t *testing.T, stmt string) {
	t.Helper()
	out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", string(db), stmt).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %q: %v\n%s", stmt, err, out)
	}
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (db sqliteCLI) set(t *testing.T, key, value string) {
	t.Helper()
	db.exec(t, "INSERT INTO configuration(key, value) VALUES("+sqlQuote(key)+", "+sqlQuote(value)+") ON CONFLICT(key) DO UPDATE SET value = excluded.value")
}

func (db sqliteCLI) del(t *testing.T, key string) {
	t.Helper()
	db.exec(t, "DELETE FROM configuration WHERE key = "+sqlQuote(key))
}

// redisBackend is configuration.redis; the test writes Dapr's
// "value||version" strings over plain RESP.
func redisBackend(t *testing.T, _ string) (string, cfgWriter) {
	stateStore{Name: "redis", Env: "REDIS_ADDR"}.requireService(t)
	addr := os.Getenv("REDIS_ADDR")
	w := &redisCfg{addr: addr, keys: map[string]bool{}}
	t.Cleanup(func() {
		for k := range w.keys {
			_, _ = redisDo(addr, "DEL", k)
		}
	})
	return componentYAML(configStore, "configuration.redis", map[string]string{"redisHost": addr}), w
}

type redisCfg struct {
	addr    string
	version int
	keys    map[string]bool
}

func (r *redisCfg) set(t *testing.T, key, value string) {
	t.Helper()
	r.version++
	r.keys[key] = true
	if _, err := redisDo(r.addr, "SET", key, value+"||"+strconv.Itoa(r.version)); err != nil {
		t.Fatalf("redis SET %s: %v", key, err)
	}
}

func (r *redisCfg) del(t *testing.T, key string) {
	t.Helper()
	if _, err := redisDo(r.addr, "DEL", key); err != nil {
		t.Fatalf("redis DEL %s: %v", key, err)
	}
}

// redisDo runs one command over a plain RESP connection and returns the
// first reply line.
func redisDo(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var cmd bytes.Buffer
	fmt.Fprintf(&cmd, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&cmd, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(cmd.Bytes()); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return "", errors.New(line[1:])
	}
	return line, nil
}

// cfgUpdates collects what a SubscribeConfigurationItems handler receives.
type cfgUpdates struct {
	mu     sync.Mutex
	got    []map[string]*client.ConfigurationItem
	ids    []string
	read   int
	signal chan struct{}
}

func newCfgUpdates() *cfgUpdates { return &cfgUpdates{signal: make(chan struct{}, 1000)} }

func (u *cfgUpdates) handle(id string, items map[string]*client.ConfigurationItem) {
	u.mu.Lock()
	u.got = append(u.got, items)
	u.ids = append(u.ids, id)
	u.mu.Unlock()
	u.signal <- struct{}{}
}

func (u *cfgUpdates) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

// named reports whether any update so far named key.
func (u *cfgUpdates) named(key string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, items := range u.got {
		if _, ok := items[key]; ok {
			return true
		}
	}
	return false
}

// next returns the next unread update whose items name key.
func (u *cfgUpdates) next(t *testing.T, key string) (string, *client.ConfigurationItem) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		u.mu.Lock()
		for u.read < len(u.got) {
			items, id := u.got[u.read], u.ids[u.read]
			u.read++
			if it, ok := items[key]; ok {
				u.mu.Unlock()
				return id, it
			}
		}
		u.mu.Unlock()
		select {
		case <-u.signal:
		case <-deadline:
			t.Fatalf("no configuration update for %s within 15s", key)
		}
	}
}

// TestSDKConfiguration drives the configuration API with the Go SDK:
// GetConfigurationItem(s), SubscribeConfigurationItems with updates written
// straight into the backend, UnsubscribeConfigurationItems.
func TestSDKConfiguration(t *testing.T) {
	for _, be := range cfgBackends {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			yaml, w := be.setup(t, t.TempDir())
			s := startSidecar(t, sidecarConfig{Resources: map[string]string{"config.yaml": yaml}})
			c := s.sdkClient(t)
			ctx := ctxT(t)
			p := "sdkcfg-" + uniqueID() + "-"
			a, b := p+"a", p+"b"
			w.set(t, a, "1")
			w.set(t, b, "two")

			it, err := c.GetConfigurationItem(ctx, configStore, a)
			must(t, "GetConfigurationItem", err)
			if it == nil || it.Value != "1" || it.Version == "" {
				t.Fatalf("GetConfigurationItem(a) = %+v, want value 1 and a version", it)
			}
			items, err := c.GetConfigurationItems(ctx, configStore, []string{a, b, p + "missing"}, client.WithConfigurationMetadata("hint", "x"))
			must(t, "GetConfigurationItems", err)
			if len(items) != 2 || items[a].Value != "1" || items[b].Value != "two" {
				t.Fatalf("GetConfigurationItems = %v", items)
			}
			all, err := c.GetConfigurationItems(ctx, configStore, nil)
			must(t, "GetConfigurationItems(all)", err)
			if all[a] == nil || all[b] == nil {
				t.Fatalf("GetConfigurationItems(all) lacks %s or %s", a, b)
			}
			missing, err := c.GetConfigurationItem(ctx, configStore, p+"missing")
			if err != nil || missing != nil {
				t.Fatalf("GetConfigurationItem(missing) = %+v, %v; want nil, nil", missing, err)
			}
			_, err = c.GetConfigurationItems(ctx, "nope", []string{a})
			expectCode(t, "GetConfigurationItems(unknown store)", err, codes.InvalidArgument)

			// Subscribe: the handler receives changes of the watched key only.
			subCtx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			updates := newCfgUpdates()
			id, err := c.SubscribeConfigurationItems(subCtx, configStore, []string{a}, updates.handle)
			must(t, "SubscribeConfigurationItems", err)
			if id == "" {
				t.Fatal("SubscribeConfigurationItems returned an empty id")
			}
			w.set(t, a, "10")
			gotID, item := updates.next(t, a)
			if gotID != id || item.Value != "10" || item.Version == "" {
				t.Fatalf("update %s %+v, want %s value 10 with a version", gotID, item, id)
			}
			w.set(t, b, "unwatched")
			w.set(t, a, "11")
			if _, item := updates.next(t, a); item.Value != "11" {
				t.Fatalf("update %+v, want 11", item)
			}
			if updates.named(b) {
				t.Fatalf("the subscription to %s received %s", a, b)
			}
			w.del(t, a)
			if _, item := updates.next(t, a); item.Value != "" {
				t.Fatalf("delete update %+v, want an empty value", item)
			}

			// Unsubscribe: a second subscription shows when a later write
			// has been seen; the first must not have received it.
			sentinel := newCfgUpdates()
			_, err = c.SubscribeConfigurationItems(subCtx, configStore, []string{a}, sentinel.handle)
			must(t, "SubscribeConfigurationItems(sentinel)", err)
			must(t, "UnsubscribeConfigurationItems", c.UnsubscribeConfigurationItems(ctx, configStore, id))
			seen := updates.count()
			w.set(t, a, "after")
			sentinel.next(t, a)
			if got := updates.count(); got != seen {
				t.Fatalf("the handler got %d update(s) after UnsubscribeConfigurationItems", got-seen)
			}
			if err := c.UnsubscribeConfigurationItems(ctx, configStore, id); err == nil || !strings.Contains(err.Error(), id) {
				t.Fatalf("second UnsubscribeConfigurationItems = %v, want an error naming the id", err)
			}
		})
	}
}

// TestHTTPConfiguration drives the HTTP configuration API of the binary,
// with updates delivered to an app on --app-port.
func TestHTTPConfiguration(t *testing.T) {
	t.Parallel()
	yaml, w := sqliteBackend(t, t.TempDir())
	type delivery struct {
		path string
		body struct {
			ID    string `json:"id"`
			Items map[string]struct {
				Value   string `json:"value"`
				Version string `json:"version"`
			} `json:"items"`
		}
	}
	got := make(chan delivery, 100)
	app := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var d delivery
		d.path = r.URL.Path
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &d.body)
		got <- d
	}))
	t.Cleanup(app.Close)
	appPort := app.Listener.Addr().(*net.TCPAddr).Port
	s := startSidecar(t, sidecarConfig{
		Args:      []string{"--app-port", strconv.Itoa(appPort)},
		Resources: map[string]string{"config.yaml": yaml},
	})
	w.set(t, "greeting", "hello")
	r := s.do(t, http.MethodGet, "/v1.0/configuration/"+configStore+"?key=greeting", nil)
	expectStatus(t, "GET configuration", r, http.StatusOK)
	var items map[string]struct {
		Value   string `json:"value"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(r.Body, &items); err != nil || items["greeting"].Value != "hello" || items["greeting"].Version == "" {
		t.Fatalf("GET configuration = %s (%v)", r.Body, err)
	}
	expectStatus(t, "GET missing", s.do(t, http.MethodGet, "/v1.0/configuration/"+configStore+"?key=nope", nil), http.StatusNoContent)
	expectError(t, "GET unknown store", s.do(t, http.MethodGet, "/v1.0/configuration/nope", nil), http.StatusBadRequest, "ERR_CONFIGURATION_STORE_NOT_FOUND")

	r = s.do(t, http.MethodGet, "/v1.0/configuration/"+configStore+"/subscribe?key=greeting", nil)
	expectStatus(t, "subscribe", r, http.StatusOK)
	var sub struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &sub); err != nil || sub.ID == "" {
		t.Fatalf("subscribe = %s", r.Body)
	}
	w.set(t, "greeting", "bonjour")
	select {
	case d := <-got:
		if d.path != "/configuration/"+configStore+"/greeting" || d.body.ID != sub.ID || d.body.Items["greeting"].Value != "bonjour" {
			t.Fatalf("delivery %s %+v", d.path, d.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the app received no update")
	}
	r = s.do(t, http.MethodGet, "/v1.0-alpha1/configuration/"+configStore+"/"+sub.ID+"/unsubscribe", nil)
	expectStatus(t, "unsubscribe", r, http.StatusOK)
	if string(r.Body) != `{"ok":true}` {
		t.Fatalf("unsubscribe body %s", r.Body)
	}
}

// TestSDKConfigurationNotConfigured: without configuration stores the SDK
// gets FailedPrecondition, as from daprd.
func TestSDKConfigurationNotConfigured(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{})
	c := s.sdkClient(t)
	_, err := c.GetConfigurationItem(ctxT(t), configStore, "k")
	expectCode(t, "GetConfigurationItem without stores", err, codes.FailedPrecondition)
	err = c.UnsubscribeConfigurationItems(ctxT(t), configStore, "no-such-id")
	if err == nil || !strings.Contains(err.Error(), "subscription does not exist") {
		t.Fatalf("UnsubscribeConfigurationItems(unknown) = %v", err)
	}
}
