package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	"github.com/dapr/go-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The cluster tests run the actor app of internal/actorapp (Dapr Go SDK
// actors) as one process per sidecar, several sidecars sharing one actor
// type and one actor state store, plus a caller sidecar that hosts no
// actors, all driving the real mecha binary.

// clusterActorType is the type internal/actorapp hosts.
const clusterActorType = "ClusterCounter"

// clusterAppConfig is merged into the app's /dapr/config: short idle
// timeouts so deactivation happens within a test, and reentrancy.
const clusterAppConfig = `{"actorIdleTimeout":"1s","actorScanInterval":"200ms","drainOngoingCallTimeout":"2s","drainRebalancedActors":true,"reentrancy":{"enabled":true}}`

var (
	actorAppOnce sync.Once
	actorAppDir  string
	actorAppBin  string
	actorAppErr  error
)

// actorApp builds internal/actorapp once per test binary run, with the
// test module's go.mod (the package directory is the working directory
// under go test).
func actorApp(t testing.TB) string {
	t.Helper()
	actorAppOnce.Do(func() {
		if actorAppDir, actorAppErr = os.MkdirTemp("", "mecha-sdk-actorapp-"); actorAppErr != nil {
			return
		}
		bin := filepath.Join(actorAppDir, "actorapp")
		out, err := exec.Command("go", "build", "-o", bin, "./internal/actorapp").CombinedOutput()
		if err != nil {
			actorAppErr = fmt.Errorf("go build ./internal/actorapp: %v\n%s", err, out)
			return
		}
		actorAppBin = bin
	})
	if actorAppErr != nil {
		t.Fatal(actorAppErr)
	}
	return actorAppBin
}

// removeBuiltApps deletes what actorApp built; TestMain calls it.
func removeBuiltApps() {
	if actorAppDir != "" {
		_ = os.RemoveAll(actorAppDir)
	}
}

// ---------------------------------------------------------------------------
// The collector of the apps' reports.

// actorEvent is one report of an app: an activation, a deactivation, a
// timer or reminder firing, stamped with the time the collector got it.
type actorEvent struct {
	App  string `json:"app"`
	Kind string `json:"kind"`
	Type string `json:"type"`
	ID   string `json:"id"`
	Name string `json:"name"`
	At   time.Time
}

type collector struct {
	URL    string
	mu     sync.Mutex
	events []actorEvent
}

func newCollector(t testing.TB) *collector {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e actorEvent
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.At = time.Now()
		c.mu.Lock()
		c.events = append(c.events, e)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// find returns the events of kind for actor id ("" matches any).
func (c *collector) find(kind, id string) []actorEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []actorEvent
	for _, e := range c.events {
		if (kind == "" || e.Kind == kind) && (id == "" || e.ID == id) {
			out = append(out, e)
		}
	}
	return out
}

// apps returns the distinct apps among events, sorted.
func apps(events []actorEvent) []string {
	var out []string
	for _, e := range events {
		if !slices.Contains(out, e.App) {
			out = append(out, e.App)
		}
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------
// App processes and the cluster.

// appProc is one actorapp process.
type appProc struct {
	*child
	name string
	port int
}

// startActorApp runs the actor app for sidecar s and waits until it serves.
func startActorApp(t testing.TB, name string, port int, s *sidecar, collectorURL, config string) *appProc {
	t.Helper()
	a := &appProc{name: name, port: port}
	home := t.TempDir()
	var env []string
	for _, kv := range sidecarEnv(home) {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "DAPR_") && !strings.HasPrefix(k, "APP_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"APP_PORT="+strconv.Itoa(port),
		"DAPR_GRPC_PORT="+strconv.Itoa(s.GRPCPort),
		"DAPR_HTTP_PORT="+strconv.Itoa(s.HTTPPort),
		"ACTORAPP_NAME="+name,
		"ACTORAPP_COLLECTOR="+collectorURL,
		"ACTORAPP_CONFIG="+config,
	)
	cmd := exec.Command(actorApp(t))
	cmd.Dir = home
	cmd.Env = env
	c, err := startChild(cmd)
	if err != nil {
		t.Fatal(err)
	}
	a.child = c
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("actor app %s (pid %d) output:\n%s", a.name, a.cmd.Process.Pid, a.out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := pollClient.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/dapr/config")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), clusterActorType) {
				return a
			}
		}
		select {
		case <-a.exited:
			t.Fatalf("actor app %s exited:\n%s", name, a.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("actor app %s does not serve /dapr/config:\n%s", name, a.out.String())
		}
	}
}

// stop ends the app by its PID: SIGTERM, then SIGKILL.
func (a *appProc) stop() { a.terminate(5 * time.Second) }

// actorHost is a sidecar with its actor app.
type actorHost struct {
	Name string
	SC   *sidecar
	App  *appProc
	SDK  client.Client
}

// kill SIGKILLs the sidecar and then its app, as a crashed host.
func (h *actorHost) kill() {
	h.SC.kill()
	h.App.kill()
}

// actorCluster is N host sidecars of one app id (replicas), each with its
// app process, sharing one sqlite actor state store, and one caller
// sidecar without an app.
type actorCluster struct {
	appID     string
	placement string
	store     string
	col       *collector
	hosts     []*actorHost
	caller    *sidecar
	callerSDK client.Client
}

func newActorCluster(t *testing.T, placement string, hosts int) *actorCluster {
	t.Helper()
	c := &actorCluster{
		appID:     "actorapp-" + uniqueID(),
		placement: placement,
		col:       newCollector(t),
		store: componentYAML("actorstore", "state.sqlite", map[string]string{
			"connectionString": filepath.Join(t.TempDir(), "actors.db"),
			"actorStateStore":  "true",
			"busyTimeout":      "10s",
		}),
	}
	// A mecha binary built with -race (MECHA_BIN) reports data races on
	// its output and goes on: make them fail the test.
	t.Cleanup(func() {
		for _, s := range append(c.sidecarsAll(), c.caller) {
			if s != nil && strings.Contains(s.out.String(), "WARNING: DATA RACE") {
				t.Errorf("sidecar %s (pid %d) reported a data race:\n%s", s.AppID, s.cmd.Process.Pid, s.out.String())
			}
		}
	})
	for range hosts {
		c.addHost(t)
	}
	c.caller = startSidecar(t, sidecarConfig{
		AppID: "caller-" + uniqueID(),
		Args:  []string{"--placement-host-address", placement},
	})
	c.callerSDK = c.caller.sdkClient(t)
	c.settle(t)
	return c
}

// addHost starts one more sidecar and its app, stopped when t ends.
func (c *actorCluster) addHost(t testing.TB) *actorHost {
	t.Helper()
	name := fmt.Sprintf("app%d", len(c.hosts)+1)
	port := freePort(t)
	s := startSidecar(t, sidecarConfig{
		AppID:     c.appID,
		Args:      []string{"--app-port", strconv.Itoa(port), "--placement-host-address", c.placement},
		Resources: map[string]string{"actorstore.yaml": c.store},
	})
	h := &actorHost{Name: name, SC: s, App: startActorApp(t, name, port, s, c.col.URL, clusterAppConfig)}
	h.SDK = s.sdkClient(t)
	c.hosts = append(c.hosts, h)
	return h
}

// live returns the hosts whose sidecar runs.
func (c *actorCluster) live() []*actorHost {
	var out []*actorHost
	for _, h := range c.hosts {
		if h.SC.running() {
			out = append(out, h)
		}
	}
	return out
}

// sidecarsAll returns the hosts' sidecars, running or not.
func (c *actorCluster) sidecarsAll() []*sidecar {
	var out []*sidecar
	for _, h := range c.hosts {
		out = append(out, h.SC)
	}
	return out
}

// sidecars returns every running sidecar, the caller last.
func (c *actorCluster) sidecars() []*sidecar {
	var out []*sidecar
	for _, h := range c.live() {
		out = append(out, h.SC)
	}
	return append(out, c.caller)
}

// actorStatus is the actorRuntime section of GET /v1.0/metadata.
type actorStatus struct {
	Status       string `json:"runtimeStatus"`
	HostReady    bool   `json:"hostReady"`
	Placement    string `json:"placement"`
	TableVersion uint64 `json:"placementTableVersion"`
}

// actorRuntime reads s's actor runtime status without failing the test
// (the sidecar may be gone).
func actorRuntime(s *sidecar) (actorStatus, error) {
	resp, err := pollClient.Get(s.HTTPURL + "/v1.0/metadata")
	if err != nil {
		return actorStatus{}, err
	}
	defer resp.Body.Close()
	var md struct {
		ActorRuntime actorStatus `json:"actorRuntime"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		return actorStatus{}, err
	}
	return md.ActorRuntime, nil
}

// versions returns the table version of each running sidecar, or an
// error naming the first that is not connected and ready.
func (c *actorCluster) versions() ([]uint64, error) {
	var out []uint64
	for _, s := range c.sidecars() {
		st, err := actorRuntime(s)
		if err != nil {
			return nil, err
		}
		if st.Status != "RUNNING" || !st.HostReady || st.Placement != "placement: connected" {
			return nil, fmt.Errorf("%s: %+v", s.AppID, st)
		}
		out = append(out, st.TableVersion)
	}
	return out, nil
}

// settle waits until every live host owns some of 30 probe actors (so the
// tables name them all) and all sidecars applied the same table version.
func (c *actorCluster) settle(t testing.TB) {
	t.Helper()
	ctx := ctxT(t)
	probe := "probe-" + uniqueID()
	want := len(c.live())
	eventually(t, 40*time.Second, "the tables name every host", func() bool {
		seen := map[string]bool{}
		for i := range 30 {
			where, err := c.where(ctx, c.callerSDK, fmt.Sprintf("%s-%d", probe, i))
			if err != nil {
				return false
			}
			seen[where] = true
		}
		return len(seen) == want
	})
	eventually(t, 20*time.Second, "the same table version on every sidecar", func() bool {
		v, err := c.versions()
		if err != nil || len(v) == 0 || v[0] == 0 {
			return false
		}
		for _, x := range v {
			if x != v[0] {
				return false
			}
		}
		return true
	})
}

// ctxFor is a context that ends after d or with the test.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// invokeActor calls an actor method with a JSON argument (nil: none) and
// decodes the JSON answer into out (nil: ignored).
func invokeActor(ctx context.Context, c client.Client, id, method string, arg, out any) error {
	var data []byte
	if arg != nil {
		var err error
		if data, err = json.Marshal(arg); err != nil {
			return err
		}
	}
	resp, err := c.InvokeActor(ctx, &client.InvokeActorRequest{ActorType: clusterActorType, ActorID: id, Method: method, Data: data})
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Data, out); err != nil {
		return fmt.Errorf("%s answered %q: %w", method, resp.Data, err)
	}
	return nil
}

// where answers the app process the actor runs in.
func (c *actorCluster) where(ctx context.Context, cl client.Client, id string) (string, error) {
	var name string
	err := invokeActor(ctx, cl, id, "Where", nil, &name)
	return name, err
}

// host returns the host with the app name.
func (c *actorCluster) host(t testing.TB, name string) *actorHost {
	t.Helper()
	for _, h := range c.hosts {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s", name)
	return nil
}

// ---------------------------------------------------------------------------
// Tests.

// TestSDKActorCluster runs three host sidecars (three SDK app processes of
// one app id) and a caller sidecar on one placement service.
func TestSDKActorCluster(t *testing.T) {
	c := newActorCluster(t, startPlacement(t), 3)
	ctx := ctxFor(t, 2*time.Minute)
	clients := []client.Client{c.callerSDK}
	for _, h := range c.hosts {
		clients = append(clients, h.SDK)
	}

	// 100 concurrent increments of one actor, entering through all four
	// sidecars (three of them forward to the owner), end at exactly 100:
	// one activation, one call at a time, state through the SDK's state
	// manager in the shared store.
	t.Run("ConcurrentIncrements", func(t *testing.T) {
		id := "counter-" + uniqueID()
		const callers = 100
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		answers := make([]int, callers)
		for i := range callers {
			cl := clients[i%len(clients)]
			wg.Go(func() {
				if err := invokeActor(ctx, cl, id, "Incr", nil, &answers[i]); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("Incr: %v", err)
		}
		// One call at a time: the increments answered 1 … 100, each once.
		sort.Ints(answers)
		for i, n := range answers {
			if n != i+1 {
				t.Fatalf("the increments answered %v, want 1 … %d each once", answers, callers)
			}
		}
		for i, cl := range clients {
			var n int
			if err := invokeActor(ctx, cl, id, "Count", nil, &n); err != nil || n != callers {
				t.Fatalf("Count through sidecar %d: %d, %v; want %d", i, n, err, callers)
			}
		}
		owner, err := c.where(ctx, c.callerSDK, id)
		must(t, "Where", err)
		st, err := c.host(t, owner).SDK.GetActorState(ctx, &client.GetActorStateRequest{ActorType: clusterActorType, ActorID: id, KeyName: "count"})
		if err != nil || strings.TrimSpace(string(st.Data)) != strconv.Itoa(callers) {
			t.Fatalf("GetActorState on the owner's sidecar: %v %+v", err, st)
		}
		if got := apps(c.col.find("activate", id)); len(got) != 1 || got[0] != owner {
			t.Fatalf("activations of %s in %v, want only in its owner %s", id, got, owner)
		}
	})

	// Actor ids spread over the hosts: each activated in exactly one
	// process, the one that answers Where, and more than one process in
	// use.
	t.Run("Spread", func(t *testing.T) {
		prefix := "spread-" + uniqueID()
		owners := map[string]string{}
		perHost := map[string]int{}
		for i := range 30 {
			id := fmt.Sprintf("%s-%d", prefix, i)
			w, err := c.where(ctx, clients[i%len(clients)], id)
			must(t, "Where "+id, err)
			owners[id] = w
			perHost[w]++
		}
		for id, w := range owners {
			acts := c.col.find("activate", id)
			if len(acts) != 1 || acts[0].App != w {
				t.Fatalf("%s: activations %+v, want exactly one, in %s", id, acts, w)
			}
		}
		if len(perHost) < 2 {
			t.Fatalf("30 actors all live in %v", perHost)
		}
		t.Logf("30 actors over the hosts: %v", perHost)
	})

	// Actor state outlives the activation: after the idle deactivation
	// (actorIdleTimeout 1s), a new activation reads the count back from
	// the store.
	t.Run("StateAcrossDeactivation", func(t *testing.T) {
		id := "persist-" + uniqueID()
		for range 3 {
			must(t, "Incr", invokeActor(ctx, c.callerSDK, id, "Incr", nil, nil))
		}
		eventually(t, 10*time.Second, "the idle deactivation of "+id, func() bool { return len(c.col.find("deactivate", id)) == 1 })
		var n int
		must(t, "Count", invokeActor(ctx, c.callerSDK, id, "Count", nil, &n))
		if n != 3 {
			t.Fatalf("Count after the deactivation = %d, want 3", n)
		}
		if acts := c.col.find("activate", id); len(acts) != 2 {
			t.Fatalf("activations %+v, want 2 (before and after the deactivation)", acts)
		}
	})

	// An SDK timer (registered by the actor through its sidecar) fires
	// until its actor is deactivated and never after; the same timer on an
	// actor kept busy goes on firing.
	t.Run("TimerStopsOnDeactivation", func(t *testing.T) {
		idle, busy := "timer-idle-"+uniqueID(), "timer-busy-"+uniqueID()
		sched := map[string]string{"name": "tick", "dueTime": "0s", "period": "2s"}
		must(t, "StartTimer", invokeActor(ctx, c.callerSDK, idle, "StartTimer", sched, nil))
		must(t, "StartTimer", invokeActor(ctx, c.callerSDK, busy, "StartTimer", sched, nil))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				_ = invokeActor(ctx, c.callerSDK, busy, "Count", nil, nil)
			}
		})
		time.Sleep(5 * time.Second)
		close(stop)
		wg.Wait()
		deact := c.col.find("deactivate", idle)
		if len(deact) != 1 {
			t.Fatalf("deactivations of the idle actor: %+v, want 1", deact)
		}
		ticks := c.col.find("timer", idle)
		if len(ticks) != 1 || ticks[0].At.After(deact[0].At) {
			t.Fatalf("timer firings of the idle actor %+v (deactivated at %v), want one, before the deactivation", ticks, deact[0].At)
		}
		if n := len(c.col.find("timer", busy)); n < 3 {
			t.Fatalf("the busy actor's timer fired %d times in 5s, want 3 (period 2s)", n)
		}
		if d := c.col.find("deactivate", busy); len(d) != 0 {
			t.Fatalf("the busy actor was deactivated: %+v", d)
		}
	})

	// Reentrancy (enabled in the app's config): an actor calling itself
	// through the sidecar with the chain's Dapr-Reentrancy-Id, directly and
	// through an actor on another host, gets in; without the id the call
	// back waits for the turn its own chain holds and times out.
	t.Run("Reentrancy", func(t *testing.T) {
		a := "re-a-" + uniqueID()
		ownerA, err := c.where(ctx, c.callerSDK, a)
		must(t, "Where", err)
		var b, ownerB string
		for i := 0; ownerB == "" || ownerB == ownerA; i++ {
			if i == 50 {
				t.Fatal("no actor id lives outside " + ownerA)
			}
			b = fmt.Sprintf("re-b-%s-%d", uniqueID(), i)
			ownerB, err = c.where(ctx, c.callerSDK, b)
			must(t, "Where", err)
		}
		var path []string
		must(t, "Reenter A→A", invokeActor(ctx, c.callerSDK, a, "Reenter", map[string]any{"path": []string{a}, "forward": true}, &path))
		if want := []string{a + "@" + ownerA, a + "@" + ownerA}; !slices.Equal(path, want) {
			t.Fatalf("A→A visited %v, want %v", path, want)
		}
		must(t, "Reenter A→B→A", invokeActor(ctx, c.callerSDK, a, "Reenter", map[string]any{"path": []string{b, a}, "forward": true}, &path))
		if want := []string{a + "@" + ownerA, b + "@" + ownerB, a + "@" + ownerA}; !slices.Equal(path, want) {
			t.Fatalf("A→B→A visited %v, want %v", path, want)
		}
		start := time.Now()
		err = invokeActor(ctx, c.callerSDK, a, "Reenter", map[string]any{"path": []string{a}, "forward": false}, &path)
		if err == nil {
			t.Fatalf("A→A without the reentrancy id succeeded (%v); want the call back to wait for A's turn", path)
		}
		if el := time.Since(start); el < time.Second {
			t.Fatalf("A→A without the reentrancy id failed after %v (%v), want the app's 1.5s wait for the turn", el, err)
		}
		var n int
		must(t, "Count after the blocked chain", invokeActor(ctx, c.callerSDK, a, "Count", nil, &n))
	})

	// A fourth host joins: the placement disseminates a new table, whose
	// version every member (the hosts and the caller) applies; actors move
	// only to the newcomer (consistent hashing), and their reminders move
	// with them: after the rebalance each reminder fires once a period, on
	// its actor's owner only.
	t.Run("JoinRebalances", func(t *testing.T) {
		const n = 40
		prefix := "mv-" + uniqueID()
		ids := make([]string, n)
		ownerBefore := map[string]string{}
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%d", prefix, i)
			var w string
			must(t, "StartReminder", invokeActor(ctx, c.callerSDK, ids[i], "StartReminder",
				map[string]string{"name": "mv", "dueTime": "0s", "period": "1s"}, &w))
			ownerBefore[ids[i]] = w
		}
		eventually(t, 10*time.Second, "a firing of every reminder", func() bool {
			for _, id := range ids {
				if len(c.col.find("reminder", id)) == 0 {
					return false
				}
			}
			return true
		})
		before, err := c.versions()
		must(t, "versions", err)
		for _, v := range before {
			if v != before[0] {
				t.Fatalf("table versions differ before the join: %v", before)
			}
		}
		h := c.addHost(t) // the last subtest: the host may stop with it
		var after []uint64
		eventually(t, 20*time.Second, "a newer table version on all five sidecars", func() bool {
			v, err := c.versions()
			if err != nil {
				return false
			}
			after = v
			for _, x := range v {
				if x <= before[0] || x != v[0] {
					return false
				}
			}
			return true
		})
		t.Logf("table version %d → %d on %d sidecars", before[0], after[0], len(after))

		time.Sleep(1500 * time.Millisecond) // the moved reminders start on the newcomer
		from := time.Now()
		time.Sleep(2500 * time.Millisecond)
		moved := 0
		for _, id := range ids {
			w, err := c.where(ctx, c.callerSDK, id)
			must(t, "Where", err)
			if w != ownerBefore[id] {
				if w != h.Name {
					t.Fatalf("%s moved from %s to %s, an old host: want moves only to the newcomer %s", id, ownerBefore[id], w, h.Name)
				}
				moved++
			}
			var window []actorEvent
			for _, e := range c.col.find("reminder", id) {
				if e.At.After(from) {
					window = append(window, e)
				}
			}
			if len(window) < 1 || len(window) > 4 || len(apps(window)) != 1 || window[0].App != w {
				t.Fatalf("%s (owner %s, before the join %s): firings in 2.5s %+v, want about 2.5, all on the owner", id, w, ownerBefore[id], window)
			}
		}
		if moved == 0 {
			t.Fatalf("none of %d actors moved to the new host %s", n, h.Name)
		}
		t.Logf("%d of %d actors (and their reminders) moved to the new host", moved, n)
	})
}

// TestSDKActorReminderFailover kills (SIGKILL) the sidecar and app that
// host an actor with a reminder: once the placement drops the dead host,
// the reminder fires on the actor's new owner, and only there.
func TestSDKActorReminderFailover(t *testing.T) {
	c := newActorCluster(t, startPlacement(t), 3)
	ctx := ctxFor(t, 2*time.Minute)
	id := "rem-" + uniqueID()
	must(t, "Incr", invokeActor(ctx, c.callerSDK, id, "Incr", nil, nil))
	var owner string
	must(t, "StartReminder", invokeActor(ctx, c.callerSDK, id, "StartReminder",
		map[string]string{"name": "beat", "dueTime": "0s", "period": "500ms"}, &owner))
	eventually(t, 10*time.Second, "two firings on the owner", func() bool { return len(c.col.find("reminder", id)) >= 2 })
	if got := apps(c.col.find("reminder", id)); len(got) != 1 || got[0] != owner {
		t.Fatalf("the reminder fired in %v, want only in its owner %s", got, owner)
	}

	killed := time.Now()
	c.host(t, owner).kill()
	var moved []actorEvent
	eventually(t, 30*time.Second, "reminder firings on another host", func() bool {
		moved = moved[:0]
		for _, e := range c.col.find("reminder", id) {
			if e.At.After(killed) {
				moved = append(moved, e)
			}
		}
		return len(moved) >= 3
	})
	newOwner := moved[0].App
	if got := apps(moved); len(got) != 1 || newOwner == owner {
		t.Fatalf("after %s died the reminder fired in %v, want one other host", owner, got)
	}
	t.Logf("the reminder of %s moved from %s to %s; first firing there %v after the kill", id, owner, newOwner, moved[0].At.Sub(killed).Round(time.Millisecond))
	// The actor's state moved with it.
	var n int
	must(t, "Count on the new owner", invokeActor(ctx, c.callerSDK, id, "Count", nil, &n))
	if n != 1 {
		t.Fatalf("Count on the new owner = %d, want 1", n)
	}
	if w, err := c.where(ctx, c.callerSDK, id); err != nil || w != newOwner {
		t.Fatalf("Where after the failover = %q %v, want %s", w, err, newOwner)
	}
	// One firing per period: 2s at 500ms is about 4 firings, never one per
	// surviving host.
	from := time.Now()
	time.Sleep(2 * time.Second)
	var window []actorEvent
	for _, e := range c.col.find("reminder", id) {
		if e.At.After(from) {
			window = append(window, e)
		}
	}
	if len(window) < 2 || len(window) > 6 || len(apps(window)) != 1 {
		t.Fatalf("firings in 2s after the move: %+v, want about 4, all in %s", window, newOwner)
	}
}

// placementNode is one `mecha control-plane` placement process.
type placementNode struct {
	*child
	ID      string
	Addr    string // placement gRPC host:port
	Healthz string // http://host:port/healthz
}

// startPlacementCluster starts three raft placement nodes on free ports and
// waits until all report healthy (a leader was elected).
func startPlacementCluster(t *testing.T) []*placementNode {
	t.Helper()
	const n = 3
	var peers []string
	nodes := make([]*placementNode, n)
	for i := range n {
		peers = append(peers, fmt.Sprintf("p%d=127.0.0.1:%d", i, freePort(t)))
		nodes[i] = &placementNode{
			ID:      fmt.Sprintf("p%d", i),
			Addr:    "127.0.0.1:" + strconv.Itoa(freePort(t)),
			Healthz: "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/healthz",
		}
	}
	for _, p := range nodes {
		_, port, _ := strings.Cut(p.Addr, ":")
		hport := strings.TrimSuffix(strings.TrimPrefix(p.Healthz, "http://127.0.0.1:"), "/healthz")
		home := t.TempDir()
		cmd := exec.Command(mechaBin, "control-plane",
			"--placement-id", p.ID,
			"--placement-peers", strings.Join(peers, ","),
			"--placement-port", port,
			"--healthz-port", hport,
			"--placement-raft-dir", filepath.Join(home, "raft"))
		cmd.Dir = home
		cmd.Env = sidecarEnv(home)
		c, err := startChild(cmd)
		if err != nil {
			t.Fatal(err)
		}
		p.child = c
		t.Cleanup(func() {
			p.terminate(10 * time.Second)
			if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
				t.Errorf("placement node %s reported a data race", p.ID)
			}
			if t.Failed() {
				t.Logf("placement node %s output:\n%s", p.ID, p.out.String())
			}
		})
	}
	eventually(t, 30*time.Second, "a healthy placement cluster", func() bool {
		for _, p := range nodes {
			resp, err := pollClient.Get(p.Healthz)
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
	return nodes
}

// isLeader asks a placement node whether it serves sidecars: a follower
// refuses the stream with FailedPrecondition, the leader answers a report
// of a host without actor types with the current table (a round that
// involves no other member).
func (p *placementNode) isLeader() (bool, error) {
	conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	stream, err := placementv1.NewPlacementClient(conn).ReportDaprStatus(ctx)
	if err != nil {
		return false, err
	}
	_ = stream.Send(&placementv1.Host{Name: "leader-probe-" + uniqueID() + ":1", Id: "leader-probe", Namespace: "leader-probe"})
	_, err = stream.Recv()
	switch {
	case err == nil:
		return true, nil
	case status.Code(err) == codes.FailedPrecondition:
		return false, nil
	}
	return false, err
}

// leader returns the node that leads now.
func leader(t *testing.T, nodes []*placementNode) *placementNode {
	t.Helper()
	var found *placementNode
	eventually(t, 20*time.Second, "a placement leader", func() bool {
		for _, p := range nodes {
			select {
			case <-p.exited:
				continue
			default:
			}
			if ok, err := p.isLeader(); err == nil && ok {
				found = p
				return true
			}
		}
		return false
	})
	return found
}

// callRecord is one actor call of the load during the failover.
type callRecord struct {
	start, end time.Time
	id         string
	value      int
	err        error
}

// TestSDKActorPlacementFailover runs the sidecars on a 3-node raft
// placement cluster and SIGKILLs the leader while actor calls run: a new
// leader is elected, the sidecars reconnect to it, calls go on (the
// sidecars route with the table they hold meanwhile), no increment is
// lost or doubled, and the new leader disseminates the next table.
func TestSDKActorPlacementFailover(t *testing.T) {
	nodes := startPlacementCluster(t)
	var addrs []string
	for _, p := range nodes {
		addrs = append(addrs, p.Addr)
	}
	c := newActorCluster(t, strings.Join(addrs, ","), 2)
	ctx := ctxFor(t, 2*time.Minute)
	old := leader(t, nodes)
	before, err := c.versions()
	must(t, "versions", err)

	// Load: two callers (through the caller sidecar and through a host)
	// incrementing 20 actors in turn.
	prefix := "ha-" + uniqueID()
	var mu sync.Mutex
	var calls []callRecord
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g, cl := range []client.Client{c.callerSDK, c.hosts[0].SDK} {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%s-%d", prefix, (i*2+g)%20)
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				r := callRecord{start: time.Now(), id: id}
				r.err = invokeActor(cctx, cl, id, "Incr", nil, &r.value)
				r.end = time.Now()
				cancel()
				mu.Lock()
				calls = append(calls, r)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	killed := time.Now()
	old.kill()
	var rest []*placementNode
	for _, p := range nodes {
		if p != old {
			rest = append(rest, p)
		}
	}
	nl := leader(t, rest)
	elected := time.Since(killed)
	// Every sidecar reconnects to the new leader.
	eventually(t, 20*time.Second, "all sidecars connected to the new leader", func() bool {
		_, err := c.versions()
		return err == nil
	})
	reconnected := time.Since(killed)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	// Figures.
	var failed []callRecord
	var maxGap, maxLatency time.Duration
	var lastOK time.Time
	okAfter := 0
	perID := map[string][]int{}
	for _, r := range calls {
		if lat := r.end.Sub(r.start); lat > maxLatency {
			maxLatency = lat
		}
		if r.err != nil {
			failed = append(failed, r)
			continue
		}
		perID[r.id] = append(perID[r.id], r.value)
		if r.end.After(killed) {
			okAfter++
		}
		if !lastOK.IsZero() && r.end.After(killed.Add(-time.Second)) {
			if g := r.end.Sub(lastOK); g > maxGap {
				maxGap = g
			}
		}
		if r.end.After(lastOK) {
			lastOK = r.end
		}
	}
	t.Logf("leader %s killed; %s elected after %v; all sidecars connected after %v; %d calls, %d failed, %d succeeded after the kill; longest gap between successes %v; slowest call %v",
		old.ID, nl.ID, elected.Round(time.Millisecond), reconnected.Round(time.Millisecond), len(calls), len(failed), okAfter,
		maxGap.Round(time.Millisecond), maxLatency.Round(time.Millisecond))
	for i, r := range failed {
		if i < 5 {
			t.Logf("failed call %s at +%v: %v", r.id, r.start.Sub(killed).Round(time.Millisecond), r.err)
		}
	}
	if okAfter == 0 {
		t.Fatal("no call succeeded after the leader was killed")
	}
	if maxGap > 5*time.Second {
		t.Fatalf("calls stalled for %v around the failover, want under 5s", maxGap)
	}
	if len(failed) > 10 {
		t.Fatalf("%d of %d calls failed during the failover, want at most 10", len(failed), len(calls))
	}
	// No increment lost or doubled: each actor's successful increments
	// answered distinct values, and its final count lies between their
	// number and that plus the failed calls (which may have run).
	failedPer := map[string]int{}
	for _, r := range failed {
		failedPer[r.id]++
	}
	for id, vals := range perID {
		sort.Ints(vals)
		for i := 1; i < len(vals); i++ {
			if vals[i] == vals[i-1] {
				t.Fatalf("%s: two increments answered %d", id, vals[i])
			}
		}
		var n int
		must(t, "Count", invokeActor(ctx, c.callerSDK, id, "Count", nil, &n))
		if n < len(vals) || n > len(vals)+failedPer[id] || n != vals[len(vals)-1] && failedPer[id] == 0 {
			t.Fatalf("%s: count %d after %d successful increments (last answered %d) and %d failed", id, n, len(vals), vals[len(vals)-1], failedPer[id])
		}
	}

	// The new leader disseminates: a host joining now gets a table, with
	// a newer version, to every member.
	mid, err := c.versions()
	must(t, "versions", err)
	c.addHost(t)
	eventually(t, 20*time.Second, "a newer table from the new leader on every sidecar", func() bool {
		v, err := c.versions()
		if err != nil {
			return false
		}
		for _, x := range v {
			if x <= mid[0] || x != v[0] {
				return false
			}
		}
		return true
	})
	after, _ := c.versions()
	t.Logf("table versions: %v before the failover, %v after it, %v after a join", before, mid, after)
}

// TestSDKActorHungHost freezes (SIGSTOP) the sidecar that hosts an actor
// with a reminder: its connection stays open but its heartbeats stop, so
// the placement drops it after its heartbeat timeout and the reminder
// fires on another host, where calls now reach the actor. Once thawed
// (SIGCONT) with its stale table, the old host takes no extra firing: the
// reminder still fires about once a period cluster-wide.
func TestSDKActorHungHost(t *testing.T) {
	c := newActorCluster(t, startPlacement(t), 3)
	ctx := ctxFor(t, 2*time.Minute)
	id := "hung-" + uniqueID()
	must(t, "Incr", invokeActor(ctx, c.callerSDK, id, "Incr", nil, nil))
	var owner string
	must(t, "StartReminder", invokeActor(ctx, c.callerSDK, id, "StartReminder",
		map[string]string{"name": "beat", "dueTime": "0s", "period": "500ms"}, &owner))
	eventually(t, 10*time.Second, "two firings on the owner", func() bool { return len(c.col.find("reminder", id)) >= 2 })

	h := c.host(t, owner)
	stopped := time.Now()
	if err := h.SC.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = h.SC.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	var moved actorEvent
	eventually(t, 20*time.Second, "a firing on another host", func() bool {
		for _, e := range c.col.find("reminder", id) {
			if e.App != owner {
				moved = e
				return true
			}
		}
		return false
	})
	t.Logf("%s frozen; the reminder of %s fired on %s %v later", owner, id, moved.App, moved.At.Sub(stopped).Round(time.Millisecond))
	var n int
	must(t, "Count while the old host is frozen", invokeActor(ctx, c.callerSDK, id, "Count", nil, &n))
	if n != 1 {
		t.Fatalf("Count = %d, want 1", n)
	}

	thaw()
	resumed := time.Now()
	time.Sleep(3 * time.Second)
	var after []actorEvent
	for _, e := range c.col.find("reminder", id) {
		if e.At.After(resumed) {
			after = append(after, e)
		}
	}
	// 3s at 500ms is 6 firings; a second host firing on its own schedule
	// would make about 12.
	if len(after) < 4 || len(after) > 8 {
		t.Fatalf("firings in the 3s after the thaw: %d (%+v), want about 6", len(after), after)
	}
	t.Logf("after the thaw: %d firings in 3s, in %v", len(after), apps(after))
}
