package actors_test

// Resiliency policies of actor calls (targets.actors), through the HTTP
// API of real sidecars: the pre-lock policy (retries, circuit breakers)
// at the sidecar the call enters, the post-lock timeout at the sidecar
// that owns the actor.

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/blocks/actors/actorstest"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics/metricstest"
)

// flakyActors is an actor app hosting Flaky, Slow and Breaker. Methods:
// "flaky" fails (500 "boom") the first failures calls of each actor id,
// then answers "ok"; "fail" always fails unless healthy is set; "hang"
// answers after 5 s (or when the call is abandoned); "ok" answers "ok";
// "domain" answers an actor error. Timer and reminder callbacks named
// "hang" hang like "hang" and record how long the sidecar waited before
// abandoning them; other callbacks answer at once. Anything else is 404.
type flakyActors struct {
	failures int
	healthy  atomic.Bool

	mu        sync.Mutex
	calls     map[string]int // "type/id/method" → calls received
	abandoned []time.Duration
}

func (f *flakyActors) count(typ, id, method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[typ+"/"+id+"/"+method]
}

func (f *flakyActors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/dapr/config" {
		io.WriteString(w, `{"entities":["Flaky","Slow","Breaker"],"actorIdleTimeout":"1h","actorScanInterval":"1h"}`)
		return
	}
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/actors/"), "/", 4)
	if len(parts) != 4 || parts[2] != "method" {
		return // health checks, deactivations
	}
	typ, id, method := parts[0], parts[1], parts[3]
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	key := typ + "/" + id + "/" + method
	f.calls[key]++
	n := f.calls[key]
	f.mu.Unlock()
	switch method {
	case "flaky":
		if n <= f.failures {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "ok after %d", n)
	case "fail":
		if !f.healthy.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	case "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "late")
	case "timer/hang", "remind/hang":
		start := time.Now()
		// Read to the end, so that the server notices the sidecar
		// hanging up and cancels the request's context.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			f.mu.Lock()
			f.abandoned = append(f.abandoned, time.Since(start))
			f.mu.Unlock()
		case <-time.After(5 * time.Second):
		}
	case "ok":
		io.WriteString(w, "ok")
	case "domain":
		w.Header().Set("X-DaprErrorResponseHeader", "true")
		io.WriteString(w, `{"error":"domain"}`)
	default:
		if !strings.HasPrefix(method, "timer/") && !strings.HasPrefix(method, "remind/") {
			http.NotFound(w, r)
		}
	}
}

// actorPolicies: Flaky is retried 3 times and times out after 300ms; Slow
// only times out; Breaker has a breaker per actor id that opens after 3
// consecutive failures and half-opens after 1 s.
const actorPolicies = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: actors
spec:
  policies:
    timeouts:
      short: 300ms
    retries:
      three:
        policy: constant
        duration: 20ms
        maxRetries: 3
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 1s
        trip: consecutiveFailures > 2
  targets:
    actors:
      Flaky:
        timeout: short
        retry: three
      Slow:
        timeout: short
      Breaker:
        circuitBreaker: cb
        circuitBreakerScope: id
`

// startActorHost runs a sidecar for app with the given resources (and
// metrics on), placed by c.
func startActorHost(t *testing.T, c *actorstest.Cluster, appID string, app http.Handler, res ...string) *node {
	t.Helper()
	port := 0
	if app != nil {
		port = mechatest.HTTPApp(t, app)
	}
	sc := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = appID
		o.AppPort = port
		o.ActorPlacement = c.Placement()
		o.Metrics.Enabled = true
		o.ActorTuning = func(ao *actors.Options) {
			ao.NotFoundTimeout = 300 * time.Millisecond
			ao.ReadyTimeout = 5 * time.Second
		}
	}, res...)
	n := &node{Sidecar: sc, appPort: port}
	waitHosting(t, n)
	return n
}

func scrape(t *testing.T, n *node) string {
	t.Helper()
	resp, err := http.Get("http://" + n.RT.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestActorRetryAndTimeout: a method that fails 3 times is retried to
// success; one that keeps failing is tried 4 times and its last failure
// returned; a method the app does not know is not retried; a hanging
// method is cut at the post-lock timeout with daprd's error, and the
// actor's turn is free again right after.
func TestActorRetryAndTimeout(t *testing.T) {
	c := actorstest.NewCluster()
	app := &flakyActors{failures: 3}
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	n := startActorHost(t, c, "flaky", app, store, actorPolicies)

	r := invoke(t, n, "Flaky", "a", "flaky", "")
	if r.Status != http.StatusOK || string(r.Body) != "ok after 4" {
		t.Fatalf("flaky method = %d %s, want 200 after 3 retries", r.Status, r.Body)
	}
	if got := app.count("Flaky", "a", "flaky"); got != 4 {
		t.Fatalf("the app saw %d calls, want 4", got)
	}

	r = invoke(t, n, "Flaky", "a", "fail", "")
	if r.Status != http.StatusInternalServerError || r.ErrorCode() != "ERR_ACTOR_INVOKE_METHOD" || !strings.Contains(string(r.Body), "boom") {
		t.Fatalf("failing method = %d %s, want 500 ERR_ACTOR_INVOKE_METHOD with the app's error", r.Status, r.Body)
	}
	if got := app.count("Flaky", "a", "fail"); got != 4 {
		t.Fatalf("a failing method reached the app %d times, want 4 (the call and 3 retries)", got)
	}

	// An actor error is a failure too (as in daprd): retried, and the last
	// answer passes through as the app gave it.
	r = invoke(t, n, "Flaky", "a", "domain", "")
	if r.Status != http.StatusOK || string(r.Body) != `{"error":"domain"}` || r.Header.Get("X-Daprerrorresponseheader") == "" {
		t.Fatalf("actor error = %d %s %v", r.Status, r.Body, r.Header)
	}
	if got := app.count("Flaky", "a", "domain"); got != 4 {
		t.Fatalf("an actor error reached the app %d times, want 4", got)
	}

	r = invoke(t, n, "Flaky", "a", "nosuchmethod", "")
	if r.Status != http.StatusInternalServerError || !strings.Contains(string(r.Body), "actor method not found") {
		t.Fatalf("unknown method = %d %s", r.Status, r.Body)
	}
	if got := app.count("Flaky", "a", "nosuchmethod"); got != 1 {
		t.Fatalf("an unknown method was tried %d times, want 1", got)
	}

	start := time.Now()
	r = invoke(t, n, "Slow", "s", "hang", "")
	elapsed := time.Since(start)
	if r.Status != http.StatusInternalServerError || r.ErrorCode() != "ERR_ACTOR_INVOKE_METHOD" ||
		!strings.Contains(string(r.Body), "error invoke actor method: context deadline exceeded") {
		t.Fatalf("hanging method = %d %s, want daprd's 500 ERR_ACTOR_INVOKE_METHOD context deadline exceeded", r.Status, r.Body)
	}
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("the hanging call took %v, want about the 300ms timeout", elapsed)
	}
	start = time.Now()
	if r := invoke(t, n, "Slow", "s", "ok", ""); r.Status != http.StatusOK || time.Since(start) > time.Second {
		t.Fatalf("call after the timeout = %d %s in %v: the turn was not released", r.Status, r.Body, time.Since(start))
	}

	// The Flaky timeout applies to each retry: 4 attempts of 300ms.
	start = time.Now()
	r = invoke(t, n, "Flaky", "b", "hang", "")
	if elapsed := time.Since(start); r.Status != http.StatusInternalServerError || elapsed < 1200*time.Millisecond || app.count("Flaky", "b", "hang") != 4 {
		t.Fatalf("hanging flaky method = %d %s after %v and %d calls, want 4 timed-out attempts", r.Status, r.Body, elapsed, app.count("Flaky", "b", "hang"))
	}

	text := scrape(t, n)
	for _, want := range []string{
		`dapr_resiliency_count{app_id="flaky",flow_direction="outbound",name="actors",namespace="default",policy="retry",status="",target="actor_Flaky"}`,
		`dapr_resiliency_activations_total{app_id="flaky",flow_direction="outbound",name="actors",namespace="default",policy="retry",status="",target="actor_Flaky"}`,
		`dapr_resiliency_activations_total{app_id="flaky",flow_direction="outbound",name="actors",namespace="default",policy="timeout",status="",target="actor_Slow"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "dapr_resiliency") {
				t.Log(l)
			}
		}
	}
}

// TestActorPoliciesAcrossSidecars: a sidecar that hosts nothing forwards
// calls to the owner; its pre-lock retry policy covers the forward, and
// the owner's post-lock timeout bounds the call to the app.
func TestActorPoliciesAcrossSidecars(t *testing.T) {
	c := actorstest.NewCluster()
	app := &flakyActors{failures: 2}
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	owner := startActorHost(t, c, "owner", app, store, actorPolicies)
	caller := startActorHost(t, c, "caller", nil, `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: caller
spec:
  policies:
    retries:
      retryFlaky:
        policy: constant
        duration: 20ms
        maxRetries: 5
  targets:
    actors:
      Flaky:
        retry: retryFlaky
`)
	if c.Owner("Flaky", "x") != owner.InternalAddr {
		t.Fatalf("the actor is not placed on the only host")
	}
	r := invoke(t, caller, "Flaky", "x", "flaky", "")
	if r.Status != http.StatusOK || string(r.Body) != "ok after 3" {
		t.Fatalf("forwarded flaky method = %d %s, want 200 after 2 retries", r.Status, r.Body)
	}
	if got := app.count("Flaky", "x", "flaky"); got != 3 {
		t.Fatalf("the app saw %d calls, want 3", got)
	}
	// The owner times the app out; the caller retries that 5 times.
	start := time.Now()
	r = invoke(t, caller, "Slow", "y", "hang", "")
	if r.Status != http.StatusInternalServerError || !strings.Contains(string(r.Body), "context deadline exceeded") {
		t.Fatalf("forwarded hanging method = %d %s", r.Status, r.Body)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second || app.count("Slow", "y", "hang") != 1 {
		t.Fatalf("forwarded hanging call took %v and reached the app %d times, want one 300ms attempt (the caller has no policy for Slow)", d, app.count("Slow", "y", "hang"))
	}
}

// TestActorCircuitBreaker: with scope id, 3 consecutive failures of one
// actor open its breaker: calls fail fast without reaching the app while
// another id is unaffected; after the breaker's timeout one trial call
// goes through, succeeds and closes it.
func TestActorCircuitBreaker(t *testing.T) {
	c := actorstest.NewCluster()
	app := &flakyActors{}
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	n := startActorHost(t, c, "breaker", app, store, actorPolicies)

	for i := 1; i <= 3; i++ {
		if r := invoke(t, n, "Breaker", "x", "fail", ""); r.Status != http.StatusInternalServerError || !strings.Contains(string(r.Body), "boom") {
			t.Fatalf("call %d = %d %s, want the app's failure", i, r.Status, r.Body)
		}
	}
	for i := range 3 {
		start := time.Now()
		r := invoke(t, n, "Breaker", "x", "fail", "")
		if r.ErrorCode() != "ERR_ACTOR_INVOKE_METHOD" || !strings.Contains(string(r.Body), "circuit breaker is open") {
			t.Fatalf("call while open %d = %d %s, want ERR_ACTOR_INVOKE_METHOD circuit breaker is open", i, r.Status, r.Body)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("a call refused by the open breaker took %v", d)
		}
	}
	if got := app.count("Breaker", "x", "fail"); got != 3 {
		t.Fatalf("the app saw %d calls, want 3: the open breaker let calls through", got)
	}
	open := scrape(t, n)
	if r := invoke(t, n, "Breaker", "other", "ok", ""); r.Status != http.StatusOK {
		t.Fatalf("another actor id = %d %s: the breaker is per id", r.Status, r.Body)
	}

	app.healthy.Store(true)
	time.Sleep(1100 * time.Millisecond)
	if r := invoke(t, n, "Breaker", "x", "fail", ""); r.Status != http.StatusOK || string(r.Body) != "ok" {
		t.Fatalf("trial call = %d %s, want the app's 200", r.Status, r.Body)
	}
	for i := range 3 {
		if r := invoke(t, n, "Breaker", "x", "fail", ""); r.Status != http.StatusOK {
			t.Fatalf("call %d after closing = %d %s", i, r.Status, r.Body)
		}
	}
	if got := app.count("Breaker", "x", "fail"); got != 7 {
		t.Fatalf("the app saw %d calls, want 7", got)
	}

	const l = `{app_id="breaker",flow_direction="outbound",name="actors",namespace="default",policy="circuitbreaker",status="%s",target="actor_Breaker"}`
	for _, want := range []string{
		fmt.Sprintf("dapr_resiliency_activations_total"+l+" 1", "open"),
		fmt.Sprintf("dapr_resiliency_cb_state"+l+" 1", "open"),
	} {
		if !strings.Contains(open, want) {
			t.Errorf("metrics while open lack %s", want)
		}
	}
	closed := scrape(t, n)
	for _, want := range []string{
		fmt.Sprintf("dapr_resiliency_activations_total"+l+" 1", "half-open"),
		fmt.Sprintf("dapr_resiliency_activations_total"+l+" 1", "closed"),
		fmt.Sprintf("dapr_resiliency_cb_state"+l+" 1", "closed"),
	} {
		if !strings.Contains(closed, want) {
			t.Errorf("metrics after closing lack %s", want)
		}
	}
	if t.Failed() {
		for _, line := range strings.Split(closed, "\n") {
			if strings.Contains(line, "dapr_resiliency") {
				t.Log(line)
			}
		}
	}
}

// TestActorTimerAndReminderTimeout: the post-lock timeout of an actor type
// also bounds its timer and reminder callbacks: a callback that hangs is
// abandoned at the 300ms timeout, the actor's turn is free again right
// after, and the firing counts as failed (dapr_runtime_actor_*_fired_total
// with success "false").
func TestActorTimerAndReminderTimeout(t *testing.T) {
	c := actorstest.NewCluster()
	app := &flakyActors{}
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	n := startActorHost(t, c, "slowtimers", app, store, actorPolicies)

	for _, p := range []string{"/v1.0/actors/Slow/tm/timers/hang", "/v1.0/actors/Slow/rm/reminders/hang"} {
		if r := n.Do(t, http.MethodPost, p, `{"dueTime":"0s","period":"1h"}`); r.Status != http.StatusNoContent {
			t.Fatalf("POST %s: %d %s", p, r.Status, r.Body)
		}
	}
	var waited []time.Duration
	mechatest.Eventually(t, 5*time.Second, func() error {
		app.mu.Lock()
		waited = slices.Clone(app.abandoned)
		app.mu.Unlock()
		if len(waited) < 2 {
			return fmt.Errorf("%d callbacks abandoned, want the timer's and the reminder's", len(waited))
		}
		return nil
	})
	for _, d := range waited {
		if d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("a hanging callback was abandoned after %v, want about the 300ms timeout", d)
		}
	}
	for _, id := range []string{"tm", "rm"} {
		start := time.Now()
		if r := invoke(t, n, "Slow", id, "ok", ""); r.Status != http.StatusOK || time.Since(start) > time.Second {
			t.Fatalf("call after a timed-out callback = %d %s in %v: the turn was not released", r.Status, r.Body, time.Since(start))
		}
	}
	metricstest.Wait(t, n.RT.MetricsAddr(), 5*time.Second, []metricstest.Expect{
		{Name: "dapr_runtime_actor_timers_fired_total", Labels: labels("app_id", "slowtimers", "actor_type", "Slow", "success", "false"), Want: 1},
		{Name: "dapr_runtime_actor_reminders_fired_total", Labels: labels("app_id", "slowtimers", "actor_type", "Slow", "success", "false"), Want: 1},
	})
}
