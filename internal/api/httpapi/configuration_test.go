package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/mecha-dev/mecha/internal/blocks/configuration/cfgstores"
	"github.com/mecha-dev/mecha/internal/mechatest"
	mrt "github.com/mecha-dev/mecha/internal/runtime"
)

const cfgWait = 10 * time.Second

func cfgCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func cfgWrite(t *testing.T, w cfgstores.Writer, key, value string) {
	t.Helper()
	if err := w.Set(cfgCtx(t), key, value); err != nil {
		t.Fatalf("writing %s=%s into the backend: %v", key, value, err)
	}
}

// cfgItems decodes a GET answer.
type cfgItems map[string]struct {
	Value    string            `json:"value"`
	Version  string            `json:"version"`
	Metadata map[string]string `json:"metadata"`
}

// TestConfigurationAcrossStores drives the configuration HTTP API, with
// updates delivered to a fake HTTP app, against every store.
func TestConfigurationAcrossStores(t *testing.T) {
	for _, sc := range cfgstores.Cases() {
		t.Run(sc.Name, func(t *testing.T) {
			yaml, w := sc.Setup(t, "configstore")
			app := cfgstores.NewApp(t)
			s := mechatest.Start(t, func(o *mrt.Options) {
				uniqueApp(o)
				o.AppPort = app.Port
			}, yaml)
			testConfigurationHTTP(t, s, app, w)
		})
	}
}

func testConfigurationHTTP(t *testing.T, s *mechatest.Sidecar, app *cfgstores.App, w cfgstores.Writer) {
	p := "cfghttp" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "") + "-"
	a, b, c := p+"a", p+"b", p+"c"
	cfgWrite(t, w, a, "1")
	cfgWrite(t, w, b, "two")

	t.Run("get", func(t *testing.T) {
		for _, prefix := range []string{"/v1.0", "/v1.0-alpha1"} {
			r := s.Do(t, "GET", prefix+"/configuration/configstore?key="+a+"&key="+b+"&key="+p+"missing&metadata.hint=x", nil)
			if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s GET = %d %s (%v)", prefix, r.Status, r.Body, r.Header)
			}
			var items cfgItems
			r.JSON(t, &items)
			if len(items) != 2 || items[a].Value != "1" || items[b].Value != "two" || items[a].Version == "" {
				t.Fatalf("%s GET = %s", prefix, r.Body)
			}
		}
		// Empty fields are left out, as in daprd (contrib's omitempty tags).
		r := s.Do(t, "GET", "/v1.0/configuration/configstore?key="+a, nil)
		var raw map[string]map[string]json.RawMessage
		r.JSON(t, &raw)
		if _, ok := raw[a]["metadata"]; ok {
			t.Errorf("item without metadata encoded as %s, want no metadata field", r.Body)
		}
	})
	t.Run("get all", func(t *testing.T) {
		r := s.Do(t, "GET", "/v1.0/configuration/configstore", nil)
		var items cfgItems
		r.JSON(t, &items)
		if r.Status != http.StatusOK || items[a].Value != "1" || items[b].Value != "two" {
			t.Fatalf("GET all = %d %s", r.Status, r.Body)
		}
	})
	t.Run("get nothing is 204", func(t *testing.T) {
		r := s.Do(t, "GET", "/v1.0/configuration/configstore?key="+p+"nope", nil)
		if r.Status != http.StatusNoContent || len(r.Body) != 0 {
			t.Fatalf("GET missing = %d %q, want 204 and no body", r.Status, r.Body)
		}
	})

	var id string
	t.Run("subscribe delivers to the app", func(t *testing.T) {
		r := s.Do(t, "GET", "/v1.0/configuration/configstore/subscribe?key="+a+"&key="+b, nil)
		var sub struct {
			ID string `json:"id"`
		}
		r.JSON(t, &sub)
		if r.Status != http.StatusOK || sub.ID == "" || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("subscribe = %d %s", r.Status, r.Body)
		}
		id = sub.ID
		cfgWrite(t, w, a, "11")
		d := app.Next(t, cfgWait, cfgstores.For(id))
		if d.Path != "/configuration/configstore/"+a || d.ContentType != "application/json" {
			t.Fatalf("delivery %s (%s), want POST /configuration/configstore/%s as JSON", d.Path, d.ContentType, a)
		}
		if len(d.Items) != 1 || d.Items[a].Value != "11" || d.Items[a].Version == "" {
			t.Fatalf("delivery body %s", d.Body)
		}
		// An unwatched key is not delivered: write it, then a watched one,
		// and expect the watched one next.
		cfgWrite(t, w, c, "unwatched")
		cfgWrite(t, w, b, "2b")
		d = app.Next(t, cfgWait, cfgstores.For(id))
		if _, bad := d.Items[c]; bad || d.Items[b].Value != "2b" || d.Path != "/configuration/configstore/"+b {
			t.Fatalf("delivery %s %s, want only %s", d.Path, d.Body, b)
		}
	})
	t.Run("delete is delivered with an empty item", func(t *testing.T) {
		if err := w.Delete(cfgCtx(t), b); err != nil {
			t.Fatal(err)
		}
		d := app.Next(t, cfgWait, cfgstores.For(id))
		if it, ok := d.Items[b]; !ok || it.Value != "" {
			t.Fatalf("delete delivery %s", d.Body)
		}
	})
	t.Run("updates stay in order", func(t *testing.T) {
		for _, v := range []string{"v1", "v2", "v3"} {
			cfgWrite(t, w, a, v)
		}
		last := ""
		for last != "v3" {
			d := app.Next(t, cfgWait, cfgstores.For(id))
			v := d.Items[a].Value
			if v < last {
				t.Fatalf("%s delivered after %s", v, last)
			}
			last = v
		}
	})
	t.Run("unsubscribe stops deliveries", func(t *testing.T) {
		r := s.Do(t, "GET", "/v1.0-alpha1/configuration/configstore/subscribe?key="+a, nil)
		var sentinel struct {
			ID string `json:"id"`
		}
		r.JSON(t, &sentinel)
		r = s.Do(t, "GET", "/v1.0/configuration/configstore/"+id+"/unsubscribe", nil)
		if r.Status != http.StatusOK || string(r.Body) != `{"ok":true}` {
			t.Fatalf("unsubscribe = %d %s", r.Status, r.Body)
		}
		before := 0
		for _, d := range app.All() {
			if d.ID == id {
				before++
			}
		}
		cfgWrite(t, w, a, "after")
		app.Next(t, cfgWait, func(d cfgstores.Delivery) bool { return d.ID == sentinel.ID && d.Items[a].Value == "after" })
		after := 0
		for _, d := range app.All() {
			if d.ID == id {
				after++
			}
		}
		if after != before {
			t.Fatalf("%d deliveries for the subscription after it was unsubscribed", after-before)
		}
		// Again: daprd's failure body, {"message"} without "ok".
		r = s.Do(t, "GET", "/v1.0/configuration/configstore/"+id+"/unsubscribe", nil)
		var fail map[string]any
		r.JSON(t, &fail)
		if r.Status != http.StatusInternalServerError || len(fail) != 1 || !strings.Contains(fail["message"].(string), id) {
			t.Fatalf("second unsubscribe = %d %s, want 500 {\"message\": ...}", r.Status, r.Body)
		}
		wantStatus(t, s.Do(t, "GET", "/v1.0-alpha1/configuration/configstore/"+sentinel.ID+"/unsubscribe", nil), http.StatusOK, "")
	})
}

// TestConfigurationErrors checks daprd's statuses and error codes.
func TestConfigurationErrors(t *testing.T) {
	yaml, _ := cfgstores.SQLite(t, "configstore")
	noApp := mechatest.Start(t, uniqueApp, yaml)
	bare := mechatest.Start(t, uniqueApp, mechatest.InMemory)
	tests := []struct {
		name   string
		s      *mechatest.Sidecar
		path   string
		status int
		code   string
	}{
		{"get unknown store", noApp, "/v1.0/configuration/nope?key=a", 400, "ERR_CONFIGURATION_STORE_NOT_FOUND"},
		{"subscribe unknown store", noApp, "/v1.0/configuration/nope/subscribe?key=a", 400, "ERR_CONFIGURATION_STORE_NOT_FOUND"},
		{"unsubscribe unknown store", noApp, "/v1.0/configuration/nope/x/unsubscribe", 400, "ERR_CONFIGURATION_STORE_NOT_FOUND"},
		{"alpha unknown store", noApp, "/v1.0-alpha1/configuration/nope", 400, "ERR_CONFIGURATION_STORE_NOT_FOUND"},
		{"subscribe without app port", noApp, "/v1.0/configuration/configstore/subscribe?key=a", 500, "ERR_APP_CHANNEL_NIL"},
		{"no stores: get", bare, "/v1.0/configuration/configstore", 500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"},
		{"no stores: subscribe", bare, "/v1.0/configuration/configstore/subscribe", 500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"},
		{"no stores: unsubscribe", bare, "/v1.0/configuration/configstore/x/unsubscribe", 500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.s.Do(t, "GET", tt.path, nil)
			wantStatus(t, r, tt.status, tt.code)
			if r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
			}
		})
	}
	if r := noApp.Do(t, "GET", "/v1.0/configuration/configstore/subscribe", nil); !strings.Contains(string(r.Body), "app channel is not initialized") {
		t.Errorf("subscribe without app port: %s", r.Body)
	}
	if r := noApp.Do(t, "POST", "/v1.0/configuration/configstore", nil); r.Status == http.StatusOK {
		t.Errorf("POST on the configuration API = %d, want it refused", r.Status)
	}
}

// TestConfigurationWaitsForApp checks that updates are held until the app
// listens, then delivered; and that an app answering an error does not
// stop later deliveries.
func TestConfigurationWaitsForApp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	yaml, w := cfgstores.SQLite(t, "configstore")
	s := mechatest.Start(t, func(o *mrt.Options) {
		uniqueApp(o)
		o.AppPort = port
	}, yaml)
	r := s.Do(t, "GET", "/v1.0/configuration/configstore/subscribe?key=k", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("subscribe before the app listens = %d %s", r.Status, r.Body)
	}
	// A gRPC subscription on the same key tells when the store has seen the
	// change: the HTTP one has it queued by then, held while the app is
	// down.
	stream, err := s.Dapr.SubscribeConfiguration(cfgCtx(t), &runtimev1.SubscribeConfigurationRequest{StoreName: "configstore", Keys: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cfgWrite(t, w, "k", "early")
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	app := cfgstores.NewAppOn(t, port)
	d := app.Next(t, cfgWait, nil)
	if d.Items["k"].Value != "early" {
		t.Fatalf("held delivery %s", d.Body)
	}
	app.Status.Store(http.StatusInternalServerError)
	cfgWrite(t, w, "k", "refused")
	app.Next(t, cfgWait, func(d cfgstores.Delivery) bool { return d.Items["k"].Value == "refused" })
	app.Status.Store(http.StatusOK)
	cfgWrite(t, w, "k", "accepted")
	app.Next(t, cfgWait, func(d cfgstores.Delivery) bool { return d.Items["k"].Value == "accepted" })
}

// TestConfigurationNoGoroutineLeak closes a sidecar with live HTTP and gRPC
// subscriptions and checks every goroutine it started is gone.
func TestConfigurationNoGoroutineLeak(t *testing.T) {
	yaml, w := cfgstores.SQLite(t, "configstore")
	app := cfgstores.NewApp(t)
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	s := mechatest.Start(t, func(o *mrt.Options) {
		uniqueApp(o)
		o.AppPort = app.Port
		o.GracefulShutdown = time.Second
	}, yaml)
	r := s.Do(t, "GET", "/v1.0/configuration/configstore/subscribe?key=k", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("subscribe = %d %s", r.Status, r.Body)
	}
	s.Do(t, "GET", "/v1.0/configuration/configstore/subscribe", nil)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := s.Dapr.SubscribeConfiguration(ctx, &runtimev1.SubscribeConfigurationRequest{StoreName: "configstore", Keys: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cfgWrite(t, w, "k", "v")
	app.Next(t, cfgWait, nil)
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.RT.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.Conn.Close()
	http.DefaultClient.CloseIdleConnections()
	mechatest.Eventually(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines after Close, %d before Start:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}
