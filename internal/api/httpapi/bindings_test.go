package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// bindReq is an output binding request body.
type bindReq struct {
	Data      any               `json:"data,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Operation string            `json:"operation,omitempty"`
}

func wantBindingError(t *testing.T, r *mechatest.Response, status int, code, msg string) {
	t.Helper()
	var e struct{ ErrorCode, Message string }
	_ = json.Unmarshal(r.Body, &e)
	if r.Status != status || e.ErrorCode != code || !strings.Contains(e.Message, msg) {
		t.Fatalf("got %d %s, want %d %s with a message containing %q", r.Status, r.Body, status, code, msg)
	}
}

// bindEchoUpstream is the server a bindings.http component calls: it answers
// with the request body and, as Echo-* headers, the method, URI and request
// headers; a path ending in /status/<code> answers that status.
func bindEchoUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Echo-Method", r.Method)
		w.Header().Set("Echo-Uri", r.URL.RequestURI())
		for k, v := range r.Header {
			w.Header().Set("Echo-"+k, strings.Join(v, ","))
		}
		status := http.StatusOK
		if i := strings.LastIndex(r.URL.Path, "/status/"); i >= 0 {
			status, _ = strconv.Atoi(r.URL.Path[i+len("/status/"):])
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestOutputBindingHTTPComponent(t *testing.T) {
	up := bindEchoUpstream(t)
	s := mechatest.Start(t, nil, mechatest.Component("web", "bindings.http", "url", up.URL+"/api"))

	r := s.Do(t, "POST", "/v1.0/bindings/web", bindReq{Operation: "post", Data: map[string]any{"a": 1}, Metadata: map[string]string{"path": "items", "X-Custom": "v1"}})
	if r.Status != 200 || string(r.Body) != `{"a":1}` {
		t.Fatalf("post = %d %s", r.Status, r.Body)
	}
	for k, v := range map[string]string{"metadata.statusCode": "200", "metadata.status": "200 OK", "metadata.Echo-Method": "POST", "metadata.Echo-Uri": "/api/items", "metadata.Echo-X-Custom": "v1", "Content-Type": "application/json"} {
		if got := r.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	// A JSON string reaches the component with its quotes, as in daprd.
	r = s.Do(t, "PUT", "/v1.0/bindings/web", `{"operation":"create","data":"hi"}`)
	if r.Status != 200 || string(r.Body) != `"hi"` || r.Header.Get("metadata.Echo-Method") != "POST" {
		t.Fatalf("create with a string = %d %s %v", r.Status, r.Body, r.Header)
	}
	// Missing data is JSON null.
	if r := s.Do(t, "POST", "/v1.0/bindings/web", `{"operation":"post"}`); string(r.Body) != "null" {
		t.Fatalf("post without data = %d %q, want null", r.Status, r.Body)
	}
	// The trace context of the request reaches the component.
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	r = s.Do(t, "POST", "/v1.0/bindings/web", bindReq{Operation: "get"}, "traceparent", tp, "tracestate", "k=v")
	if r.Header.Get("metadata.Echo-Traceparent") != tp || r.Header.Get("metadata.Echo-Tracestate") != "k=v" {
		t.Fatalf("trace headers did not reach the upstream: %v", r.Header)
	}
	// An upstream error is ERR_INVOKE_OUTPUT_BINDING, with the metadata.
	r = s.Do(t, "POST", "/v1.0/bindings/web", bindReq{Operation: "get", Metadata: map[string]string{"path": "status/404"}})
	wantBindingError(t, r, 500, "ERR_INVOKE_OUTPUT_BINDING", "error invoking output binding web: received status code 404")
	if r.Header.Get("metadata.statusCode") != "404" {
		t.Errorf("failed call headers %v, want metadata.statusCode 404", r.Header)
	}
}

func TestOutputBindingBadRequests(t *testing.T) {
	s := mechatest.Start(t, nil,
		mechatest.Component("files", "bindings.localstorage", "rootPath", t.TempDir()),
		mechatest.Component("tick", "bindings.cron", "schedule", "every tuesday"),
		mechatest.Component("nosched", "bindings.cron"),
	)
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		code   string
		msg    string
	}{
		{"unknown binding", "/v1.0/bindings/nope", `{"operation":"create"}`, 500, "ERR_INVOKE_OUTPUT_BINDING", "couldn't find output binding nope"},
		{"missing operation", "/v1.0/bindings/files", `{"data":1}`, 500, "ERR_INVOKE_OUTPUT_BINDING", "operation field is missing from request"},
		{"unsupported operation", "/v1.0/bindings/files", `{"operation":"exec"}`, 500, "ERR_INVOKE_OUTPUT_BINDING", "does not support operation exec. supported operations:create get list delete"},
		{"input-only binding", "/v1.0/bindings/tick", `{"operation":"create"}`, 500, "ERR_INVOKE_OUTPUT_BINDING", "couldn't find output binding tick"},
		{"malformed JSON", "/v1.0/bindings/files", `{"operation":`, 400, "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body"},
		{"empty body", "/v1.0/bindings/files", ``, 400, "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body"},
		{"metadata not strings", "/v1.0/bindings/files", `{"operation":"get","metadata":{"fileName":1}}`, 400, "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantBindingError(t, s.Do(t, "POST", tt.path, tt.body), tt.status, tt.code, tt.msg)
		})
	}
	t.Run("invalid cron schedules are resource errors", func(t *testing.T) {
		var md struct {
			ResourceErrors []struct{ Name, Error string } `json:"resourceErrors"`
		}
		s.Do(t, "GET", "/v1.0/metadata", nil).JSON(t, &md)
		got := map[string]string{}
		for _, e := range md.ResourceErrors {
			got[e.Name] = e.Error
		}
		if !strings.Contains(got["tick"], `"schedule"`) || !strings.Contains(got["tick"], "every tuesday") {
			t.Errorf("resource error of tick = %q, want one naming the schedule", got["tick"])
		}
		if !strings.Contains(got["nosched"], `"schedule" is required`) {
			t.Errorf("resource error of nosched = %q, want schedule is required", got["nosched"])
		}
	})
}

func TestOutputBindingLocalStorage(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	s := mechatest.Start(t, nil, mechatest.Component("files", "bindings.localstorage", "rootPath", root))

	r := s.Do(t, "POST", "/v1.0/bindings/files", bindReq{Operation: "create", Data: "hello", Metadata: map[string]string{"fileName": "dir/a.txt"}})
	if r.Status != 200 || string(r.Body) != `{"fileName":"dir/a.txt"}` {
		t.Fatalf("create = %d %s", r.Status, r.Body)
	}
	if b, err := os.ReadFile(filepath.Join(root, "dir", "a.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("file content %q, %v; want hello", b, err)
	}
	r = s.Do(t, "POST", "/v1.0/bindings/files", bindReq{Operation: "get", Metadata: map[string]string{"fileName": "dir/a.txt"}})
	if r.Status != 200 || string(r.Body) != "hello" {
		t.Fatalf("get = %d %s", r.Status, r.Body)
	}
	r = s.Do(t, "POST", "/v1.0/bindings/files", bindReq{Operation: "list"})
	var files []string
	r.JSON(t, &files)
	if len(files) != 1 || files[0] != filepath.Join(root, "dir", "a.txt") {
		t.Fatalf("list = %q", files)
	}
	if r := s.Do(t, "POST", "/v1.0/bindings/files", bindReq{Operation: "delete", Metadata: map[string]string{"fileName": "dir/a.txt"}}); r.Status != 204 || len(r.Body) != 0 {
		t.Fatalf("delete = %d %s, want 204", r.Status, r.Body)
	}
	wantBindingError(t, s.Do(t, "POST", "/v1.0/bindings/files", bindReq{Operation: "get", Metadata: map[string]string{"fileName": "dir/a.txt"}}),
		500, "ERR_INVOKE_OUTPUT_BINDING", "file not found")

	// Traversal attempts fail clearly and write nothing outside the root.
	if err := os.Symlink(parent, filepath.Join(root, "up")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"../outside.txt":                     "escapes rootPath",
		"dir/../../outside.txt":              "escapes rootPath",
		filepath.Join(parent, "outside.txt"): "absolute path",
		"up/outside.txt":                     "outside rootPath",
	} {
		r := s.Do(t, "POST", "/v1.0/bindings/files", bindReq{Operation: "create", Data: "pwned", Metadata: map[string]string{"fileName": name}})
		wantBindingError(t, r, 500, "ERR_INVOKE_OUTPUT_BINDING", want)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("the root's parent holds %d entries, want only the root", len(entries))
	}
}

func TestOutputBindingRedis(t *testing.T) {
	addr := mechatest.ServiceEnv(t, "REDIS_ADDR")
	s := mechatest.Start(t, nil, mechatest.Component("cache", "bindings.redis", "redisHost", addr))
	key := fmt.Sprintf("mecha-httpapi-binding-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		s.Do(t, "POST", "/v1.0/bindings/cache", bindReq{Operation: "delete", Metadata: map[string]string{"key": key}})
	})
	md := map[string]string{"key": key, "ttlInSeconds": "60"}
	if r := s.Do(t, "POST", "/v1.0/bindings/cache", bindReq{Operation: "create", Data: map[string]int{"n": 1}, Metadata: md}); r.Status != 204 {
		t.Fatalf("create = %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "POST", "/v1.0/bindings/cache", bindReq{Operation: "get", Metadata: map[string]string{"key": key}}); r.Status != 200 || string(r.Body) != `{"n":1}` {
		t.Fatalf("get = %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "POST", "/v1.0/bindings/cache", bindReq{Operation: "delete", Metadata: map[string]string{"key": key}}); r.Status != 204 {
		t.Fatalf("delete = %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "POST", "/v1.0/bindings/cache", bindReq{Operation: "get", Metadata: map[string]string{"key": key}}); r.Status != 200 || len(r.Body) != 0 {
		t.Fatalf("get deleted = %d %q, want 200 with no body (daprd)", r.Status, r.Body)
	}
	wantBindingError(t, s.Do(t, "POST", "/v1.0/bindings/cache", bindReq{Operation: "create", Data: 1}), 500, "ERR_INVOKE_OUTPUT_BINDING", `"key" is required`)
}

func TestOutputBindingPostgres(t *testing.T) {
	dsn := mechatest.ServiceEnv(t, "PG_DSN")
	s := mechatest.Start(t, nil, mechatest.Component("db", "bindings.postgresql", "connectionString", dsn))
	table := fmt.Sprintf("mecha_httpapi_binding_%d", time.Now().UnixNano())
	exec := func(sql, params string) *mechatest.Response {
		md := map[string]string{"sql": sql}
		if params != "" {
			md["params"] = params
		}
		return s.Do(t, "POST", "/v1.0/bindings/db", bindReq{Operation: "exec", Metadata: md})
	}
	t.Cleanup(func() { exec("DROP TABLE IF EXISTS "+table, "") })
	if r := exec("CREATE TABLE "+table+" (id int, name text)", ""); r.Status != 200 || r.Header.Get("metadata.rows-affected") != "0" {
		t.Fatalf("create table = %d %s %v", r.Status, r.Body, r.Header)
	}
	if r := exec("INSERT INTO "+table+" VALUES ($1, $2), ($3, $4)", `[1, "one", 2, "two"]`); r.Header.Get("metadata.rows-affected") != "2" {
		t.Fatalf("insert = %d %s %v", r.Status, r.Body, r.Header)
	}
	r := s.Do(t, "POST", "/v1.0/bindings/db", bindReq{Operation: "query", Metadata: map[string]string{"sql": "SELECT id, name FROM " + table + " ORDER BY id"}})
	if r.Status != 200 || string(r.Body) != `[[1,"one"],[2,"two"]]` || r.Header.Get("metadata.operation") != "query" {
		t.Fatalf("query = %d %s %v", r.Status, r.Body, r.Header)
	}
	wantBindingError(t, exec("SELECT * FROM no_such_table_"+table, ""), 500, "ERR_INVOKE_OUTPUT_BINDING", "error executing")
}

// bindApp is an HTTP app on 127.0.0.1 that records the calls it gets and
// answers them with respond.
type bindApp struct {
	srv     *httptest.Server
	respond func(r *http.Request, body string) (int, string)

	mu    sync.Mutex
	calls []bindAppCall
}

type bindAppCall struct {
	Method, Path string
	Header       http.Header
	Body         string
}

func newBindApp(t *testing.T, respond func(r *http.Request, body string) (int, string)) *bindApp {
	a := &bindApp{respond: respond}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, bindAppCall{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body)})
		a.mu.Unlock()
		status, out := a.respond(r, string(body))
		w.WriteHeader(status)
		_, _ = io.WriteString(w, out)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// port configures the sidecar to use this app.
func (a *bindApp) port(o *runtime.Options) {
	_, p, _ := net.SplitHostPort(a.srv.Listener.Addr().String())
	o.AppPort, _ = strconv.Atoi(p)
}

// callsTo returns the calls with method and path.
func (a *bindApp) callsTo(method, path string) []bindAppCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []bindAppCall
	for _, c := range a.calls {
		if c.Method == method && c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

// atLeast returns a condition for mechatest.Eventually.
func (a *bindApp) atLeast(n int, method, path string) func() error {
	return func() error {
		if got := len(a.callsTo(method, path)); got < n {
			return fmt.Errorf("%d calls of %s %s, want %d", got, method, path, n)
		}
		return nil
	}
}

func TestInputBindingCronToHTTPApp(t *testing.T) {
	var mu sync.Mutex
	failing := true
	app := newBindApp(t, func(r *http.Request, _ string) (int, string) {
		switch {
		case r.Method == http.MethodOptions && r.URL.Path == "/unwanted":
			return http.StatusNotFound, ""
		case r.Method == http.MethodOptions && r.URL.Path == "/flaky":
			return http.StatusMethodNotAllowed, "" // 405 also means "wanted"
		case r.URL.Path == "/flaky":
			mu.Lock()
			defer mu.Unlock()
			if failing {
				failing = false
				return http.StatusInternalServerError, "not now"
			}
		}
		return http.StatusOK, ""
	})
	mechatest.Start(t, app.port,
		mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s", "route", "/cron-route"),
		mechatest.Component("unwanted", "bindings.cron", "schedule", "@every 1s"),
		mechatest.Component("flaky", "bindings.cron", "schedule", "@every 1s"),
		mechatest.Component("direct", "bindings.cron", "schedule", "@every 1s", "direction", "input"),
	)
	mechatest.Eventually(t, 10*time.Second, app.atLeast(2, "POST", "/cron-route"))
	// The binding's route was probed, the event carries the cron metadata.
	if len(app.callsTo("OPTIONS", "/cron-route")) != 1 {
		t.Errorf("OPTIONS /cron-route calls = %d, want 1", len(app.callsTo("OPTIONS", "/cron-route")))
	}
	ev := app.callsTo("POST", "/cron-route")[0]
	if ev.Body != "" || ev.Header.Get("Readtimeutc") == "" || ev.Header.Get("Timezone") == "" || ev.Header.Get("Content-Type") != "application/json" {
		t.Errorf("cron event = %+v, want an empty body with readTimeUTC and timeZone headers", ev)
	}
	// The app that failed once keeps getting events (cron does not
	// redeliver; the failure was reported to the component).
	mechatest.Eventually(t, 10*time.Second, app.atLeast(2, "POST", "/flaky"))
	// direction: input skips the probe, as daprd.
	mechatest.Eventually(t, 10*time.Second, app.atLeast(1, "POST", "/direct"))
	if n := len(app.callsTo("OPTIONS", "/direct")); n != 0 {
		t.Errorf("OPTIONS /direct calls = %d, want none (direction input)", n)
	}
	// The app that answered 404 got no events, while the others got several.
	if n := len(app.callsTo("POST", "/unwanted")); n != 0 || len(app.callsTo("OPTIONS", "/unwanted")) != 1 {
		t.Errorf("unwanted binding: %d events, %d probes; want 0 and 1", n, len(app.callsTo("OPTIONS", "/unwanted")))
	}
}

func TestInputBindingNoAppPort(t *testing.T) {
	// Without an app, input bindings are loaded but not read; the sidecar
	// serves as usual.
	s := mechatest.Start(t, nil, mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s"))
	var md struct {
		Components []struct {
			Name, Type   string
			Capabilities []string
		}
	}
	s.Do(t, "GET", "/v1.0/metadata", nil).JSON(t, &md)
	if len(md.Components) != 1 || md.Components[0].Name != "tick" || strings.Join(md.Components[0].Capabilities, ",") != "INPUT_BINDING" {
		t.Fatalf("components = %+v, want tick with INPUT_BINDING", md.Components)
	}
}

func TestInputBindingFanOut(t *testing.T) {
	root := t.TempDir()
	app := newBindApp(t, func(r *http.Request, _ string) (int, string) {
		if r.Method == http.MethodPost {
			return http.StatusOK, `{"to":["files"],"data":{"from":"cron"},"concurrency":"sequential"}`
		}
		return http.StatusOK, ""
	})
	mechatest.Start(t, app.port,
		mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s"),
		mechatest.Component("files", "bindings.localstorage", "rootPath", root),
	)
	mechatest.Eventually(t, 10*time.Second, func() error {
		entries, err := os.ReadDir(root)
		if err != nil || len(entries) == 0 {
			return fmt.Errorf("no file written yet (%v)", err)
		}
		b, err := os.ReadFile(filepath.Join(root, entries[0].Name()))
		if err != nil || string(b) != `{"from":"cron"}` {
			return fmt.Errorf("file %s = %q, %v", entries[0].Name(), b, err)
		}
		return nil
	})
}

// bindMQTTClient connects a plain MQTT client to the test broker.
func bindMQTTClient(t *testing.T, url string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("httpapi-test-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func TestMQTTBindings(t *testing.T) {
	url := mechatest.ServiceEnv(t, "MQTT_URL")
	raw := bindMQTTClient(t, url)
	topic := fmt.Sprintf("mecha/httpapi/%d", time.Now().UnixNano())
	var mu sync.Mutex
	rejected := false
	app := newBindApp(t, func(r *http.Request, body string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost && body == "event-1" && !rejected {
			rejected = true
			return http.StatusInternalServerError, "try again"
		}
		return http.StatusOK, ""
	})
	s := mechatest.Start(t, app.port,
		mechatest.Component("mq-in", "bindings.mqtt3", "url", url, "topic", topic+"/in", "consumerID", fmt.Sprintf("httpapi-in-%d", time.Now().UnixNano()), "backOffMaxRetries", "3", "direction", "input"),
		mechatest.Component("mq-out", "bindings.mqtt3", "url", url, "topic", topic+"/out", "consumerID", fmt.Sprintf("httpapi-out-%d", time.Now().UnixNano()), "direction", "output"),
	)

	t.Run("output to a subscriber", func(t *testing.T) {
		got := make(chan mqtt.Message, 10)
		if tok := raw.Subscribe(topic+"/out", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		if r := s.Do(t, "POST", "/v1.0/bindings/mq-out", bindReq{Operation: "create", Data: map[string]string{"hello": "mqtt"}}); r.Status != 204 {
			t.Fatalf("publish = %d %s", r.Status, r.Body)
		}
		select {
		case m := <-got:
			if string(m.Payload()) != `{"hello":"mqtt"}` {
				t.Fatalf("subscriber got %q", m.Payload())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the subscriber got nothing")
		}
	})

	t.Run("input to the app, redelivered after a 500", func(t *testing.T) {
		// Publish until the binding's subscription is in place.
		n := 0
		mechatest.Eventually(t, 15*time.Second, func() error {
			if len(app.callsTo("POST", "/mq-in")) > 0 {
				return nil
			}
			n++
			raw.Publish(topic+"/in", 1, false, fmt.Sprintf("warm-up-%d", n)).WaitTimeout(5 * time.Second)
			return app.atLeast(1, "POST", "/mq-in")()
		})
		if tok := raw.Publish(topic+"/in", 1, false, "event-1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		// The first delivery is rejected with 500 and delivered again.
		var deliveries []bindAppCall
		mechatest.Eventually(t, 15*time.Second, func() error {
			deliveries = nil
			for _, c := range app.callsTo("POST", "/mq-in") {
				if c.Body == "event-1" {
					deliveries = append(deliveries, c)
				}
			}
			if len(deliveries) < 2 {
				return fmt.Errorf("event-1 delivered %d times, want 2", len(deliveries))
			}
			return nil
		})
		if deliveries[0].Header.Get("Topic") != topic+"/in" || deliveries[0].Header.Get("Content-Type") != "application/json" {
			t.Fatalf("delivery headers = %v, want the topic header", deliveries[0].Header)
		}
	})
}
