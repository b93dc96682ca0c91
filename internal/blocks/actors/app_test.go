package actors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/blocks/actors/actorstest"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// event is a callback the test app received.
type event struct {
	Kind string // method, remind, timer, deactivate
	Type string
	ID   string
	Name string
	Body []byte
	At   time.Time
}

// actorApp is an HTTP actor app in the style of the Dapr SDKs: it answers
// /dapr/config, runs methods, receives timer and reminder callbacks and
// deactivations, and calls its sidecar back for state and nested calls.
type actorApp struct {
	t      testing.TB
	name   string
	config string
	// sidecar is the HTTP base of the app's sidecar, set once it runs.
	sidecar atomic.Value

	mu       sync.Mutex
	counters map[string]int
	inside   map[string]int // calls running per actor
	overlap  atomic.Int64   // calls that found another call of the same actor running
	events   []event
}

func newActorApp(t testing.TB, name, config string) *actorApp {
	return &actorApp{t: t, name: name, config: config, counters: map[string]int{}, inside: map[string]int{}}
}

func (a *actorApp) record(e event) {
	e.At = time.Now()
	a.mu.Lock()
	a.events = append(a.events, e)
	a.mu.Unlock()
}

// count returns how many events match kind, type, id and name ("" matches
// any).
func (a *actorApp) count(kind, typ, id, name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.events {
		if (kind == "" || e.Kind == kind) && (typ == "" || e.Type == typ) && (id == "" || e.ID == id) && (name == "" || e.Name == name) {
			n++
		}
	}
	return n
}

func (a *actorApp) matching(kind, id, name string) []event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []event
	for _, e := range a.events {
		if e.Kind == kind && (id == "" || e.ID == id) && (name == "" || e.Name == name) {
			out = append(out, e)
		}
	}
	return out
}

func (a *actorApp) sidecarURL() string { s, _ := a.sidecar.Load().(string); return s }

func (a *actorApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/dapr/config" {
		if a.config == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, a.config)
		return
	}
	if r.URL.Path == "/healthz" {
		return
	}
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/actors/"), "/", 4)
	if !strings.HasPrefix(r.URL.Path, "/actors/") || len(parts) < 2 {
		http.NotFound(w, r)
		return
	}
	typ, id := parts[0], parts[1]
	body, _ := io.ReadAll(r.Body)
	if r.Method == http.MethodDelete && len(parts) == 2 {
		a.record(event{Kind: "deactivate", Type: typ, ID: id})
		if strings.HasPrefix(id, "faildeact") {
			http.Error(w, "cannot deactivate", http.StatusInternalServerError)
		}
		if strings.HasPrefix(id, "slowdeact") {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}
		return
	}
	if r.Method != http.MethodPut || len(parts) != 4 || parts[2] != "method" {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
		return
	}
	method := parts[3]
	key := typ + "/" + id
	a.mu.Lock()
	a.inside[key]++
	if a.inside[key] > 1 && !strings.HasPrefix(method, "reenter") && !strings.HasPrefix(method, "echo") && method != "deep" {
		a.overlap.Add(1)
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.inside[key]--
		a.mu.Unlock()
	}()
	switch {
	case strings.HasPrefix(method, "remind/"), strings.HasPrefix(method, "timer/"):
		kind, name, _ := strings.Cut(method, "/")
		a.record(event{Kind: kind, Type: typ, ID: id, Name: name, Body: body})
		if strings.HasPrefix(name, "cancel") && a.count(kind, typ, id, name) >= 2 {
			w.Header().Set("X-DaprReminderCancel", "true")
		}
		if strings.HasPrefix(name, "fail") {
			http.Error(w, "boom", http.StatusInternalServerError)
		}
		return
	}
	a.record(event{Kind: "method", Type: typ, ID: id, Name: method, Body: body})
	switch method {
	case "incr":
		a.mu.Lock()
		a.counters[key]++
		n := a.counters[key]
		a.mu.Unlock()
		// Give overlapping calls a chance to show.
		time.Sleep(200 * time.Microsecond)
		fmt.Fprint(w, n)
	case "whoami":
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Actor-Host", a.name)
		fmt.Fprint(w, a.name)
	case "save":
		// Writes the body under key "value" from within the turn.
		ops := fmt.Sprintf(`[{"operation":"upsert","request":{"key":"value","value":%s}}]`, body)
		st, b := a.call(http.MethodPost, "/v1.0/actors/"+typ+"/"+id+"/state", ops, "")
		if st != http.StatusNoContent {
			http.Error(w, fmt.Sprintf("saving state: %d %s", st, b), http.StatusInternalServerError)
			return
		}
	case "load":
		st, b := a.call(http.MethodGet, "/v1.0/actors/"+typ+"/"+id+"/state/value", "", "")
		w.WriteHeader(st)
		_, _ = w.Write(b)
	case "reenter":
		// Calls the same actor through the sidecar, passing the chain's
		// reentrancy id on, as the SDKs do.
		st, b := a.call(http.MethodPost, "/v1.0/actors/"+typ+"/"+id+"/method/echo", "", r.Header.Get(actors.ReentrancyHeader))
		if st != http.StatusOK {
			http.Error(w, fmt.Sprintf("nested call: %d %s", st, b), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "outer(%s)", b)
	case "deep":
		// Nests n calls of the same actor.
		n, _ := strconv.Atoi(string(body))
		if n == 0 {
			fmt.Fprint(w, "bottom")
			return
		}
		st, b := a.call(http.MethodPost, "/v1.0/actors/"+typ+"/"+id+"/method/deep", strconv.Itoa(n-1), r.Header.Get(actors.ReentrancyHeader))
		w.WriteHeader(st)
		_, _ = w.Write(b)
	case "echo":
		fmt.Fprintf(w, "echo:%t", r.Header.Get(actors.ReentrancyHeader) != "")
	case "fail":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "actorerror":
		w.Header().Set("X-DaprErrorResponseHeader", "true")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"error":"domain"}`)
	case "slow":
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "slow done")
	case "hold":
		// Holds the turn long enough for a test to look at the calls
		// queued behind it, even on a loaded machine.
		time.Sleep(1500 * time.Millisecond)
	default:
		http.Error(w, "no method "+method, http.StatusNotFound)
	}
}

// call calls the app's sidecar with a 2 s timeout.
func (a *actorApp) call(method, path, body, reentrancy string) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, a.sidecarURL()+path, rd)
	if reentrancy != "" {
		req.Header.Set(actors.ReentrancyHeader, reentrancy)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 599, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// counterConfig is a /dapr/config hosting Counter (idle timeout idle,
// scanned every scan) and Reentrant (reentrancy on).
func counterConfig(idle, scan string) string {
	return fmt.Sprintf(`{"entities":["Counter","Reentrant"],"actorIdleTimeout":%q,"actorScanInterval":%q,
"drainOngoingCallTimeout":"2s","drainRebalancedActors":true,
"entitiesConfig":[{"entities":["Reentrant"],"reentrancy":{"enabled":true,"maxStackDepth":4}}]}`, idle, scan)
}

// node is a sidecar with its actor app.
type node struct {
	*mechatest.Sidecar
	app     *actorApp
	appPort int
}

// startNode runs a sidecar for app id appID whose app is app (nil: no
// app), with the cluster as placement and the given state store YAML.
func startNode(t testing.TB, c *actorstest.Cluster, appID string, app *actorApp, store string, tune func(*actors.Options)) *node {
	t.Helper()
	return startNodeWith(t, appID, app, store, func(o *runtime.Options) {
		if c != nil {
			o.ActorPlacement = c.Placement()
		}
		if tune != nil {
			prev := o.ActorTuning
			o.ActorTuning = func(ao *actors.Options) {
				prev(ao)
				tune(ao)
			}
		}
	})
}

// startNodeWith runs a sidecar with configure applied last.
func startNodeWith(t testing.TB, appID string, app *actorApp, store string, configure func(*runtime.Options)) *node {
	t.Helper()
	port := 0
	if app != nil {
		port = mechatest.HTTPApp(t, app)
	}
	var res []string
	if store != "" {
		res = append(res, store)
	}
	sc := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = appID
		o.AppPort = port
		o.ActorTuning = func(ao *actors.Options) {
			ao.NotFoundTimeout = 300 * time.Millisecond
			ao.ReadyTimeout = 5 * time.Second
		}
		if configure != nil {
			configure(o)
		}
	}, res...)
	if app != nil {
		app.sidecar.Store(sc.URL)
	}
	return &node{Sidecar: sc, app: app, appPort: port}
}

// waitHosting waits until the sidecar's actor runtime reports RUNNING with
// a table.
func waitHosting(t testing.TB, n *node) {
	t.Helper()
	mechatest.Eventually(t, 10*time.Second, func() error {
		var md struct {
			ActorRuntime struct {
				RuntimeStatus string `json:"runtimeStatus"`
				HostReady     bool   `json:"hostReady"`
			} `json:"actorRuntime"`
		}
		r := n.Do(t, http.MethodGet, "/v1.0/metadata", nil)
		r.JSON(t, &md)
		if md.ActorRuntime.RuntimeStatus != "RUNNING" || !md.ActorRuntime.HostReady {
			return fmt.Errorf("actor runtime %+v", md.ActorRuntime)
		}
		return nil
	})
}

// invoke calls an actor method through n and returns status and body.
func invoke(t testing.TB, n *node, typ, id, method, body string) *mechatest.Response {
	t.Helper()
	var b any
	if body != "" {
		b = body
	}
	return n.Do(t, http.MethodPost, "/v1.0/actors/"+typ+"/"+id+"/method/"+method, b)
}

func sqliteStore(_ testing.TB, path string) string {
	return mechatest.Component("statestore", "state.sqlite", "connectionString", path, "actorStateStore", "true")
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func atoi(t testing.TB, b []byte) int {
	t.Helper()
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		t.Fatalf("not a number: %q", b)
	}
	return n
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
