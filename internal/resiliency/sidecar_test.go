package resiliency_test

// These tests drive real sidecars (internal/mechatest) through the HTTP
// API, with apps and backends that fail on purpose, and count what
// reached them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/inmemory"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// resiliencyYAML wraps a spec (indented by two spaces) in a Resiliency
// resource.
func resiliencyYAML(name, spec string) string {
	return "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: " + name + "\nspec:\n" + spec
}

// counter is an app endpoint that counts its calls and answers each with
// what answer says for that call number (1, 2, ...).
type counter struct {
	mu     sync.Mutex
	calls  int
	bodies []string
	answer func(n int, w http.ResponseWriter, r *http.Request)
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.calls++
	n := c.calls
	c.bodies = append(c.bodies, string(b))
	c.mu.Unlock()
	c.answer(n, w, r)
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// failFirst answers status (with body "busy") to the first n calls, then
// 200 "ok".
func failFirst(n, status int) func(int, http.ResponseWriter, *http.Request) {
	return func(call int, w http.ResponseWriter, _ *http.Request) {
		if call <= n {
			w.WriteHeader(status)
			io.WriteString(w, "busy")
			return
		}
		io.WriteString(w, "ok")
	}
}

// callee starts app "b" with its sidecar, serving the given endpoints.
func callee(t *testing.T, endpoints map[string]http.Handler, resources ...string) *mechatest.Sidecar {
	t.Helper()
	mux := http.NewServeMux()
	for p, h := range endpoints {
		mux.Handle(p, h)
	}
	return mechatest.Start(t, mechatest.App("b", mechatest.HTTPApp(t, mux), ""), resources...)
}

// caller starts sidecar "a" (no app) with the given resources.
func caller(t *testing.T, configure func(*runtime.Options), resources ...string) *mechatest.Sidecar {
	t.Helper()
	return mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = "a"
		if configure != nil {
			configure(o)
		}
	}, resources...)
}

const appRetry = `  policies:
    retries:
      fiveTimes:
        policy: constant
        duration: 20ms
        maxRetries: 5
        matching:
          httpStatusCodes: "500-599"
  targets:
    apps:
      b:
        retry: fiveTimes
`

func TestInvokeRetriesAFlakyApp(t *testing.T) {
	flaky := &counter{answer: failFirst(3, http.StatusServiceUnavailable)}
	tooMany := &counter{answer: failFirst(100, http.StatusTooManyRequests)}
	down := &counter{answer: failFirst(100, http.StatusBadGateway)}
	callee(t, map[string]http.Handler{"/flaky": flaky, "/toomany": tooMany, "/down": down})
	a := caller(t, nil, resiliencyYAML("retries", appRetry))

	resp := a.Do(t, http.MethodPost, "/v1.0/invoke/b/method/flaky", "hello")
	if resp.Status != http.StatusOK || string(resp.Body) != "ok" {
		t.Fatalf("invoke = %d %q, want 200 ok", resp.Status, resp.Body)
	}
	if n := flaky.count(); n != 4 {
		t.Fatalf("the app saw %d calls, want 4 (3 failures and the success)", n)
	}
	for i, b := range flaky.bodies {
		if b != "hello" {
			t.Fatalf("call %d carried body %q, want the request's body again", i+1, b)
		}
	}

	// 429 is not in matching.httpStatusCodes: the app's answer is final.
	resp = a.Do(t, http.MethodGet, "/v1.0/invoke/b/method/toomany", nil)
	if resp.Status != http.StatusTooManyRequests || string(resp.Body) != "busy" || tooMany.count() != 1 {
		t.Fatalf("non-matching status: %d %q after %d calls, want the app's 429 after 1", resp.Status, resp.Body, tooMany.count())
	}

	// When the retries run out, the last answer of the app passes through.
	resp = a.Do(t, http.MethodGet, "/v1.0/invoke/b/method/down", nil)
	if resp.Status != http.StatusBadGateway || string(resp.Body) != "busy" || down.count() != 6 {
		t.Fatalf("exhausted retries: %d %q after %d calls, want the app's 502 after 6", resp.Status, resp.Body, down.count())
	}
}

func TestInvokeRetriesSelfInvocation(t *testing.T) {
	flaky := &counter{answer: failFirst(2, http.StatusInternalServerError)}
	mux := http.NewServeMux()
	mux.Handle("/flaky", flaky)
	policy := strings.Replace(appRetry, "      b:\n", "      self:\n", 1)
	s := mechatest.Start(t, mechatest.App("self", mechatest.HTTPApp(t, mux), ""), resiliencyYAML("retries", policy))
	resp := s.Do(t, http.MethodPut, "/v1.0/invoke/self/method/flaky", strings.Repeat("x", 10_000))
	if resp.Status != http.StatusOK || flaky.count() != 3 {
		t.Fatalf("invoke = %d after %d calls, want 200 after 3", resp.Status, flaky.count())
	}
	if got := flaky.bodies[2]; len(got) != 10_000 {
		t.Fatalf("the retried call carried %d bytes, want 10000", len(got))
	}
}

func TestInvokeWithoutPolicyDoesNotRetryAppErrors(t *testing.T) {
	flaky := &counter{answer: failFirst(1, http.StatusServiceUnavailable)}
	callee(t, map[string]http.Handler{"/flaky": flaky})
	a := caller(t, nil)
	resp := a.Do(t, http.MethodGet, "/v1.0/invoke/b/method/flaky", nil)
	if resp.Status != http.StatusServiceUnavailable || flaky.count() != 1 {
		t.Fatalf("invoke = %d after %d calls; by default an app's error is its answer, not retried", resp.Status, flaky.count())
	}
}

func TestInvokeTimeout(t *testing.T) {
	released := make(chan struct{})
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-released:
		case <-time.After(10 * time.Second): // the test fails rather than hangs
		}
	})
	callee(t, map[string]http.Handler{"/hang": hang})
	defer close(released)
	a := caller(t, nil, resiliencyYAML("timeouts", `  policies:
    timeouts:
      quick: 300ms
  targets:
    apps:
      b:
        timeout: quick
`))
	start := time.Now()
	resp := a.Do(t, http.MethodGet, "/v1.0/invoke/b/method/hang", nil)
	elapsed := time.Since(start)
	var e struct{ ErrorCode, Message string }
	resp.JSON(t, &e)
	if resp.Status != http.StatusInternalServerError || e.ErrorCode != "ERR_DIRECT_INVOKE" || e.Message != "failed to invoke, id: b, err: context deadline exceeded" {
		t.Fatalf("invoke = %d %s, want daprd's 500 ERR_DIRECT_INVOKE timeout", resp.Status, resp.Body)
	}
	if elapsed < 300*time.Millisecond || elapsed > 3*time.Second {
		t.Fatalf("the call took %v, want about 300ms", elapsed)
	}
}

const breakerPolicy = `  policies:
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 1s
        trip: consecutiveFailures > 2
  targets:
    apps:
      b:
        circuitBreaker: cb
`

func TestInvokeCircuitBreaker(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	app := &counter{answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "broken")
			return
		}
		io.WriteString(w, "fine")
	}}
	callee(t, map[string]http.Handler{"/cb": app})
	a := caller(t, nil, resiliencyYAML("breaker", breakerPolicy))
	invoke := func() *mechatest.Response { return a.Do(t, http.MethodGet, "/v1.0/invoke/b/method/cb", nil) }

	for i := 1; i <= 3; i++ {
		if resp := invoke(); resp.Status != http.StatusInternalServerError || string(resp.Body) != "broken" {
			t.Fatalf("call %d = %d %q, want the app's 500", i, resp.Status, resp.Body)
		}
	}
	// Three consecutive failures: the breaker is open, calls fail fast
	// without reaching the app.
	for i := range 3 {
		start := time.Now()
		resp := invoke()
		if resp.ErrorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(resp.Body), "circuit breaker is open") {
			t.Fatalf("call while open %d = %d %s, want ERR_DIRECT_INVOKE circuit breaker is open", i, resp.Status, resp.Body)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("a call refused by the open breaker took %v", d)
		}
	}
	if n := app.count(); n != 3 {
		t.Fatalf("the app saw %d calls, want 3: the open breaker let calls through", n)
	}
	failing.Store(false)
	// After timeout (1s) the breaker half-opens: one trial call reaches the
	// app; it succeeds, and the breaker closes.
	time.Sleep(1100 * time.Millisecond)
	if resp := invoke(); resp.Status != http.StatusOK || string(resp.Body) != "fine" {
		t.Fatalf("trial call = %d %q, want the app's 200", resp.Status, resp.Body)
	}
	for i := range 3 {
		if resp := invoke(); resp.Status != http.StatusOK {
			t.Fatalf("call %d after closing = %d %s", i, resp.Status, resp.Body)
		}
	}
	if n := app.count(); n != 7 {
		t.Fatalf("the app saw %d calls, want 7", n)
	}
}

func TestResiliencyMetrics(t *testing.T) {
	app := &counter{answer: failFirst(100, http.StatusInternalServerError)}
	callee(t, map[string]http.Handler{"/cb": app})
	a := caller(t, func(o *runtime.Options) { o.Metrics.Enabled = true }, resiliencyYAML("breaker", breakerPolicy))
	for range 4 {
		a.Do(t, http.MethodGet, "/v1.0/invoke/b/method/cb", nil)
	}
	resp, err := http.Get("http://" + a.RT.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`dapr_resiliency_loaded{app_id="a",name="breaker",namespace="default"} 1`,
		`dapr_resiliency_count{app_id="a",flow_direction="outbound",name="breaker",namespace="default",policy="circuitbreaker",status="closed",target="app_b"} 3`,
		`dapr_resiliency_count{app_id="a",flow_direction="outbound",name="breaker",namespace="default",policy="circuitbreaker",status="open",target="app_b"} 1`,
		`dapr_resiliency_activations_total{app_id="a",flow_direction="outbound",name="breaker",namespace="default",policy="circuitbreaker",status="open",target="app_b"} 1`,
		`dapr_resiliency_cb_state{app_id="a",flow_direction="outbound",name="breaker",namespace="default",policy="circuitbreaker",status="open",target="app_b"} 1`,
		`dapr_resiliency_cb_state{app_id="a",flow_direction="outbound",name="breaker",namespace="default",policy="circuitbreaker",status="closed",target="app_b"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "resiliency") {
				t.Log(l)
			}
		}
	}
}

// flakyStore is a state store that fails its next fail calls as if the
// backend could not be reached.
type flakyStore struct {
	state.Store
	fail  atomic.Int32
	calls atomic.Int32
}

var errReset = errors.New("read tcp 127.0.0.1:6379: connection reset by peer")

func (f *flakyStore) Set(ctx context.Context, req *state.SetRequest) error {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return errReset
	}
	return f.Store.Set(ctx, req)
}

func (f *flakyStore) Get(ctx context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return nil, errReset
	}
	return f.Store.Get(ctx, req)
}

func TestStateOutboundRetry(t *testing.T) {
	stores := map[string]*flakyStore{}
	var mu sync.Mutex
	s := mechatest.Start(t, func(o *runtime.Options) {
		o.Registries.State.Register("state.flaky", func(d components.Deps) state.Store {
			mu.Lock()
			defer mu.Unlock()
			fs := &flakyStore{Store: inmemory.New(d)}
			stores[fmt.Sprint(len(stores))] = fs
			return fs
		})
	},
		mechatest.Component("guarded", "state.flaky"),
		mechatest.Component("plain", "state.flaky"),
		resiliencyYAML("state", `  policies:
    retries:
      storeRetry:
        policy: constant
        duration: 10ms
        maxRetries: 4
  targets:
    components:
      guarded:
        outbound:
          retry: storeRetry
`))
	mu.Lock()
	all := []*flakyStore{stores["0"], stores["1"]}
	mu.Unlock()
	for _, fs := range all {
		fs.fail.Store(3)
	}
	save := func(store string) *mechatest.Response {
		return s.Do(t, http.MethodPost, "/v1.0/state/"+store, []map[string]any{{"key": "k", "value": "v"}})
	}
	// Which instance is which does not matter: both fail their next 3
	// calls; only the guarded store's calls are retried.
	if resp := save("guarded"); resp.Status != http.StatusNoContent {
		t.Fatalf("save to the guarded store = %d %s, want 204 after retries", resp.Status, resp.Body)
	}
	resp := save("plain")
	if resp.Status != http.StatusInternalServerError || resp.ErrorCode() != "ERR_STATE_SAVE" || !strings.Contains(string(resp.Body), "connection reset by peer") {
		t.Fatalf("save to the plain store = %d %s, want ERR_STATE_SAVE", resp.Status, resp.Body)
	}
	calls := []int32{all[0].calls.Load(), all[1].calls.Load()}
	if !(calls[0] == 4 && calls[1] == 1 || calls[0] == 1 && calls[1] == 4) {
		t.Fatalf("store calls = %v, want 4 (guarded: 3 failures and the success) and 1 (plain)", calls)
	}
	if resp := s.Do(t, http.MethodGet, "/v1.0/state/guarded/k", nil); resp.Status != http.StatusOK || string(resp.Body) != `"v"` {
		t.Fatalf("get = %d %q", resp.Status, resp.Body)
	}
	// Retries run out: the store's error is reported.
	for _, fs := range all {
		fs.fail.Store(100)
	}
	if resp := s.Do(t, http.MethodGet, "/v1.0/state/guarded/k", nil); resp.ErrorCode() != "ERR_STATE_GET" {
		t.Fatalf("get with the store down = %d %s, want ERR_STATE_GET", resp.Status, resp.Body)
	}
}

// TestStateOutboundRetryRedis cuts the connection to a real Redis with a
// TCP proxy for a while: a save made meanwhile succeeds once the backend is
// back, thanks to the outbound retry policy, while the same save through
// a store without a policy fails.
func TestStateOutboundRetryRedis(t *testing.T) {
	addr := mechatest.ServiceEnv(t, "REDIS_ADDR")
	proxy := mechatest.StartProxy(t, addr)
	key := fmt.Sprintf("resiliency-%d", time.Now().UnixNano())
	s := mechatest.Start(t, nil,
		// maxRetries -1: the Redis client does not retry on its own.
		mechatest.Component("guarded", "state.redis", "redisHost", proxy.Addr, "maxRetries", "-1", "dialTimeout", "200ms"),
		mechatest.Component("plain", "state.redis", "redisHost", proxy.Addr, "maxRetries", "-1", "dialTimeout", "200ms"),
		resiliencyYAML("redis", `  policies:
    retries:
      untilBack:
        policy: constant
        duration: 100ms
        maxRetries: 50
  targets:
    components:
      guarded:
        outbound:
          retry: untilBack
`))
	save := func(store, value string) *mechatest.Response {
		return s.Do(t, http.MethodPost, "/v1.0/state/"+store, []map[string]any{{"key": key, "value": value}})
	}
	if resp := save("guarded", "before"); resp.Status != http.StatusNoContent {
		t.Fatalf("save = %d %s", resp.Status, resp.Body)
	}
	proxy.SetDown(true)
	if resp := save("plain", "x"); resp.ErrorCode() != "ERR_STATE_SAVE" {
		t.Fatalf("save without a policy while Redis is unreachable = %d %s, want ERR_STATE_SAVE", resp.Status, resp.Body)
	}
	time.AfterFunc(700*time.Millisecond, func() { proxy.SetDown(false) })
	start := time.Now()
	resp := save("guarded", "after")
	if resp.Status != http.StatusNoContent {
		t.Fatalf("save with a retry policy = %d %s, want 204 once Redis is back", resp.Status, resp.Body)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("the save returned after %v, before the backend was back", d)
	}
	if resp := s.Do(t, http.MethodGet, "/v1.0/state/guarded/"+key, nil); string(resp.Body) != `"after"` {
		t.Fatalf("get = %d %q, want \"after\"", resp.Status, resp.Body)
	}
}

func TestPubsubInboundRetry(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "[]") })
	mux.HandleFunc("POST /{route}", func(w http.ResponseWriter, r *http.Request) {
		route := r.PathValue("route")
		mu.Lock()
		calls[route]++
		n := calls[route]
		mu.Unlock()
		switch {
		case route == "drop":
			io.WriteString(w, `{"status":"DROP"}`)
		case n <= 2 && route == "guarded":
			w.WriteHeader(http.StatusInternalServerError) // an error status
		case n <= 2:
			io.WriteString(w, `{"status":"RETRY"}`)
		default:
			io.WriteString(w, `{"status":"SUCCESS"}`)
		}
	})
	sub := func(name, pubsub, route string) string {
		return fmt.Sprintf("apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: %s\nspec:\n  pubsubname: %s\n  topic: orders\n  routes:\n    default: /%s\n", name, pubsub, route)
	}
	// backOffMaxRetries 0: the broker does not redeliver, so every retry
	// the app sees is the inbound policy's.
	s := mechatest.Start(t, mechatest.App("subscriber", mechatest.HTTPApp(t, mux), ""),
		mechatest.Component("guarded", "pubsub.in-memory", "backOffMaxRetries", "0"),
		mechatest.Component("guarded2", "pubsub.in-memory", "backOffMaxRetries", "0"),
		mechatest.Component("plain", "pubsub.in-memory", "backOffMaxRetries", "0"),
		sub("s1", "guarded", "guarded"), sub("s2", "guarded2", "drop"), sub("s3", "plain", "plain"),
		resiliencyYAML("pubsub", `  policies:
    retries:
      deliveries:
        policy: constant
        duration: 10ms
        maxRetries: 5
  targets:
    components:
      guarded:
        inbound:
          retry: deliveries
      guarded2:
        inbound:
          retry: deliveries
`))
	mechatest.Eventually(t, 10*time.Second, func() error {
		var m struct{ Subscriptions []any }
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
		if len(m.Subscriptions) != 3 {
			return fmt.Errorf("%d subscriptions", len(m.Subscriptions))
		}
		return nil
	})
	for _, ps := range []string{"guarded", "guarded2", "plain"} {
		if resp := s.Do(t, http.MethodPost, "/v1.0/publish/"+ps+"/orders", map[string]string{"id": "1"}); resp.Status != http.StatusNoContent {
			t.Fatalf("publish to %s = %d %s", ps, resp.Status, resp.Body)
		}
	}
	mechatest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if calls["guarded"] != 3 || calls["drop"] != 1 || calls["plain"] != 1 {
			return fmt.Errorf("deliveries = %v", calls)
		}
		return nil
	})
	// Nothing more arrives: the guarded delivery succeeded on its third
	// attempt, DROP is final, and the plain one was not retried.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls["guarded"] != 3 || calls["drop"] != 1 || calls["plain"] != 1 {
		t.Fatalf("deliveries = %v, want guarded 3, drop 1, plain 1", calls)
	}
}

func TestInvalidResiliencyKeepsTheDefaults(t *testing.T) {
	flaky := &counter{answer: failFirst(1, http.StatusServiceUnavailable)}
	callee(t, map[string]http.Handler{"/flaky": flaky})
	bad := resiliencyYAML("broken", strings.Replace(appRetry, "maxRetries: 5", "maxRetries: five", 1))
	dangling := resiliencyYAML("dangling", `  targets:
    apps:
      c:
        retry: nowhere
`)
	a := caller(t, nil, bad, dangling)
	var m struct {
		ResourceErrors []struct{ File, Kind, Name, Error string } `json:"resourceErrors"`
	}
	a.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
	found := map[string]string{}
	for _, e := range m.ResourceErrors {
		if e.Kind == "Resiliency" {
			found[e.Name] = e.File + ": " + e.Error
		}
	}
	if e := found["broken"]; !strings.HasSuffix(strings.SplitN(e, ":", 2)[0], "r00.yaml") ||
		!strings.Contains(e, `spec.policies.retries.fiveTimes.maxRetries (line 11): "five" is not an integer`) {
		t.Errorf("resource error of the invalid resource = %q", e)
	}
	if e := found["dangling"]; !strings.Contains(e, "r01.yaml") || !strings.Contains(e, `spec.targets.apps.c.retry: no retry policy named "nowhere"`) {
		t.Errorf("resource error of the dangling reference = %q", e)
	}
	// The invalid resource is not applied: the app's error is not retried.
	resp := a.Do(t, http.MethodGet, "/v1.0/invoke/b/method/flaky", nil)
	if resp.Status != http.StatusServiceUnavailable || flaky.count() != 1 {
		t.Fatalf("invoke = %d after %d calls, want the app's 503 after 1", resp.Status, flaky.count())
	}
}
