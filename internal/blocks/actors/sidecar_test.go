package actors_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/blocks/actors/actorstest"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// TestSingleActivation sends 100 concurrent increments of one counter
// actor, half through each of two sidecars hosting the type: every call
// runs on the same host, one at a time, and the counter ends at exactly
// 100.
func TestSingleActivation(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "counter", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	b := startNode(t, c, "counter", newActorApp(t, "b", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	waitHosting(t, b)

	const callers = 100
	var wg sync.WaitGroup
	results := make([]int, callers)
	errs := make(chan string, callers)
	for i := range callers {
		via := a
		if i%2 == 1 {
			via = b
		}
		wg.Go(func() {
			r := invoke(t, via, "Counter", "c1", "incr", "")
			if r.Status != http.StatusOK {
				errs <- fmt.Sprintf("call %d: %d %s", i, r.Status, r.Body)
				return
			}
			results[i] = atoi(t, r.Body)
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	seen := map[int]bool{}
	for _, n := range results {
		seen[n] = true
	}
	for n := 1; n <= callers; n++ {
		if !seen[n] {
			t.Errorf("no call saw counter value %d: the calls did not run one at a time", n)
		}
	}
	if o := a.app.overlap.Load() + b.app.overlap.Load(); o != 0 {
		t.Errorf("%d calls overlapped another call of the same actor", o)
	}
	ca, cb := a.app.count("method", "Counter", "c1", "incr"), b.app.count("method", "Counter", "c1", "incr")
	if !(ca == callers && cb == 0) && !(cb == callers && ca == 0) {
		t.Errorf("calls ran on app a %d times and on app b %d times; want all %d on one host", ca, cb, callers)
	}
}

// TestForwarding checks that each actor id is served by its owner, whichever
// sidecar is called, including a sidecar whose app hosts no actors.
func TestForwarding(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "fwd", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	b := startNode(t, c, "fwd", newActorApp(t, "b", counterConfig("1h", "1h")), store, nil)
	client := startNode(t, c, "caller", nil, "", nil)
	waitHosting(t, a)
	waitHosting(t, b)
	waitHosting(t, client)

	names := map[string]string{a.InternalAddr: "a", b.InternalAddr: "b"}
	hosts := map[string]int{}
	for i := range 20 {
		id := fmt.Sprintf("id-%d", i)
		want := names[c.Owner("Counter", id)]
		for _, via := range []*node{a, b, client} {
			r := invoke(t, via, "Counter", id, "whoami", "")
			if r.Status != http.StatusOK || string(r.Body) != want {
				t.Fatalf("%s via %s: %d %q, want 200 %q", id, via.InternalAddr, r.Status, r.Body, want)
			}
			if got := r.Header.Get("X-Actor-Host"); got != want {
				t.Errorf("the app's response header X-Actor-Host = %q, want %q", got, want)
			}
			if ct := r.Header.Get("Content-Type"); ct != "text/plain" {
				t.Errorf("Content-Type = %q, want the app's text/plain", ct)
			}
		}
		hosts[want]++
	}
	if hosts["a"] == 0 || hosts["b"] == 0 {
		t.Fatalf("20 ids all on one host (%v): placement does not spread actors", hosts)
	}
	// The app's failures reach the caller as ERR_ACTOR_INVOKE_METHOD, from
	// the owner or through a forward; actor errors pass through.
	for _, via := range []*node{a, b} {
		r := invoke(t, via, "Counter", "id-1", "fail", "")
		if r.Status != http.StatusInternalServerError || r.ErrorCode() != "ERR_ACTOR_INVOKE_METHOD" || !strings.Contains(string(r.Body), "boom") {
			t.Errorf("failing method: %d %s", r.Status, r.Body)
		}
		r = invoke(t, via, "Counter", "id-1", "actorerror", "")
		if r.Status != http.StatusOK || string(r.Body) != `{"error":"domain"}` || r.Header.Get("X-Daprerrorresponseheader") == "" {
			t.Errorf("actor error: %d %s %v", r.Status, r.Body, r.Header)
		}
	}
}

// TestRebalance adds a host: the actors that move are deactivated on the
// old host (the app is told) and served by the new one afterwards.
func TestRebalance(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "rebal", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	const n = 30
	for i := range n {
		if r := invoke(t, a, "Counter", fmt.Sprint(i), "incr", ""); r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	v := c.Version()
	b := startNode(t, c, "rebal", newActorApp(t, "b", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, b)
	if c.Version() <= v {
		t.Fatalf("table version %d did not advance past %d when a host joined", c.Version(), v)
	}
	// The app hears of the deactivations right after the table update.
	mechatest.Eventually(t, 5*time.Second, func() error {
		for i := range n {
			id := fmt.Sprint(i)
			onB := c.Owner("Counter", id) == b.InternalAddr
			if deact := a.app.count("deactivate", "Counter", id, ""); onB != (deact == 1) {
				return fmt.Errorf("actor %s: owner now b=%v, deactivated on a %d times", id, onB, deact)
			}
		}
		return nil
	})
	moved := 0
	for i := range n {
		id := fmt.Sprint(i)
		if c.Owner("Counter", id) == b.InternalAddr {
			moved++
			r := invoke(t, a, "Counter", id, "whoami", "")
			if string(r.Body) != "b" {
				t.Errorf("actor %s after the move: %d %q, want it served by b", id, r.Status, r.Body)
			}
		}
	}
	if moved == 0 {
		t.Fatal("no actor moved to the new host")
	}
	// Both sidecars report the new table version.
	for _, s := range []*node{a, b} {
		var md struct {
			ActorRuntime struct {
				Version uint64 `json:"placementTableVersion"`
			} `json:"actorRuntime"`
		}
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
		if md.ActorRuntime.Version != c.Version() {
			t.Errorf("metadata table version %d, want %d", md.ActorRuntime.Version, c.Version())
		}
	}
}

// TestStaleTable gives one sidecar a stale table: it forwards calls to a
// host that no longer owns the actor, which refuses them ("remote actor
// moved"); the caller retries and succeeds once its table catches up,
// instead of failing.
func TestStaleTable(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "stale", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	b := startNode(t, c, "stale", newActorApp(t, "b", counterConfig("1h", "1h")), store, nil)
	caller := startNode(t, c, "caller", nil, "", nil)
	waitHosting(t, a)
	waitHosting(t, b)
	waitHosting(t, caller)
	c.Freeze(caller.InternalAddr)
	d := startNode(t, c, "stale", newActorApp(t, "d", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, d)
	// An id that moved to d from a host that stays.
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprint("s", i)
		if c.Owner("Counter", id) == d.InternalAddr {
			break
		}
	}
	done := make(chan *mechatest.Response, 1)
	start := time.Now()
	go func() { done <- invoke(t, caller, "Counter", id, "whoami", "") }()
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("the call with a stale table finished before the table was refreshed: %d %s", r.Status, r.Body)
	default:
	}
	c.Thaw(caller.InternalAddr)
	r := <-done
	if r.Status != http.StatusOK || string(r.Body) != "d" {
		t.Fatalf("after the table caught up: %d %s, want 200 from d", r.Status, r.Body)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the call took %v", time.Since(start))
	}
	if n := a.app.count("method", "Counter", id, "") + b.app.count("method", "Counter", id, ""); n != 0 {
		t.Fatalf("the hosts that no longer own the actor ran it %d times", n)
	}
}

// TestStateAcrossDeactivation writes actor state from within a method,
// lets the actor go idle and be deactivated, and reads the state back
// through the API and from a new activation.
func TestStateAcrossDeactivation(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "statey", newActorApp(t, "a", counterConfig("300ms", "50ms")), store, nil)
	waitHosting(t, a)
	if r := invoke(t, a, "Counter", "s1", "save", `{"n":42}`); r.Status != http.StatusOK {
		t.Fatalf("save: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if a.app.count("deactivate", "Counter", "s1", "") == 0 {
			return fmt.Errorf("actor not deactivated")
		}
		return nil
	})
	r := a.Do(t, http.MethodGet, "/v1.0/actors/Counter/s1/state/value", nil)
	if r.Status != http.StatusOK || string(r.Body) != `{"n":42}` {
		t.Fatalf("GET state after deactivation: %d %q", r.Status, r.Body)
	}
	if r := a.Do(t, http.MethodGet, "/v1.0/actors/Counter/s1/state/missing", nil); r.Status != http.StatusNoContent {
		t.Fatalf("missing key: %d %q, want 204", r.Status, r.Body)
	}
	if r := invoke(t, a, "Counter", "s1", "load", ""); r.Status != http.StatusOK || string(r.Body) != `{"n":42}` {
		t.Fatalf("load in a new activation: %d %q", r.Status, r.Body)
	}
	// Another actor id does not see it.
	if r := a.Do(t, http.MethodGet, "/v1.0/actors/Counter/s2/state/value", nil); r.Status != http.StatusNoContent {
		t.Fatalf("other actor id: %d %q, want 204", r.Status, r.Body)
	}
}

// TestTimers registers timers through the API: a repeating one fires until
// deleted; one whose actor goes idle stops with the deactivation.
func TestTimers(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "timers", newActorApp(t, "a", counterConfig("400ms", "50ms")), store, nil)
	waitHosting(t, a)

	body := `{"dueTime":"0s","period":"100ms","callback":"tick","data":{"x":1}}`
	if r := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/t1/timers/fast", body); r.Status != http.StatusNoContent {
		t.Fatalf("create timer: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("timer", "Counter", "t1", "fast"); n < 3 {
			return fmt.Errorf("%d firings", n)
		}
		return nil
	})
	ev := a.app.matching("timer", "t1", "fast")[0]
	var cb struct {
		Data     map[string]int `json:"data"`
		Callback string         `json:"callback"`
		DueTime  string         `json:"dueTime"`
		Period   string         `json:"period"`
	}
	if err := jsonUnmarshal(ev.Body, &cb); err != nil || cb.Data["x"] != 1 || cb.Callback != "tick" || cb.Period != "100ms" || cb.DueTime != "0s" {
		t.Fatalf("timer callback body %s (%v)", ev.Body, err)
	}
	if r := a.Do(t, http.MethodDelete, "/v1.0/actors/Counter/t1/timers/fast", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete timer: %d %s", r.Status, r.Body)
	}
	time.Sleep(150 * time.Millisecond)
	n := a.app.count("timer", "Counter", "t1", "fast")
	time.Sleep(400 * time.Millisecond)
	if m := a.app.count("timer", "Counter", "t1", "fast"); m != n {
		t.Fatalf("timer fired %d more times after it was deleted", m-n)
	}

	// A timer whose period is longer than the idle timeout: it fires once,
	// the actor goes idle and is deactivated, and the timer dies with it.
	body = `{"dueTime":"0s","period":"1500ms"}`
	if r := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/t2/timers/slow", body); r.Status != http.StatusNoContent {
		t.Fatalf("create timer: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if a.app.count("deactivate", "Counter", "t2", "") == 0 {
			return fmt.Errorf("not deactivated")
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	if n := a.app.count("timer", "Counter", "t2", "slow"); n != 1 {
		t.Fatalf("timer of a deactivated actor fired %d times, want 1 (before the deactivation)", n)
	}
}

// TestReminderRepetitions registers R3/PT0.2S: exactly three firings, a
// fifth of a second apart, then the reminder is gone.
func TestReminderRepetitions(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "rem", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	body := `{"dueTime":"0s","period":"R3/PT0.2S","data":"hello"}`
	if r := a.Do(t, http.MethodPut, "/v1.0/actors/Counter/r1/reminders/rep", body); r.Status != http.StatusNoContent {
		t.Fatalf("create reminder: %d %s", r.Status, r.Body)
	}
	r := a.Do(t, http.MethodGet, "/v1.0/actors/Counter/r1/reminders/rep", nil)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"period":"R3/PT0.2S"`) || !strings.Contains(string(r.Body), `"data":"hello"`) {
		t.Fatalf("GET reminder: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("remind", "Counter", "r1", "rep"); n != 3 {
			return fmt.Errorf("%d firings", n)
		}
		return nil
	})
	time.Sleep(600 * time.Millisecond)
	evs := a.app.matching("remind", "r1", "rep")
	if len(evs) != 3 {
		t.Fatalf("%d firings, want exactly 3", len(evs))
	}
	for i := 1; i < len(evs); i++ {
		if gap := evs[i].At.Sub(evs[i-1].At); gap < 150*time.Millisecond || gap > 600*time.Millisecond {
			t.Errorf("firings %d and %d are %v apart, want about 200ms", i-1, i, gap)
		}
	}
	var cb struct {
		Data    string `json:"data"`
		DueTime string `json:"dueTime"`
		Period  string `json:"period"`
	}
	if err := jsonUnmarshal(evs[0].Body, &cb); err != nil || cb.Data != "hello" || cb.Period != "R3/PT0.2S" || cb.DueTime != "0s" {
		t.Fatalf("reminder callback body %s (%v)", evs[0].Body, err)
	}
	if r := a.Do(t, http.MethodGet, "/v1.0/actors/Counter/r1/reminders/rep", nil); r.Status != http.StatusNotFound || r.ErrorCode() != "ERR_ACTOR_REMINDER_NOT_FOUND" {
		t.Fatalf("GET a finished reminder: %d %s, want 404 ERR_ACTOR_REMINDER_NOT_FOUND", r.Status, r.Body)
	}
}

// TestReminderCancel: the app answers the second firing with
// X-DaprReminderCancel: true, which ends the reminder.
func TestReminderCancel(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "cancel", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	if r := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/r2/reminders/cancel-me", `{"dueTime":"50ms","period":"100ms"}`); r.Status != http.StatusNoContent {
		t.Fatalf("create reminder: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("remind", "Counter", "r2", "cancel-me"); n < 2 {
			return fmt.Errorf("%d firings", n)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	if n := a.app.count("remind", "Counter", "r2", "cancel-me"); n != 2 {
		t.Fatalf("%d firings, want 2 (cancelled by the second answer)", n)
	}
	if r := a.Do(t, http.MethodGet, "/v1.0/actors/Counter/r2/reminders/cancel-me", nil); r.Status != http.StatusNotFound {
		t.Fatalf("GET a cancelled reminder: %d %s, want 404", r.Status, r.Body)
	}
}

// TestReminderSurvivesRestart registers a reminder, stops the sidecar
// before it fires, and starts a new sidecar of the app on the same store:
// the reminder fires there.
func TestReminderSurvivesRestart(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	app1 := newActorApp(t, "first", counterConfig("1h", "1h"))
	a := startNode(t, c, "restart", app1, store, nil)
	waitHosting(t, a)
	if r := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/r3/reminders/later", `{"dueTime":"1s","period":"200ms","data":{"k":"v"}}`); r.Status != http.StatusNoContent {
		t.Fatalf("create reminder: %d %s", r.Status, r.Body)
	}
	if err := a.RT.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := app1.count("remind", "", "", ""); n != 0 {
		t.Fatalf("fired %d times before the restart; the test needs it to fire after", n)
	}
	app2 := newActorApp(t, "second", counterConfig("1h", "1h"))
	b := startNode(t, c, "restart", app2, store, nil)
	waitHosting(t, b)
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := app2.count("remind", "Counter", "r3", "later"); n < 2 {
			return fmt.Errorf("%d firings after the restart", n)
		}
		return nil
	})
	if !strings.Contains(string(app2.matching("remind", "r3", "later")[0].Body), `"data":{"k":"v"}`) {
		t.Fatalf("callback body %s", app2.matching("remind", "r3", "later")[0].Body)
	}
	if r := b.Do(t, http.MethodDelete, "/v1.0/actors/Counter/r3/reminders/later", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	time.Sleep(300 * time.Millisecond)
	n := app2.count("remind", "Counter", "r3", "later")
	time.Sleep(500 * time.Millisecond)
	if m := app2.count("remind", "Counter", "r3", "later"); m != n {
		t.Fatalf("fired %d times after it was deleted", m-n)
	}
}

// TestReminderMovesWithItsActor kills the host of an actor with a
// reminder: the host that owns the actor next fires it, and the reminder
// fires on one host only, never on both.
func TestReminderMovesWithItsActor(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "moves", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	b := startNode(t, c, "moves", newActorApp(t, "b", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	waitHosting(t, b)
	var id string
	for i := 0; ; i++ {
		if id = fmt.Sprint("m", i); c.Owner("Counter", id) == a.InternalAddr {
			break
		}
	}
	// Registered through b, the host that does not own the actor.
	if r := b.Do(t, http.MethodPost, "/v1.0/actors/Counter/"+id+"/reminders/beat", `{"dueTime":"0s","period":"150ms"}`); r.Status != http.StatusNoContent {
		t.Fatalf("create reminder: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("remind", "Counter", id, "beat"); n < 2 {
			return fmt.Errorf("%d firings on the owner", n)
		}
		return nil
	})
	if n := b.app.count("remind", "", "", ""); n != 0 {
		t.Fatalf("the reminder fired %d times on the host that does not own its actor", n)
	}
	c.Remove(a.InternalAddr)
	if err := a.RT.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	stopped := a.app.count("remind", "Counter", id, "beat")
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := b.app.count("remind", "Counter", id, "beat"); n < 3 {
			return fmt.Errorf("%d firings on the new owner", n)
		}
		return nil
	})
	if n := a.app.count("remind", "Counter", id, "beat"); n != stopped {
		t.Fatalf("the old host fired %d more times after it stopped", n-stopped)
	}
	// Firings on the new owner are one period apart: no double firing.
	evs := b.app.matching("remind", id, "beat")
	for i := 1; i < len(evs); i++ {
		if gap := evs[i].At.Sub(evs[i-1].At); gap < 100*time.Millisecond {
			t.Errorf("firings %v apart on the new owner, want one per 150ms period", gap)
		}
	}
}

// TestReentrancy: a reentrant type lets a call re-enter its own actor
// through the sidecar with the chain's Dapr-Reentrancy-Id; a non-reentrant
// type makes the nested call wait for the turn (the app's nested call
// times out).
func TestReentrancy(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "reent", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	r := invoke(t, a, "Reentrant", "x", "reenter", "")
	if r.Status != http.StatusOK || string(r.Body) != "outer(echo:true)" {
		t.Fatalf("reentrant call: %d %q", r.Status, r.Body)
	}
	// maxStackDepth 4: the outer call and three nested ones fit, a fourth
	// nested one does not.
	if r := invoke(t, a, "Reentrant", "y", "deep", "3"); r.Status != http.StatusOK || string(r.Body) != "bottom" {
		t.Fatalf("3 nested calls: %d %s", r.Status, r.Body)
	}
	if r := invoke(t, a, "Reentrant", "y", "deep", "4"); r.Status != http.StatusInternalServerError || !strings.Contains(string(r.Body), "ERR_ACTOR_STACK_DEPTH") {
		t.Fatalf("4 nested calls: %d %s, want the innermost refused with ERR_ACTOR_STACK_DEPTH", r.Status, r.Body)
	}
	r = invoke(t, a, "Counter", "x", "reenter", "")
	if r.Status != http.StatusInternalServerError || !strings.Contains(string(r.Body), "nested call") {
		t.Fatalf("non-reentrant nested call: %d %q, want the nested call to fail waiting for the turn", r.Status, r.Body)
	}
}

// TestActorBadInput checks Dapr's error codes for requests the runtime
// refuses.
func TestActorBadInput(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "bad", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	invoke(t, a, "Counter", "b1", "incr", "") // activate b1
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown type", "POST", "/v1.0/actors/Nope/1/method/m", "", 500, "ERR_ACTOR_INVOKE_METHOD"},
		{"unknown method", "POST", "/v1.0/actors/Counter/b1/method/nope", "", 500, "ERR_ACTOR_INVOKE_METHOD"},
		{"state tx bad JSON", "POST", "/v1.0/actors/Counter/b1/state", "{not json", 400, "ERR_MALFORMED_REQUEST"},
		{"state tx bad operation", "POST", "/v1.0/actors/Counter/b1/state", `[{"operation":"merge","request":{"key":"k"}}]`, 500, "ERR_ACTOR_STATE_TRANSACTION_SAVE"},
		{"state tx inactive actor", "POST", "/v1.0/actors/Counter/never/state", `[{"operation":"upsert","request":{"key":"k","value":1}}]`, 400, "ERR_ACTOR_INSTANCE_MISSING"},
		{"state key with ||", "GET", "/v1.0/actors/Counter/b1/state/a||b", "", 400, "ERR_MALFORMED_REQUEST"},
		{"reminder bad JSON", "POST", "/v1.0/actors/Counter/b1/reminders/r", "[", 400, "ERR_MALFORMED_REQUEST"},
		{"reminder bad period", "POST", "/v1.0/actors/Counter/b1/reminders/r", `{"period":"every minute"}`, 500, "ERR_ACTOR_REMINDER_CREATE"},
		{"reminder zero repetitions", "POST", "/v1.0/actors/Counter/b1/reminders/r", `{"period":"R0/PT1S"}`, 500, "ERR_ACTOR_REMINDER_CREATE"},
		{"reminder bad due time", "POST", "/v1.0/actors/Counter/b1/reminders/r", `{"dueTime":"soon"}`, 500, "ERR_ACTOR_REMINDER_CREATE"},
		{"reminder expired ttl", "POST", "/v1.0/actors/Counter/b1/reminders/r", `{"dueTime":"1s","ttl":"2000-01-01T00:00:00Z"}`, 500, "ERR_ACTOR_REMINDER_CREATE"},
		{"reminder of a type not hosted", "POST", "/v1.0/actors/Nope/b1/reminders/r", `{"period":"1s"}`, 403, "ERR_ACTOR_REMINDER_NON_HOSTED"},
		{"missing reminder", "GET", "/v1.0/actors/Counter/b1/reminders/none", "", 404, "ERR_ACTOR_REMINDER_NOT_FOUND"},
		{"timer bad period", "POST", "/v1.0/actors/Counter/b1/timers/t", `{"period":"PT"}`, 500, "ERR_ACTOR_TIMER_CREATE"},
		{"timer negative period", "POST", "/v1.0/actors/Counter/b1/timers/t", `{"period":"-1s"}`, 500, "ERR_ACTOR_TIMER_CREATE"},
		{"timer of a type not hosted", "POST", "/v1.0/actors/Nope/b1/timers/t", `{"period":"1s"}`, 500, "ERR_ACTOR_TIMER_CREATE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := a.Do(t, tc.method, tc.path, body)
			if r.Status != tc.status || r.ErrorCode() != tc.code {
				t.Fatalf("%s %s: %d %s, want %d %s", tc.method, tc.path, r.Status, r.Body, tc.status, tc.code)
			}
		})
	}
}

// TestActorsDisabled: without a placement, the actor API answers daprd's
// ERR_ACTOR_NO_PLACEMENT and the metadata API reports DISABLED; without an
// actor state store, state and reminders answer ERR_ACTOR_RUNTIME_NOT_FOUND.
func TestActorsDisabled(t *testing.T) {
	off := startNode(t, nil, "off", newActorApp(t, "off", counterConfig("1h", "1h")), "", nil)
	r := invoke(t, off, "Counter", "1", "incr", "")
	if r.Status != http.StatusBadRequest || r.ErrorCode() != "ERR_ACTOR_NO_PLACEMENT" {
		t.Fatalf("no placement: %d %s", r.Status, r.Body)
	}
	var md struct {
		ActorRuntime struct {
			RuntimeStatus string `json:"runtimeStatus"`
			Placement     string `json:"placement"`
		} `json:"actorRuntime"`
	}
	off.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
	if md.ActorRuntime.RuntimeStatus != "DISABLED" || md.ActorRuntime.Placement != "placement: disconnected" {
		t.Fatalf("metadata %+v", md.ActorRuntime)
	}

	c := actorstest.NewCluster()
	nostore := startNode(t, c, "nostore", newActorApp(t, "n", counterConfig("1h", "1h")), "", nil)
	waitHosting(t, nostore)
	if r := nostore.Do(t, "GET", "/v1.0/actors/Counter/1/state/k", nil); r.Status != http.StatusInternalServerError || r.ErrorCode() != "ERR_ACTOR_RUNTIME_NOT_FOUND" {
		t.Errorf("actor state without an actor state store: %d %s", r.Status, r.Body)
	}
	// Without a store the sidecar hosts no type, so reminders are refused
	// as for any type it does not host.
	if r := nostore.Do(t, "POST", "/v1.0/actors/Counter/1/reminders/r", `{"period":"1s"}`); r.Status != http.StatusForbidden || r.ErrorCode() != "ERR_ACTOR_REMINDER_NON_HOSTED" {
		t.Errorf("reminder without an actor state store: %d %s", r.Status, r.Body)
	}
	// The app's types are not hosted without a store, so calls find no
	// host.
	if r := invoke(t, nostore, "Counter", "1", "incr", ""); r.ErrorCode() != "ERR_ACTOR_INVOKE_METHOD" {
		t.Errorf("call with no host for the type: %d %s", r.Status, r.Body)
	}
}

// TestActorMetadata checks the actorRuntime section of the metadata API.
func TestActorMetadata(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "meta", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	for i := range 3 {
		invoke(t, a, "Counter", fmt.Sprint(i), "incr", "")
	}
	invoke(t, a, "Reentrant", "r", "echo", "")
	var md struct {
		Actors       []actors.TypeCount `json:"actors"`
		ActorRuntime struct {
			RuntimeStatus string `json:"runtimeStatus"`
			ActiveActors  []struct {
				Type  string `json:"type"`
				Count int    `json:"count"`
			} `json:"activeActors"`
			HostReady bool   `json:"hostReady"`
			Placement string `json:"placement"`
			Version   uint64 `json:"placementTableVersion"`
		} `json:"actorRuntime"`
	}
	a.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
	ar := md.ActorRuntime
	if ar.RuntimeStatus != "RUNNING" || !ar.HostReady || ar.Placement != "placement: connected" || ar.Version != c.Version() {
		t.Fatalf("actorRuntime %+v (cluster version %d)", ar, c.Version())
	}
	got := fmt.Sprint(ar.ActiveActors)
	if got != "[{Counter 3} {Reentrant 1}]" {
		t.Fatalf("activeActors %s", got)
	}
	if len(md.Actors) != 2 {
		t.Fatalf("deprecated actors field %+v", md.Actors)
	}
}

// TestRebalanceDrains starts a slow call, then adds a host that takes the
// actor over: the call in flight finishes on the old host (drained, not
// cut), the old host deactivates the actor only after it, and the next
// call runs on the new host.
func TestRebalanceDrains(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "drain", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	// Find an id the next host will take: try hosts until one does. The
	// cluster picks owners by address, so start the second host first and
	// pick among ids it takes, but before that make a the only host.
	b := newActorApp(t, "b", counterConfig("1h", "1h"))
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprint("d", i)
	}
	done := make(chan *mechatest.Response, len(ids))
	for _, id := range ids {
		go func() { done <- invoke(t, a, "Counter", id, "slow", "") }()
	}
	time.Sleep(100 * time.Millisecond) // the slow calls are running on a
	bn := startNode(t, c, "drain", b, store, nil)
	waitHosting(t, bn)
	for range ids {
		if r := <-done; r.Status != http.StatusOK || string(r.Body) != "slow done" {
			t.Fatalf("a call in flight during the rebalance: %d %s", r.Status, r.Body)
		}
	}
	moved := 0
	for _, id := range ids {
		if c.Owner("Counter", id) != bn.InternalAddr {
			continue
		}
		moved++
		mechatest.Eventually(t, 5*time.Second, func() error {
			if len(a.app.matching("deactivate", id, "")) == 0 {
				return fmt.Errorf("actor %s not deactivated on the old host", id)
			}
			return nil
		})
		calls, deacts := a.app.matching("method", id, "slow"), a.app.matching("deactivate", id, "")
		if len(calls) != 1 || len(deacts) != 1 {
			t.Fatalf("actor %s: %d calls and %d deactivations on the old host", id, len(calls), len(deacts))
		}
		if deacts[0].At.Sub(calls[0].At) < 250*time.Millisecond {
			t.Errorf("actor %s deactivated %v after its 300ms call started: not drained", id, deacts[0].At.Sub(calls[0].At))
		}
		if r := invoke(t, a, "Counter", id, "whoami", ""); string(r.Body) != "b" {
			t.Errorf("actor %s after the move: %d %s", id, r.Status, r.Body)
		}
	}
	if moved == 0 {
		t.Fatal("no actor moved")
	}
}

// TestReminderIndexUnderConcurrency registers reminders from two hosts at
// once (their index partitions shared), stops both before any fires, and
// starts a fresh host: it must find every reminder through the index, so
// no concurrent index update was lost.
func TestReminderIndexUnderConcurrency(t *testing.T) {
	for _, sc := range mechatest.StateStores() {
		if sc.Name == "in-memory" {
			continue // not shared between sidecars
		}
		t.Run(sc.Name, func(t *testing.T) {
			store := sc.YAML(t, "statestore", "actorStateStore", "true")
			c := actorstest.NewCluster()
			// An app id of this run only: Redis and PostgreSQL keep what
			// earlier runs left, and their reminders would fire here.
			appID := fmt.Sprintf("idx%d", time.Now().UnixNano())
			a := startNode(t, c, appID, newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
			b := startNode(t, c, appID, newActorApp(t, "b", counterConfig("1h", "1h")), store, nil)
			waitHosting(t, a)
			waitHosting(t, b)
			const n = 60
			due := time.Now().Add(4 * time.Second).UTC().Format(time.RFC3339Nano)
			var wg sync.WaitGroup
			errs := make(chan string, n)
			for i := range n {
				via := a
				if i%2 == 1 {
					via = b
				}
				wg.Go(func() {
					body := fmt.Sprintf(`{"dueTime":%q,"data":%d}`, due, i)
					r := via.Do(t, http.MethodPost, fmt.Sprintf("/v1.0/actors/Counter/i%d/reminders/once", i), body)
					if r.Status != http.StatusNoContent {
						errs <- fmt.Sprintf("%d: %d %s", i, r.Status, r.Body)
					}
				})
			}
			created := time.Now()
			wg.Wait()
			t.Logf("%d reminders registered in %v", n, time.Since(created))
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
			// Connections the client dialled but never used keep the
			// sidecar's HTTP server from shutting down for 5 s.
			http.DefaultClient.CloseIdleConnections()
			a.RT.Close(t.Context())
			b.RT.Close(t.Context())
			if k := a.app.count("remind", "", "", "") + b.app.count("remind", "", "", ""); k != 0 {
				t.Fatalf("%d fired before the restart", k)
			}
			fresh := newActorApp(t, "fresh", counterConfig("1h", "1h"))
			f := startNode(t, c, appID, fresh, store, nil)
			waitHosting(t, f)
			mechatest.Eventually(t, 15*time.Second, func() error {
				if k := fresh.count("remind", "Counter", "", "once"); k < n {
					return fmt.Errorf("%d of %d reminders fired", k, n)
				}
				return nil
			})
			seen := map[string]bool{}
			for _, e := range fresh.matching("remind", "", "once") {
				if seen[e.ID] {
					t.Errorf("reminder of %s fired twice", e.ID)
				}
				seen[e.ID] = true
			}
		})
	}
}

// TestShutdownGrace: a sidecar whose app is slow to confirm deactivations
// (3 s each) still stops within its graceful shutdown period (1 s): the
// app is told of as many as fit, a few at a time, and the rest are
// dropped with the process rather than holding the shutdown.
func TestShutdownGrace(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNodeWith(t, "grace", newActorApp(t, "a", counterConfig("1h", "1h")), store, func(o *runtime.Options) {
		o.ActorPlacement = c.Placement()
		o.GracefulShutdown = time.Second
	})
	waitHosting(t, a)
	const n = 100
	for i := range n {
		if r := invoke(t, a, "Counter", fmt.Sprintf("slowdeact-%d", i), "incr", ""); r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	start := time.Now()
	if err := a.RT.Close(context.Background()); err != nil {
		t.Logf("close: %v", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("shutdown took %v with a 1s grace period", d)
	}
	told := a.app.count("deactivate", "Counter", "", "")
	if told == 0 || told > 2*16 {
		t.Fatalf("the app was told of %d deactivations, want some (at most two rounds of 16 in the grace period)", told)
	}
	t.Logf("told of %d of %d deactivations in the grace period", told, n)
}
