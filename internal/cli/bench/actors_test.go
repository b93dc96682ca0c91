package bench

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

func TestActorTargetURLs(t *testing.T) {
	direct := callTarget{Call: callActor, Addr: "app:1", Actor: actorTarget{Type: "T", Warm: 3}}
	next, err := direct.Actor.urls(direct)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		got = append(got, next())
	}
	want := []string{
		"http://app:1/actors/T/warm-0/method/echo", "http://app:1/actors/T/warm-1/method/echo",
		"http://app:1/actors/T/warm-2/method/echo", "http://app:1/actors/T/warm-0/method/echo",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("warm round-robin:\n got %v\nwant %v", got, want)
	}
	viaSidecar := callTarget{Call: callActor, Addr: "b:1", AppID: "b", Actor: actorTarget{Type: "My Type", NewPrefix: "new-x-"}}
	next, err = viaSidecar.Actor.urls(viaSidecar)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := next(), next(); a != "http://b:1/v1.0/actors/My%20Type/new-x-1/method/echo" || b != "http://b:1/v1.0/actors/My%20Type/new-x-2/method/echo" {
		t.Errorf("new ids: %s, %s", a, b)
	}
	for _, bad := range []actorTarget{{Warm: 1}, {Type: "T"}} {
		if _, err := bad.urls(callTarget{Addr: "x"}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	// The scenarios call the HTTP API of the app, B or A.
	env := invokeEnv{App: endpoint{HTTPAddr: "app:1", PID: 10}, A: endpoint{HTTPAddr: "a:1", PID: 11}, B: endpoint{HTTPAddr: "b:1", AppID: "b", PID: 12}}
	for id, addr := range map[string]string{"actor-direct": "app:1", "actor-self": "b:1", "actor-two": "a:1", "activation": "b:1", "activation-two": "a:1"} {
		s, ok := findIn(actorScenarios, id)
		if !ok {
			t.Fatalf("no scenario %s", id)
		}
		if tg := s.target(env); tg.Addr != addr || tg.Call != callActor || (s.Sidecars > 0) != (tg.AppID == "b") {
			t.Errorf("%s: target %+v, want %s", id, tg, addr)
		}
	}
	sc, err := selectFrom(actorScenarios, "activation")
	if err != nil || len(sc) != 2 || sc[0].ID != "actor-direct" {
		t.Errorf("selected %+v, %v: want actor-direct added as the baseline", sc, err)
	}
	if _, err := selectFrom(actorScenarios, "http-two"); err == nil || !strings.Contains(err.Error(), "actor-two") {
		t.Errorf("an invocation scenario among the actor ones: %v", err)
	}
}

func TestBenchAppActorCallbacks(t *testing.T) {
	s, err := serveApp("", 64, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	call := func(method, path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+s.HTTPAddr+path, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	status, body := call(http.MethodGet, "/dapr/config")
	var cfg struct {
		Entities         []string `json:"entities"`
		ActorIdleTimeout string   `json:"actorIdleTimeout"`
	}
	if err := json.Unmarshal(body, &cfg); status != 200 || err != nil || len(cfg.Entities) != 1 || cfg.Entities[0] != "Counter" || cfg.ActorIdleTimeout != "1h" {
		t.Errorf("/dapr/config: %d %s (%v)", status, body, err)
	}
	if status, body := call(http.MethodPut, "/actors/Counter/a/method/echo"); status != 200 || len(body) != 64 {
		t.Errorf("method call: %d, %d bytes", status, len(body))
	}
	if status, body := call(http.MethodDelete, "/actors/Counter/a"); status != 200 || len(body) != 0 {
		t.Errorf("deactivation: %d, %d bytes", status, len(body))
	}
	plain, err := serveApp("", 64, "")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	resp, err := http.Get("http://" + plain.HTTPAddr + "/dapr/config")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 64 {
		t.Errorf("without an actor type /dapr/config is an ordinary call: %d bytes", len(b))
	}
}

func TestCompareActors(t *testing.T) {
	mode := func(rate, p50, p99, rps float64) *ModeResult {
		return &ModeResult{TargetRate: rate, Requests: 100, ReqPerSec: rps, P50Ms: p50, P99Ms: p99}
	}
	r := &InvokeReport{Kind: reportActors}
	add := func(id string, rate, max *ModeResult) {
		s, _ := findIn(actorScenarios, id)
		r.Results = append(r.Results, InvokeResult{invokeScenario: s, Rate: rate, Max: max})
	}
	add("actor-direct", mode(1000, 0.2, 1, 10000), mode(0, 0.5, 2, 10000))
	add("actor-two", mode(1000, 0.35, 4, 1000), mode(0, 2, 8, 2500))
	add("activation", mode(500, 0.7, 9, 500), nil)
	cs := map[string]Comparison{}
	for _, c := range r.compare() {
		cs[c.Name] = c
	}
	p50, p99 := cs["actor-two: p50 @ 1,000/s"], cs["actor-two: p99 @ 1,000/s"]
	if p50.Value != 0.35 || p50.Met == nil || !*p50.Met || p50.Reference != "daprd 0.89 ms" {
		t.Errorf("p50 %+v", p50)
	}
	if p99.Value != 4 || p99.Met == nil || *p99.Met || p99.Target != "<= 3 ms" {
		t.Errorf("p99 %+v", p99)
	}
	if c := cs["actor-two vs actor-direct: max throughput"]; c.Value != 25 {
		t.Errorf("throughput %+v", c)
	}
	if c := cs["activation: p50 @ 500/s"]; c.Value != 0.7 || c.Reference != "daprd activation 0.86 ms" || c.Met != nil {
		t.Errorf("activation %+v", c)
	}
	if len(cs) != 5 {
		t.Errorf("%d comparisons: %v", len(cs), cs)
	}
	// At another rate there is nothing to hold the figures against.
	r.Results[1].Rate.TargetRate = 2000
	for _, c := range compareActors(r) {
		if strings.HasPrefix(c.Name, "actor-two: p") && (c.Met != nil || c.Reference != "") {
			t.Errorf("at 2,000/s: %+v", c)
		}
	}
	m := medianInvokeReport([]*InvokeReport{r, r})
	if m.Kind != reportActors || len(m.Comparisons) != 5 {
		t.Errorf("median: kind %q, %d comparisons", m.Kind, len(m.Comparisons))
	}
}

// TestActorsSmoke runs `mecha bench actors` as a user would, briefly, with
// this test binary standing in for mecha (placement, app and sidecars are
// child processes): every scenario makes calls in both modes without a
// failure, the activations leave one actor each on B, and every process
// is gone afterwards.
func TestActorsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts placement, sidecar and app processes")
	}
	out, progress := runBenchAsUser(t, "actors", "--rate", "300", "--activation-rate", "200", "--rate-duration", "300ms", "--warmup", "100ms",
		"-c", "2", "-d", "300ms", "--actors", "10", "--json")
	var rep InvokeReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Kind != reportActors || len(rep.Results) != len(actorScenarios) || rep.Settings.WarmActors != 10 {
		t.Fatalf("report: kind %q, %d results, settings %+v", rep.Kind, len(rep.Results), rep.Settings)
	}
	activated := 0
	for _, x := range rep.Results {
		for _, m := range []*ModeResult{x.Rate, x.Max} {
			if m == nil || m.Requests == 0 || m.Errors != 0 || m.P50Ms <= 0 || m.P50Ms > m.P99Ms || m.ReqPerSec <= 0 {
				t.Errorf("%s: %+v", x.ID, m)
				continue
			}
			if x.NewActors {
				activated += m.Requests
			}
		}
		wantRate := 300.0
		if x.NewActors {
			wantRate = 200
		}
		if x.Rate != nil && x.Rate.TargetRate != wantRate {
			t.Errorf("%s ran at %g/s, want %g", x.ID, x.Rate.TargetRate, wantRate)
		}
		if runtime.GOOS == "linux" && x.Max != nil && x.Sidecars == 2 && (x.Max.SidecarACPUUs <= 0 || x.Max.SidecarBCPUUs <= 0) {
			t.Errorf("%s: no sidecar CPU: %+v", x.ID, x.Max)
		}
	}
	// Each measured activation (warm-ups and probes come on top) left an
	// actor of its own on B, next to the warm ones.
	if rep.ActiveActors < 10+activated {
		t.Errorf("%d actors active on B, want at least 10 warm + %d activated", rep.ActiveActors, activated)
	}
	if len(rep.Comparisons) == 0 {
		t.Error("no comparisons")
	}
	checkChildrenGone(t, progress, 4) // placement, app, B, A
}

// `bench invoke --call actor` runs one actor path against running
// processes (here the app itself), warm ids and new ones alike.
func TestInvokeCommandActorCalls(t *testing.T) {
	app, err := serveApp("", 256, benchActorType)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	for _, extra := range [][]string{{"--actors", "5"}, {"--new-actors"}} {
		cmd := Command()
		var out strings.Builder
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append([]string{"invoke", "--call", "actor", "--addr", app.HTTPAddr, "--body-size", "256", "--rate", "300", "--rate-duration", "100ms",
			"--warmup", "20ms", "-c", "2", "-d", "100ms", "--json"}, extra...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v", extra, err)
		}
		var rep InvokeReport
		if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if len(rep.Results) != 1 || rep.Results[0].ID != "actor-direct" || rep.Results[0].Rate == nil || rep.Results[0].Rate.Requests == 0 ||
			rep.Results[0].Rate.Errors != 0 || rep.Results[0].Max == nil || rep.Results[0].Max.Requests == 0 {
			t.Errorf("%v: report %+v", extra, rep)
		}
	}
}
