package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/api/httpapi"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/blocks/state"
)

// fakeHealth reports whatever the test sets.
type fakeHealth struct {
	mu              sync.Mutex
	outbound, ready error
}

func (h *fakeHealth) Outbound() error { h.mu.Lock(); defer h.mu.Unlock(); return h.outbound }
func (h *fakeHealth) Ready() error    { h.mu.Lock(); defer h.mu.Unlock(); return h.ready }

func (h *fakeHealth) set(outbound, ready error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outbound, h.ready = outbound, ready
}

// syncBuf is a log output read by the test while the server writes it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type handlerEnv struct {
	url       string
	health    *fakeHealth
	shutdowns *atomic.Int32
	meta      *metadata.Block
	logs      *syncBuf
}

func newHandler(t *testing.T, apiLogging bool) *handlerEnv {
	t.Helper()
	env := &handlerEnv{health: &fakeHealth{}, shutdowns: &atomic.Int32{}, logs: &syncBuf{}}
	env.meta = metadata.New("myapp", "1.2.3", metadata.AppConnection{})
	h := httpapi.Handler(httpapi.Deps{
		AppID:       "myapp",
		State:       state.New("myapp", "default"),
		Metadata:    env.meta,
		Health:      env.health,
		Shutdown:    func() { env.shutdowns.Add(1) },
		MaxBodySize: 1 << 10,
		Logger:      slog.New(slog.NewJSONHandler(env.logs, nil)),
		APILogging:  apiLogging,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	env.url = srv.URL
	return env
}

type answer struct {
	status int
	code   string
	body   string
}

func call(t *testing.T, method, url, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		ErrorCode string `json:"errorCode"`
	}
	_ = json.Unmarshal(b, &e)
	return answer{resp.StatusCode, e.ErrorCode, string(b)}
}

func TestHealthEndpoints(t *testing.T) {
	env := newHandler(t, false)
	notYet := errors.New("components are initialising")
	cases := []struct {
		name            string
		outbound, ready error
		path            string
		status          int
		code            string
	}{
		{"initialising", notYet, notYet, "/v1.0/healthz", 500, "ERR_HEALTH_NOT_READY"},
		{"initialising outbound", notYet, notYet, "/v1.0/healthz/outbound", 500, "ERR_OUTBOUND_HEALTH_NOT_READY"},
		{"waiting for the app", nil, errors.New("waiting for the app"), "/v1.0/healthz", 500, "ERR_HEALTH_NOT_READY"},
		{"outbound while waiting for the app", nil, errors.New("waiting for the app"), "/v1.0/healthz/outbound", 204, ""},
		{"ready", nil, nil, "/v1.0/healthz", 204, ""},
		{"ready, trailing slash", nil, nil, "/v1.0/healthz/", 204, ""},
		{"own app id", nil, nil, "/v1.0/healthz?appid=myapp", 204, ""},
		{"other app id", nil, nil, "/v1.0/healthz?appid=other", 500, "ERR_HEALTH_APPID_NOT_MATCH"},
		{"empty app id", nil, nil, "/v1.0/healthz?appid=", 500, "ERR_HEALTH_APPID_NOT_MATCH"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env.health.set(c.outbound, c.ready)
			got := call(t, "GET", env.url+c.path, "")
			if got.status != c.status || got.code != c.code {
				t.Fatalf("GET %s = %d %s, want %d %q", c.path, got.status, got.body, c.status, c.code)
			}
			if c.ready != nil && c.status == 500 && c.code == "ERR_HEALTH_NOT_READY" && !strings.Contains(got.body, c.ready.Error()) {
				t.Fatalf("body %s does not say why: %v", got.body, c.ready)
			}
		})
	}
}

func TestShutdownEndpoint(t *testing.T) {
	env := newHandler(t, false)
	if got := call(t, "POST", env.url+"/v1.0/shutdown", ""); got.status != 204 {
		t.Fatalf("POST shutdown = %d %s, want 204", got.status, got.body)
	}
	if n := env.shutdowns.Load(); n != 1 {
		t.Fatalf("Shutdown called %d times, want 1", n)
	}
	if got := call(t, "GET", env.url+"/v1.0/shutdown", ""); got.status == 204 || env.shutdowns.Load() != 1 {
		t.Fatalf("GET shutdown = %d and %d shutdowns: only POST may shut down", got.status, env.shutdowns.Load())
	}
}

func TestMetadataEndpoints(t *testing.T) {
	env := newHandler(t, false)
	env.meta.AddComponent(metadata.Component{Name: "statestore", Type: "state.sqlite", Version: "v1", Capabilities: []string{"ETAG"}})
	env.meta.AddResourceError(metadata.ResourceError{File: "bad.yaml", Kind: "Component", Name: "broken", Message: "missing spec.type"})
	if got := call(t, "PUT", env.url+"/v1.0/metadata/cliPID", "1234"); got.status != 204 {
		t.Fatalf("PUT metadata = %d %s", got.status, got.body)
	}
	if got := call(t, "PUT", env.url+"/v1.0/metadata/big", strings.Repeat("x", 2<<10)); got.status != 413 || got.code != "ERR_BODY_TOO_LARGE" {
		t.Fatalf("PUT an oversized value = %d %s, want 413 ERR_BODY_TOO_LARGE", got.status, got.body)
	}
	got := call(t, "GET", env.url+"/v1.0/metadata", "")
	if got.status != 200 {
		t.Fatalf("GET metadata = %d %s", got.status, got.body)
	}
	var m struct {
		ID             string            `json:"id"`
		RuntimeVersion string            `json:"runtimeVersion"`
		Extended       map[string]string `json:"extended"`
		Components     []struct {
			Name, Type, Version string
			Capabilities        []string
		} `json:"components"`
		ResourceErrors []map[string]string `json:"resourceErrors"`
		ActorRuntime   struct {
			RuntimeStatus string `json:"runtimeStatus"`
		} `json:"actorRuntime"`
	}
	if err := json.Unmarshal([]byte(got.body), &m); err != nil {
		t.Fatal(err)
	}
	if m.ID != "myapp" || m.RuntimeVersion != "1.2.3" || m.Extended["cliPID"] != "1234" || m.Extended["big"] != "" || m.ActorRuntime.RuntimeStatus != "DISABLED" {
		t.Fatalf("metadata = %s", got.body)
	}
	if len(m.Components) != 1 || m.Components[0].Name != "statestore" || m.Components[0].Type != "state.sqlite" || m.Components[0].Capabilities[0] != "ETAG" {
		t.Fatalf("components = %+v", m.Components)
	}
	wantErr := map[string]string{"file": "bad.yaml", "kind": "Component", "name": "broken", "error": "missing spec.type"}
	if len(m.ResourceErrors) != 1 || len(m.ResourceErrors[0]) != len(wantErr) {
		t.Fatalf("resourceErrors = %v, want [%v]", m.ResourceErrors, wantErr)
	}
	for k, v := range wantErr {
		if m.ResourceErrors[0][k] != v {
			t.Fatalf("resourceErrors = %v, want [%v]", m.ResourceErrors, wantErr)
		}
	}
}

func TestAPILogging(t *testing.T) {
	for _, on := range []bool{false, true} {
		env := newHandler(t, on)
		env.health.set(nil, nil)
		call(t, "GET", env.url+"/v1.0/healthz", "")
		call(t, "GET", env.url+"/v1.0/state/statestore/k", "")
		logs := env.logs.String()
		if !on {
			if strings.Contains(logs, "HTTP API called") {
				t.Fatalf("API logging off, but logged:\n%s", logs)
			}
			continue
		}
		var lines []map[string]any
		for line := range strings.Lines(logs) {
			var l map[string]any
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if l["msg"] == "HTTP API called" {
				lines = append(lines, l)
			}
		}
		if len(lines) != 2 {
			t.Fatalf("logged %d API calls, want 2:\n%s", len(lines), logs)
		}
		if lines[0]["path"] != "/v1.0/healthz" || lines[0]["status"] != float64(204) || lines[0]["method"] != "GET" {
			t.Errorf("first API log = %v", lines[0])
		}
		if lines[1]["path"] != "/v1.0/state/statestore/k" || lines[1]["status"] != float64(500) {
			t.Errorf("second API log = %v, want status 500 (no store configured)", lines[1])
		}
	}
}
