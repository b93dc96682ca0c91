package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
	rt "github.com/mecha-dev/mecha/internal/runtime"
)

func TestSchedule(t *testing.T) {
	s := newSchedule(rateOptions{Rate: 3, Warmup: time.Second, Duration: 2 * time.Second})
	if s.n != 9 || s.first != 3 || s.Measured() != 6 {
		t.Fatalf("schedule %+v: want 9 slots, 3 of warm-up", s)
	}
	// Computed from i, so a rate whose interval is not a whole number of
	// nanoseconds does not drift.
	for i, want := range map[int]time.Duration{0: 0, 1: 333333333, 3: time.Second, 3000: 1000 * time.Second, 3000001: 1000000333333333} {
		if got := s.Offset(i); got != want {
			t.Errorf("Offset(%d) = %v, want %v", i, got, want)
		}
	}
	k := newSchedule(rateOptions{Rate: 1000, Warmup: 500 * time.Millisecond, Duration: 10 * time.Second})
	if k.n != 10500 || k.first != 500 || k.Offset(10499) != 10499*time.Millisecond {
		t.Errorf("1000/s schedule %+v", k)
	}
}

func TestRateOptionsValidate(t *testing.T) {
	good := rateOptions{Rate: 1000, Duration: time.Second, Workers: 8, Spin: 50 * time.Microsecond}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	bad := rateOptions{Rate: 0, Duration: 0, Warmup: -1, Workers: 0, Spin: 2 * time.Millisecond}
	err := bad.validate()
	for _, want := range []string{"--rate 0", "--rate-duration", "--warmup", "--rate-workers 0", "--spin"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestRunRateKeepsTheSchedule(t *testing.T) {
	var calls atomic.Int64
	o := rateOptions{Rate: 2000, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Workers: 4, Spin: 50 * time.Microsecond}
	res, err := runRate(context.Background(), o, func(int) (reqFunc, error) {
		return func(context.Context) error { calls.Add(1); return nil }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sch := newSchedule(o)
	if len(res.Latencies) != sch.Measured() || res.Total != sch.n || calls.Load() != int64(sch.n) {
		t.Fatalf("measured %d of %d, total %d of %d", len(res.Latencies), sch.Measured(), res.Total, sch.n)
	}
	if r := res.ReqPerSec(); r < 1600 || r > 2400 {
		t.Errorf("%.0f req/s, want about 2000", r)
	}
	if !slices.IsSorted(res.Latencies) || !slices.IsSorted(res.Lags) {
		t.Error("samples are not sorted")
	}
	// Instant requests: latency is the lag, which is small unless the
	// machine is very busy.
	if p50 := percentile(res.Lags, 50); p50 > 5*time.Millisecond {
		t.Errorf("lag p50 %v", p50)
	}
}

// A stall delays every request due behind it, and each of them counts its
// wait: a closed-loop tool would record one slow request instead (the
// coordinated omission this mode avoids).
func TestRunRateCountsTheWaitBehindAStall(t *testing.T) {
	var n atomic.Int64
	o := rateOptions{Rate: 1000, Duration: 200 * time.Millisecond, Workers: 1}
	res, err := runRate(context.Background(), o, func(int) (reqFunc, error) {
		return func(context.Context) error {
			if n.Add(1) == 10 {
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slow := 0
	for _, l := range res.Latencies {
		if l >= 10*time.Millisecond {
			slow++
		}
	}
	// Requests 10..49 are due while request 10 stalls; each waits at
	// least until 60 ms, the first 40 of them by 10 ms or more.
	if slow < 35 {
		t.Errorf("%d requests of %d took 10 ms or more, want the ~40 due during the 50 ms stall", slow, len(res.Latencies))
	}
	if percentile(res.Latencies, 100) < 50*time.Millisecond || percentile(res.Lags, 90) < 5*time.Millisecond {
		t.Errorf("max latency %v, lag p90 %v: the stall is not counted", percentile(res.Latencies, 100), percentile(res.Lags, 90))
	}
}

func TestRunRateFailures(t *testing.T) {
	boom := errors.New("boom")
	o := rateOptions{Rate: 5000, Duration: 5 * time.Second, Workers: 2}
	_, err := runRate(context.Background(), o, func(int) (reqFunc, error) {
		return func(context.Context) error { return boom }, nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "consecutive errors") {
		t.Errorf("always failing: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := runRate(ctx, o, func(int) (reqFunc, error) {
		return func(context.Context) error { return nil }, nil
	}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := runRate(context.Background(), rateOptions{}, nil); err == nil {
		t.Error("invalid options accepted")
	}
}

func TestPacerSleepsUntilAndStopsOnCancel(t *testing.T) {
	p := newPacer(20 * time.Microsecond)
	due := time.Now().Add(3 * time.Millisecond)
	if !p.sleepUntil(context.Background(), due) || time.Now().Before(due) {
		t.Error("woke before the due time")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if p.sleepUntil(ctx, time.Now().Add(time.Hour)) || time.Since(start) > time.Second {
		t.Error("a cancelled sleep went on")
	}
}

// Percentiles of a run come from all its samples pooled: they cannot be
// merged from per-worker percentiles.
func TestMergeSamples(t *testing.T) {
	fast := make([]time.Duration, 99)
	for i := range fast {
		fast[i] = time.Duration(99-i) * time.Millisecond // unsorted
	}
	slow := []time.Duration{500 * time.Millisecond}
	all := mergeSamples([][]time.Duration{fast, nil, slow})
	if len(all) != 100 || !slices.IsSorted(all) {
		t.Fatalf("merged %d samples, sorted %v", len(all), slices.IsSorted(all))
	}
	if got := percentile(all, 99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v, want 99ms", got)
	}
	if got := percentile(all, 100); got != 500*time.Millisecond {
		t.Errorf("max = %v", got)
	}
	if got := mergeSamples(nil); len(got) != 0 {
		t.Errorf("empty merge = %v", got)
	}
}

func TestSelectScenarios(t *testing.T) {
	all, err := selectScenarios("")
	if err != nil || len(all) != len(invokeScenarios) {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	got, err := selectScenarios(" proxy-two ,http-two")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	// Canonical order, with the direct baselines added.
	if want := "http-direct,http-two,grpc-direct,proxy-two"; strings.Join(ids, ",") != want {
		t.Errorf("selected %v, want %s", ids, want)
	}
	if _, err := selectScenarios("http-two,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "http-self") {
		t.Errorf("unknown scenario: %v", err)
	}
	for _, s := range invokeScenarios {
		if s.Sidecars > 0 {
			b, ok := findScenario(s.Baseline)
			if !ok || b.Sidecars != 0 || b.App != s.App {
				t.Errorf("%s: baseline %q is not a direct call to the same app", s.ID, s.Baseline)
			}
		}
	}
}

func TestScenarioTargets(t *testing.T) {
	env := invokeEnv{
		App: endpoint{HTTPAddr: "app:1", GRPCAddr: "app:2", PID: 10},
		A:   endpoint{HTTPAddr: "a:1", GRPCAddr: "a:2", AppID: "caller", PID: 11},
		B:   endpoint{HTTPAddr: "b:1", GRPCAddr: "b:2", AppID: "callee", PID: 12},
	}
	want := map[string]struct {
		target callTarget
		pids   rolePIDs
	}{
		"http-direct":        {callTarget{Call: callHTTP, Addr: "app:1", AppID: ""}, rolePIDs{app: 10}},
		"http-self":          {callTarget{Call: callHTTP, Addr: "b:1", AppID: "callee"}, rolePIDs{app: 10, b: 12}},
		"http-two":           {callTarget{Call: callHTTP, Addr: "a:1", AppID: "callee"}, rolePIDs{10, 11, 12}},
		"invoke-two":         {callTarget{Call: callInvokeService, Addr: "a:2", AppID: "callee"}, rolePIDs{10, 11, 12}},
		"grpc-direct":        {callTarget{Call: callUnary, Addr: "app:2", AppID: ""}, rolePIDs{app: 10}},
		"proxy-self":         {callTarget{Call: callUnary, Addr: "b:2", AppID: "callee"}, rolePIDs{app: 10, b: 12}},
		"proxy-two":          {callTarget{Call: callUnary, Addr: "a:2", AppID: "callee"}, rolePIDs{10, 11, 12}},
		"oninvoke-direct":    {callTarget{Call: callOnInvoke, Addr: "app:2", AppID: ""}, rolePIDs{app: 10}},
		"invoke-grpcapp-two": {callTarget{Call: callInvokeService, Addr: "a:2", AppID: "callee"}, rolePIDs{10, 11, 12}},
	}
	if len(want) != len(invokeScenarios) {
		t.Fatalf("%d scenarios, %d expectations", len(invokeScenarios), len(want))
	}
	for _, s := range invokeScenarios {
		w := want[s.ID]
		if got := s.target(env); got != w.target {
			t.Errorf("%s: target %+v, want %+v", s.ID, got, w.target)
		}
		if got := s.pids(env); got != w.pids {
			t.Errorf("%s: pids %+v, want %+v", s.ID, got, w.pids)
		}
	}
	if _, err := invokeWorkers(callTarget{Call: "smtp"}, nil, &clients{}); err == nil {
		t.Error("unknown call accepted")
	}
	if _, err := invokeWorkers(callTarget{Call: callInvokeService, Addr: "x"}, nil, &clients{}); err == nil {
		t.Error("InvokeService without an app id accepted")
	}
}

func TestAppAddrLine(t *testing.T) {
	h, g, err := parseAppAddrLine(appAddrLine("127.0.0.1:1", "127.0.0.1:2") + "\n")
	if err != nil || h != "127.0.0.1:1" || g != "127.0.0.1:2" {
		t.Errorf("round trip: %q %q %v", h, g, err)
	}
	if _, _, err := parseAppAddrLine("listening on 127.0.0.1:1"); err == nil {
		t.Error("garbage accepted")
	}
}

func TestInvokeFlagsOptions(t *testing.T) {
	lf := &loadFlags{Concurrency: 16, Duration: 10 * time.Second, Warmup: time.Second}
	f := invokeFlags{BodySize: 1024, Rate: 1000, RateDuration: 10 * time.Second, RateWorkers: 32, Spin: 50 * time.Microsecond, Modes: "rate,max", Conns: 1}
	o, err := f.options(lf)
	if err != nil {
		t.Fatal(err)
	}
	if o.Rate.Rate != 1000 || o.Rate.Warmup != time.Second || o.Max.Concurrency != 16 || o.Max.Keys != 1 {
		t.Errorf("options %+v", o)
	}
	f.Modes = "max"
	if o, err := f.options(lf); err != nil || o.Rate.Rate != 0 || o.Max.Concurrency != 16 {
		t.Errorf("max only: %+v %v", o, err)
	}
	for _, c := range []struct {
		mutate func(*invokeFlags)
		want   string
	}{
		{func(f *invokeFlags) { f.Modes = "fast" }, `unknown mode "fast"`},
		{func(f *invokeFlags) { f.Modes = "" }, "nothing to measure"},
		{func(f *invokeFlags) { f.Rate = 0 }, "--rate must be positive"},
		{func(f *invokeFlags) { f.BodySize = 0 }, "--body-size 0"},
		{func(f *invokeFlags) { f.Conns = 0 }, "--conns 0"},
	} {
		g := invokeFlags{BodySize: 1024, Rate: 1000, RateDuration: time.Second, RateWorkers: 4, Modes: "rate,max", Conns: 1}
		c.mutate(&g)
		if _, err := g.options(lf); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("options() = %v, want %q", err, c.want)
		}
	}
	if _, err := parsePIDs("1,x"); err == nil {
		t.Error("bad pid accepted")
	}
	if p, err := parsePIDs(" 12, 34 "); err != nil || !slices.Equal(p, []int{12, 34}) {
		t.Errorf("parsePIDs = %v, %v", p, err)
	}
}

func sampleInvokeReport() *InvokeReport {
	mode := func(rate, p50, p99, rps float64) *ModeResult {
		return &ModeResult{TargetRate: rate, Workers: 16, Requests: 10000, ReqPerSec: rps, P50Ms: p50, P90Ms: p50 * 2, P99Ms: p99, MaxMs: p99 * 2, LagP50Ms: 0.01, LagP99Ms: 0.1}
	}
	r := &InvokeReport{
		Machine:  Machine{CPUs: 2, GOMAXPROCS: 2, OS: "linux", Arch: "amd64", Go: "go1.26", LoadAvg: []string{"0.10 0.20 0.30"}},
		Settings: InvokeSettings{BodyBytes: 1024, Rate: 1000, RateDurationSec: 10, RateWarmupSec: 1, RateWorkers: 32, MaxWorkers: 16, MaxDurationSec: 10, MaxWarmupSec: 1, GRPCConns: 1},
	}
	add := func(id string, rate, max *ModeResult) {
		s, _ := findScenario(id)
		r.Results = append(r.Results, InvokeResult{invokeScenario: s, Rate: rate, Max: max})
	}
	add("http-direct", mode(1000, 0.2, 0.5, 20000), mode(0, 0.8, 3, 20000))
	add("http-self", mode(1000, 0.4, 1.5, 9000), mode(0, 1.8, 6, 9000))
	two := mode(1000, 0.45, 3.0, 9000)
	two.SidecarACPUUs, two.SidecarBCPUUs, two.ReqPerSidecarCore = 50, 60, 9090
	add("http-two", mode(1000, 0.45, 3.0, 1000), two) // +0.25 ms met, +2.5 ms missed, 45% met
	add("grpc-direct", mode(1000, 0.3, 0.6, 25000), mode(0, 0.6, 2, 25000))
	add("proxy-two", mode(1000, 0.9, 2.0, 1000), mode(0, 3, 9, 5000)) // +0.6 missed, +1.4 met, 20% missed
	r.Comparisons = compareInvoke(r)
	return r
}

func TestCompareInvoke(t *testing.T) {
	r := sampleInvokeReport()
	got := map[string]Comparison{}
	for _, c := range r.Comparisons {
		got[c.Name] = c
	}
	if len(r.Comparisons) != 9 {
		t.Errorf("%d comparisons, want 9 (3 per path through sidecars)", len(r.Comparisons))
	}
	for _, w := range []struct {
		name  string
		value float64
		met   string
		ref   string
	}{
		{"http-two vs http-direct: added p50 @ 1,000/s", 0.25, "yes", "daprd 1.18 ms"},
		{"http-two vs http-direct: added p99 @ 1,000/s", 2.5, "no", "daprd p99 11 ms"},
		{"http-two vs http-direct: max throughput", 45, "yes", "daprd 12% (3,000 of 24,000)"},
		{"http-self vs http-direct: added p50 @ 1,000/s", 0.2, "", ""},
		{"proxy-two vs grpc-direct: added p50 @ 1,000/s", 0.6, "no", ""},
		{"proxy-two vs grpc-direct: added p99 @ 1,000/s", 1.4, "yes", ""},
		{"proxy-two vs grpc-direct: max throughput", 20, "no", "daprd gRPC 14% (4,300 of 30,900)"},
	} {
		c, ok := got[w.name]
		if !ok {
			t.Errorf("missing %q", w.name)
			continue
		}
		if d := c.Value - w.value; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", w.name, c.Value, w.value)
		}
		m := ""
		if c.Met != nil {
			m = map[bool]string{true: "yes", false: "no"}[*c.Met]
		}
		if m != w.met || !strings.HasPrefix(c.Reference, w.ref) {
			t.Errorf("%s: met %q ref %q, want %q %q", w.name, m, c.Reference, w.met, w.ref)
		}
	}
	// A path without its baseline has no comparison.
	partial := &InvokeReport{Results: r.Results[1:3]}
	if n := len(compareInvoke(partial)); n != 0 {
		t.Errorf("without http-direct: %d comparisons", n)
	}
}

func TestWriteInvokeText(t *testing.T) {
	r := sampleInvokeReport()
	r.Results[2].Rate.TargetRate, r.Results[2].Rate.ReqPerSec = 1000, 800 // behind schedule
	r.Results[3].Max.FirstError, r.Results[3].Max.Errors = "oops", 2
	var b bytes.Buffer
	if err := writeInvokeText(&b, r, "run 1/1"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"== run 1/1",
		"load avg at start: 0.10 0.20 0.30",
		"the load generator, the app and both sidecars run on this machine",
		"1024-byte request and response bodies; fixed rate 1,000 req/s for 10s after 1s warm-up",
		"16 workers back to back",
		"@1,000/s P50 ms",
		"0.450 (behind: 800/s)",
		"first error in grpc-direct: oops",
		"client -> sidecar A /v1.0/invoke/B -> sidecar B -> app",
		"http-two vs http-direct: max throughput",
		"+0.250 ms", "MISSED", "met",
		"-|-|50|60", "9,090",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Columns line up: MAX REQ/S starts at the same offset in the header
	// and in the http-direct row.
	lines := strings.Split(out, "\n")
	col := -1
	for _, l := range lines {
		if strings.HasPrefix(l, "SCENARIO") {
			col = strings.Index(l, "MAX REQ/S")
		}
		if col > 0 && strings.HasPrefix(l, "http-direct ") {
			if got := strings.Index(l, "20,000"); got != col {
				t.Errorf("MAX REQ/S at %d, value at %d:\n%s", col, got, out)
			}
			break
		}
	}
	if col < 0 {
		t.Fatalf("no header:\n%s", out)
	}
	var j bytes.Buffer
	if err := printInvokeReport(&j, true, r, []*InvokeReport{r}); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Median InvokeReport   `json:"median"`
		Runs   []InvokeReport `json:"runs"`
	}
	if err := json.Unmarshal(j.Bytes(), &decoded); err != nil || len(decoded.Runs) != 1 || decoded.Median.Results[2].ID != "http-two" || decoded.Median.Results[2].Max.SidecarACPUUs != 50 {
		t.Errorf("JSON: %v\n%s", err, j.String())
	}
}

func TestMedianInvokeReport(t *testing.T) {
	a, b, c := sampleInvokeReport(), sampleInvokeReport(), sampleInvokeReport()
	b.Results[0].Max.ReqPerSec, c.Results[0].Max.ReqPerSec = 10000, 30000
	b.Results[2].Rate.P99Ms, c.Results[2].Rate.P99Ms = 1.0, 9.0
	a.Results[1].Max.Errors, b.Results[1].Max.Errors = 1, 2
	c.Results = c.Results[:4] // a run without proxy-two
	m := medianInvokeReport([]*InvokeReport{a, b, c})
	if m.Runs != 3 || len(m.Results) != 5 || len(m.Machine.LoadAvg) != 3 {
		t.Fatalf("runs %d results %d loadavg %v", m.Runs, len(m.Results), m.Machine.LoadAvg)
	}
	if m.Results[0].Max.ReqPerSec != 20000 || m.Results[2].Rate.P99Ms != 3.0 || m.Results[1].Max.Errors != 3 {
		t.Errorf("medians: %+v %+v, errors %d", m.Results[0].Max, m.Results[2].Rate, m.Results[1].Max.Errors)
	}
	if m.Results[4].Max.ReqPerSec != 5000 {
		t.Errorf("median of two runs = %v", m.Results[4].Max.ReqPerSec)
	}
	if len(m.Comparisons) != len(a.Comparisons) {
		t.Errorf("%d comparisons, want %d", len(m.Comparisons), len(a.Comparisons))
	}
	if medianMode(nil) != nil || len(medianInvokeReport(nil).Results) != 0 {
		t.Error("empty medians")
	}
}

func TestBenchAppAnswers(t *testing.T) {
	s, err := serveApp("", 1024, benchActorType)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Post("http://"+s.HTTPAddr+"/echo", appContentType, strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 1024 || resp.Header.Get("Content-Type") != appContentType {
		t.Errorf("HTTP: %d, %d bytes, %q", resp.StatusCode, len(b), resp.Header.Get("Content-Type"))
	}
}

func TestServePprofOnlyOnLoopback(t *testing.T) {
	if err := servePprof("0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("0.0.0.0: %v", err)
	}
	if err := servePprof("nonsense"); err == nil {
		t.Error("bad address accepted")
	}
	if got := envValue([]string{"A=1", pprofEnv + "=x", "B=2", pprofEnv + "=y"}, pprofEnv); got != "y" {
		t.Errorf("envValue = %q, want the last", got)
	}
}

// quickInvoke is a short load for smoke tests.
var quickInvoke = invokeOptions{
	BodySize: 1024, Conns: 1,
	Rate: rateOptions{Rate: 500, Duration: 60 * time.Millisecond, Warmup: 20 * time.Millisecond, Workers: 4, Spin: 20 * time.Microsecond},
	Max:  loadOptions{Concurrency: 2, Duration: 60 * time.Millisecond, Warmup: 20 * time.Millisecond, Keys: 1},
}

// TestInvokeSmokeInProcess runs every scenario for a moment against the
// app and three sidecars in this process: A (no app), and B in front of
// the HTTP app and in front of the gRPC app.
func TestInvokeSmokeInProcess(t *testing.T) {
	app, err := serveApp("", 1024, benchActorType)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	port := func(addr string) int { p, _ := strconv.Atoi(portOf(addr)); return p }
	quiet := func(o *rt.Options) { o.Logger = slog.New(slog.DiscardHandler) }
	a := mechatest.Start(t, func(o *rt.Options) { quiet(o); o.AppID = "bench-caller" })
	bh := mechatest.Start(t, func(o *rt.Options) { quiet(o); mechatest.App("bench-http-app", port(app.HTTPAddr), "http")(o) })
	bg := mechatest.Start(t, func(o *rt.Options) { quiet(o); mechatest.App("bench-grpc-app", port(app.GRPCAddr), "grpc")(o) })
	ep := func(s *mechatest.Sidecar, id string) endpoint {
		return endpoint{HTTPAddr: strings.TrimPrefix(s.URL, "http://"), GRPCAddr: s.RT.GRPCAddr(), AppID: id}
	}
	env := invokeEnv{App: endpoint{HTTPAddr: app.HTTPAddr, GRPCAddr: app.GRPCAddr}, A: ep(a, "bench-caller")}
	rep := &InvokeReport{Settings: invokeSettings(quickInvoke)}
	for _, s := range invokeScenarios {
		env.B = ep(bh, "bench-http-app")
		if s.App == appGRPC {
			env.B = ep(bg, "bench-grpc-app")
		}
		r, err := runInvokeScenario(context.Background(), s, env, quickInvoke, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []*ModeResult{r.Rate, r.Max} {
			if m == nil || m.Requests == 0 || m.Errors != 0 || m.P50Ms <= 0 || m.P50Ms > m.P99Ms || m.ReqPerSec <= 0 {
				t.Errorf("%s: %+v", s.ID, m)
			}
		}
		rep.Results = append(rep.Results, r)
	}
	rep.Comparisons = compareInvoke(rep)
	if len(rep.Comparisons) != 18 {
		t.Errorf("%d comparisons, want 18", len(rep.Comparisons))
	}
	var b bytes.Buffer
	if err := writeInvokeText(&b, rep, ""); err != nil || !strings.Contains(b.String(), "invoke-grpcapp-two") {
		t.Errorf("%v\n%s", err, b.String())
	}
}

func TestInvokeCommandAgainstTheApp(t *testing.T) {
	app, err := serveApp("", 512, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"invoke", "--call", "unary", "--addr", app.GRPCAddr, "--body-size", "512", "--rate", "500", "--rate-duration", "100ms", "--warmup", "20ms", "-c", "2", "-d", "100ms", "--json"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rep InvokeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Results) != 1 || rep.Results[0].ID != "unary-direct" || rep.Results[0].Rate == nil || rep.Results[0].Max == nil || rep.Results[0].Max.Requests == 0 {
		t.Errorf("report %+v", rep)
	}
}

// TestInvokeAllSmoke runs invoke-all as a user would, with this test
// binary standing in for mecha (sidecars and app are child processes),
// profiles included, and checks that every process is gone afterwards.
func TestInvokeAllSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sidecar and app processes")
	}
	profiles := t.TempDir()
	text, progress := runBenchAsUser(t, "invoke-all", "--scenarios", "http-two,proxy-self", "--rate", "500", "--rate-duration", "100ms", "--warmup", "100ms",
		"-c", "2", "-d", "1s", "--profile", profiles, "--profile-scenario", "http-two")
	for _, want := range []string{"http-direct", "http-two", "grpc-direct", "proxy-self", "http-two vs http-direct: max throughput", "daprd 12%"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// The two-sidecar row has both sidecars' CPU.
	if runtime.GOOS == "linux" && !regexp.MustCompile(`(?m)^http-two .*\|\d+\|\d+\s`).MatchString(text) {
		t.Errorf("no sidecar CPU in the http-two row:\n%s", text)
	}
	for _, name := range []string{"sidecar-a", "sidecar-b", "app"} {
		st, err := os.Stat(filepath.Join(profiles, "http-two-"+name+".pprof"))
		if err != nil || st.Size() == 0 {
			t.Errorf("profile of %s: %v", name, err)
		}
	}
	checkChildrenGone(t, progress, 4) // app, A, B for HTTP, B for gRPC
}
