package actors_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/placement"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// tableVersion reads the placement table version a sidecar reports.
func tableVersion(t *testing.T, n *node) uint64 {
	t.Helper()
	var md struct {
		ActorRuntime struct {
			Version uint64 `json:"placementTableVersion"`
		} `json:"actorRuntime"`
	}
	n.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
	return md.ActorRuntime.Version
}

// TestWithPlacementService runs sidecars against the real placement
// service (standalone) through the placement client: single activation
// across hosts, calls from a sidecar hosting nothing, the table version
// advancing on every member when a host joins, and a reminder that keeps
// firing on the new owner after its host is killed.
func TestWithPlacementService(t *testing.T) {
	ps := placement.New(placement.Options{
		Address: "127.0.0.1:0", HeartbeatTimeout: 2 * time.Second, BatchInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err := ps.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ps.Stop(ctx)
	})
	withPlacement := func(o *runtime.Options) { o.PlacementAddresses = []string{ps.Addr()} }
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))

	a := startNodeWith(t, "placed", newActorApp(t, "a", counterConfig("1h", "1h")), store, withPlacement)
	b := startNodeWith(t, "placed", newActorApp(t, "b", counterConfig("1h", "1h")), store, withPlacement)
	caller := startNodeWith(t, "placed-caller", nil, "", withPlacement)
	for _, n := range []*node{a, b, caller} {
		waitHosting(t, n)
	}
	// Both hosts are in the table everyone has.
	mechatest.Eventually(t, 10*time.Second, func() error {
		hosts := map[string]bool{}
		for i := range 40 {
			r := invoke(t, caller, "Counter", fmt.Sprint("w", i), "whoami", "")
			if r.Status != http.StatusOK {
				return fmt.Errorf("%d %s", r.Status, r.Body)
			}
			hosts[string(r.Body)] = true
		}
		if !hosts["a"] || !hosts["b"] {
			return fmt.Errorf("actors served by %v only", hosts)
		}
		return nil
	})

	const callers = 60
	var wg sync.WaitGroup
	vias := []*node{a, b, caller}
	for i := range callers {
		wg.Go(func() {
			if r := invoke(t, vias[i%3], "Counter", "shared", "incr", ""); r.Status != http.StatusOK {
				t.Errorf("call %d: %d %s", i, r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	r := invoke(t, caller, "Counter", "shared", "incr", "")
	if r.Status != http.StatusOK || atoi(t, r.Body) != callers+1 {
		t.Fatalf("counter after %d concurrent increments and one more: %d %s", callers, r.Status, r.Body)
	}
	if o := a.app.overlap.Load() + b.app.overlap.Load(); o != 0 {
		t.Fatalf("%d overlapping calls", o)
	}

	// A host joins: every member ends on the same, newer table version.
	v0 := tableVersion(t, a)
	d := startNodeWith(t, "placed", newActorApp(t, "d", counterConfig("1h", "1h")), store, withPlacement)
	waitHosting(t, d)
	mechatest.Eventually(t, 10*time.Second, func() error {
		vs := []uint64{tableVersion(t, a), tableVersion(t, b), tableVersion(t, caller), tableVersion(t, d)}
		for _, v := range vs {
			if v <= v0 || v != vs[0] {
				return fmt.Errorf("table versions %v, want all equal and above %d", vs, v0)
			}
		}
		return nil
	})

	// A reminder on an actor a owns keeps firing after a is killed.
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprint("k", i)
		if r := invoke(t, a, "Counter", id, "whoami", ""); string(r.Body) == "a" {
			break
		}
		if i > 200 {
			t.Fatal("no actor on a")
		}
	}
	if r := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/"+id+"/reminders/beat", `{"dueTime":"0s","period":"200ms"}`); r.Status != http.StatusNoContent {
		t.Fatalf("create reminder: %d %s", r.Status, r.Body)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("remind", "Counter", id, "beat"); n < 2 {
			return fmt.Errorf("%d firings on a", n)
		}
		return nil
	})
	http.DefaultClient.CloseIdleConnections()
	if err := a.RT.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	mechatest.Eventually(t, 15*time.Second, func() error {
		if n := b.app.count("remind", "Counter", id, "beat") + d.app.count("remind", "Counter", id, "beat"); n < 3 {
			return fmt.Errorf("%d firings on the remaining hosts", n)
		}
		return nil
	})
	// Calls to a's former actors continue on the remaining hosts.
	if r := invoke(t, caller, "Counter", id, "whoami", ""); r.Status != http.StatusOK || (string(r.Body) != "b" && string(r.Body) != "d") {
		t.Fatalf("actor of the killed host: %d %s", r.Status, r.Body)
	}
}
