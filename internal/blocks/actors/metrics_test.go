package actors_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/blocks/actors/actorstest"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics/metricstest"
)

// TestActorMetrics drives actors through the HTTP API and scrapes daprd's
// dapr_runtime_actor_* series: activations, calls waiting for their turn,
// timers and reminders (gauges by type), firings by outcome, placement
// table operations, and, when a second host joins, the actors rebalanced
// away and their deactivations, confirmed or failed, each counted exactly.
func TestActorMetrics(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	withMetrics := func(o *runtime.Options) {
		o.ActorPlacement = c.Placement()
		o.Metrics = runtime.MetricsOptions{Enabled: true, ListenAddresses: []string{"127.0.0.1"}}
	}
	a := startNodeWith(t, "mx", newActorApp(t, "a", counterConfig("1h", "1h")), store, withMetrics)
	waitHosting(t, a)
	addr := a.RT.MetricsAddr()
	typ := func(kv ...string) map[string]string {
		return labels(append([]string{"app_id", "mx", "actor_type", "Counter"}, kv...)...)
	}

	// Activations: 20 plain actors and 10 whose deactivation the app fails
	// (of which about half move when a host joins, below).
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprint(i))
	}
	for i := range 10 {
		ids = append(ids, fmt.Sprintf("faildeact-%d", i))
	}
	for _, id := range ids {
		if r := invoke(t, a, "Counter", id, "incr", ""); r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", id, r.Status, r.Body)
		}
	}
	metricstest.Wait(t, addr, 5*time.Second, []metricstest.Expect{
		{Name: "dapr_runtime_actor_activated_total", Labels: typ(), Want: 30},
	})

	// Two calls wait while another holds the actor's turn.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { invoke(t, a, "Counter", "p", "hold", "") })
	mechatest.Eventually(t, 5*time.Second, func() error {
		if a.app.count("method", "Counter", "p", "hold") == 0 {
			return fmt.Errorf("the holding call has not reached the app")
		}
		return nil
	})
	for range 2 {
		wg.Go(func() { invoke(t, a, "Counter", "p", "incr", "") })
	}
	metricstest.Wait(t, addr, time.Second, []metricstest.Expect{
		{Name: "dapr_runtime_actor_pending_actor_calls", Labels: typ(), Want: 2},
	})
	wg.Wait()

	// Timers, one the app fails, and a reminder: gauges while they exist,
	// firings by outcome.
	for name, body := range map[string]string{"tick": `{"dueTime":"0s","period":"50ms"}`, "failtick": `{"dueTime":"0s","period":"50ms"}`} {
		if r := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/t1/timers/"+name, body); r.Status != http.StatusNoContent {
			t.Fatalf("create timer %s: %d %s", name, r.Status, r.Body)
		}
	}
	if r := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/r1/reminders/rem", `{"dueTime":"0s","period":"50ms"}`); r.Status != http.StatusNoContent {
		t.Fatalf("create reminder: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		for _, name := range []string{"tick", "failtick"} {
			if n := a.app.count("timer", "Counter", "t1", name); n < 2 {
				return fmt.Errorf("timer %s fired %d times", name, n)
			}
		}
		if n := a.app.count("remind", "Counter", "r1", "rem"); n < 2 {
			return fmt.Errorf("reminder fired %d times", n)
		}
		return nil
	})
	f := metricstest.Scrape(t, addr)
	f.Check(t, []metricstest.Expect{
		{Name: "dapr_runtime_actor_timers", Labels: typ(), Want: 2},
		{Name: "dapr_runtime_actor_reminders", Labels: typ(), Want: 1},
		{Name: "dapr_runtime_actor_pending_actor_calls", Labels: typ(), Want: 0},
	})
	for _, m := range []struct {
		name    string
		success string
	}{{"dapr_runtime_actor_timers_fired_total", "true"}, {"dapr_runtime_actor_timers_fired_total", "false"}, {"dapr_runtime_actor_reminders_fired_total", "true"}} {
		if v, ok := f.Value(m.name, typ("success", m.success)); !ok || v < 2 {
			t.Errorf("%s{success=%s} = %v, want 2 or more; series %s", m.name, m.success, v, f.Series(m.name))
		}
	}
	for _, p := range []string{"timers/tick", "timers/failtick", "reminders/rem"} {
		id := "t1"
		if p == "reminders/rem" {
			id = "r1"
		}
		if r := a.Do(t, http.MethodDelete, "/v1.0/actors/Counter/"+id+"/"+p, nil); r.Status != http.StatusNoContent {
			t.Fatalf("delete %s: %d %s", p, r.Status, r.Body)
		}
	}
	metricstest.Wait(t, addr, 5*time.Second, []metricstest.Expect{
		{Name: "dapr_runtime_actor_timers", Labels: typ(), Want: 0},
		{Name: "dapr_runtime_actor_reminders", Labels: typ(), Want: 0},
		// 30 + p, t1 and r1.
		{Name: "dapr_runtime_actor_activated_total", Labels: typ(), Want: 33},
	})

	// A second host joins: the actors it now owns are rebalanced away from
	// a, and the app is told of each deactivation.
	before := metricstest.Scrape(t, addr)
	updates, _ := before.Value("dapr_runtime_actor_table_operation_recv_total", labels("app_id", "mx", "actor_type", "", "operation", "update"))
	b := startNodeWith(t, "mx", newActorApp(t, "b", counterConfig("1h", "1h")), store, withMetrics)
	waitHosting(t, b)
	moved, movedFailing := 0, 0
	for _, id := range append(ids, "p", "t1", "r1") {
		if c.Owner("Counter", id) == b.InternalAddr {
			moved++
			if id[0] == 'f' {
				movedFailing++
			}
		}
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("deactivate", "Counter", "", ""); n != moved {
			return fmt.Errorf("the app heard of %d deactivations, want %d", n, moved)
		}
		return nil
	})
	t.Logf("%d of 33 actors moved, %d of them failing their deactivation", moved, movedFailing)
	want := []metricstest.Expect{
		{Name: "dapr_runtime_actor_rebalanced_total", Labels: typ(), Want: float64(moved)},
		{Name: "dapr_runtime_actor_deactivated_total", Labels: typ(), Want: float64(moved - movedFailing)},
	}
	if movedFailing > 0 {
		want = append(want, metricstest.Expect{Name: "dapr_runtime_actor_deactivated_failed_total", Labels: typ("reason", "status_code_500"), Want: float64(movedFailing)})
	}
	// One more placement round: the join.
	want = append(want, metricstest.Expect{Name: "dapr_runtime_actor_table_operation_recv_total", Labels: labels("app_id", "mx", "actor_type", "", "operation", "update"), Want: updates + 1})
	after := metricstest.Wait(t, addr, 5*time.Second, want)
	for _, op := range []string{"lock", "unlock"} {
		if v, ok := after.Value("dapr_runtime_actor_table_operation_recv_total", labels("app_id", "mx", "actor_type", "", "operation", op)); !ok || v < 2 {
			t.Errorf("table operation %s counted %v times, want one per round (2 or more)", op, v)
		}
	}
}

// labels is a label set from name, value pairs.
var labels = metricstest.Labels
