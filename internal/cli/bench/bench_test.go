package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/components/all"
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/controlplane"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/mechatest"
)

// sidecarEnv makes the test binary act as `mecha sidecar`, `mecha bench
// app` and `mecha control-plane`, so the tests that exec "the mecha
// binary" (os.Executable) run the real processes without building one.
const sidecarEnv = "MECHA_BENCH_TEST_AS_SIDECAR"

func TestMain(m *testing.M) {
	if os.Getenv(sidecarEnv) == "1" {
		root := &cobra.Command{Use: "mecha", SilenceUsage: true}
		root.AddCommand(sidecar.Command(func() *kinds.Registries {
			r := kinds.New()
			all.Register(r)
			return r
		}), Command(), controlplane.Command())
		root.SetArgs(os.Args[1:])
		if err := root.Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPercentile(t *testing.T) {
	ds := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ds(7), 99, 7},
		{"p50 of 1..100", hundred, 50, 50},
		{"p90 of 1..100", hundred, 90, 90},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 is max", hundred, 100, 100},
		{"p0 is min", hundred, 0, 1},
		{"p50 of four", ds(1, 2, 3, 4), 50, 2},
		{"p99 of four", ds(1, 2, 3, 4), 99, 4},
		{"p50 of three", ds(10, 20, 30), 50, 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := percentile(c.sorted, c.p); got != c.want {
				t.Errorf("percentile(p%g) = %v, want %v", c.p, got, c.want)
			}
		})
	}
}

func TestMedianAndPercentileF(t *testing.T) {
	in := []float64{5, 1, 3}
	if got := median(in); got != 3 {
		t.Errorf("median(5,1,3) = %v, want 3", got)
	}
	if in[0] != 5 {
		t.Errorf("median sorted its input: %v", in)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median(4,1,3,2) = %v, want 2.5", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median(nil) = %v, want 0", got)
	}
	if got := percentileF([]float64{9, 1, 5, 3, 7, 2, 4, 6, 8, 10}, 90); got != 9 {
		t.Errorf("percentileF(p90) = %v, want 9", got)
	}
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {13800.4, "13,800"}, {1234567, "1,234,567"}, {-4200, "-4,200"}} {
		if got := thousands(c.in); got != c.want {
			t.Errorf("thousands(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		in   float64
		want string
	}{{0.4567, "0.457"}, {1.234, "1.23"}, {12, "12.00"}, {-0.5, "-0.500"}} {
		if got := fmtMs(c.in); got != c.want {
			t.Errorf("fmtMs(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		v          float64
		unit, want string
	}{{2.345, "x", "2.35x"}, {61.4, "%", "61%"}, {9.6, "ms", "9.60 ms"}, {20.61, "MB", "20.6 MB"}} {
		if got := fmtValue(c.v, c.unit); got != c.want {
			t.Errorf("fmtValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

func TestProcParsers(t *testing.T) {
	// The command name holds spaces and a ')' on purpose.
	stat := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 0 0"
	got, ok := parseStatCPU(stat)
	if !ok || got != 3.0 {
		t.Errorf("parseStatCPU = %v, %v; want 3s (300 ticks), true", got, ok)
	}
	if _, ok := parseStatCPU("garbage"); ok {
		t.Error("parseStatCPU(garbage) ok")
	}
	status := "Name:\tmecha\nVmPeak:\t  999 kB\nVmRSS:\t   20000 kB\nThreads:\t7\n"
	rss, ok := parseVmRSS(status)
	if !ok || rss != 20.48 {
		t.Errorf("parseVmRSS = %v, %v; want 20.48 MB, true", rss, ok)
	}
	busy, ok := parseProcStatBusy("cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
	if !ok || busy != 1.6 {
		t.Errorf("parseProcStatBusy = %v, %v; want 1.6s (160 ticks), true", busy, ok)
	}
	if _, ok := parseProcStatBusy("intr 1 2 3"); ok {
		t.Error("parseProcStatBusy without a cpu line ok")
	}
	if _, ok := parseVmRSS("Name:\tx\n"); ok {
		t.Error("parseVmRSS without VmRSS ok")
	}
	if runtime.GOOS == "linux" {
		if s, ok := procCPUSeconds(os.Getpid()); !ok || s < 0 {
			t.Errorf("procCPUSeconds(self) = %v, %v", s, ok)
		}
		if m, ok := procRSSMB(os.Getpid()); !ok || m <= 0 {
			t.Errorf("procRSSMB(self) = %v, %v", m, ok)
		}
	}
}

func TestLoadFlagsValidate(t *testing.T) {
	good := loadFlags{Concurrency: 16, Duration: 10 * time.Second, Warmup: time.Second, ValueSize: 256, Keys: 64}
	cases := []struct {
		name    string
		mutate  func(*loadFlags)
		wantErr string
	}{
		{"defaults", func(*loadFlags) {}, ""},
		{"requests instead of duration", func(f *loadFlags) { f.Duration, f.Requests = 0, 1000 }, ""},
		{"no warm-up", func(f *loadFlags) { f.Warmup = 0 }, ""},
		{"zero concurrency", func(f *loadFlags) { f.Concurrency = 0 }, "--concurrency 0"},
		{"no duration nor requests", func(f *loadFlags) { f.Duration = 0 }, "--duration"},
		{"negative requests", func(f *loadFlags) { f.Requests = -1 }, "--requests -1"},
		{"negative warm-up", func(f *loadFlags) { f.Warmup = -time.Second }, "--warmup"},
		{"no keys", func(f *loadFlags) { f.Keys = 0 }, "--keys 0"},
		{"value too small for JSON", func(f *loadFlags) { f.ValueSize = 1 }, "--value-size 1"},
		{"value too large", func(f *loadFlags) { f.ValueSize = 2 << 20 }, "--value-size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := good
			c.mutate(&f)
			err := f.validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("validate() = %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("validate() = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

func TestOtherValidation(t *testing.T) {
	st := startupOptions{Binary: "mecha", Runs: 10, Idle: 2 * time.Second, Poll: time.Millisecond}
	if err := st.validate(); err != nil {
		t.Errorf("startup defaults: %v", err)
	}
	st.Runs, st.Poll = 0, 0
	if err := st.validate(); err == nil || !strings.Contains(err.Error(), "--runs 0") || !strings.Contains(err.Error(), "--poll-interval") {
		t.Errorf("startup validate() = %v, want --runs and --poll-interval errors", err)
	}
	for _, c := range []struct {
		f    selfFlags
		want string
	}{
		{selfFlags{}, ""},
		{selfFlags{Self: true, SelfStore: "in-memory"}, ""},
		{selfFlags{Self: true, SelfStore: "redis", RedisAddr: "127.0.0.1:6379"}, ""},
		{selfFlags{Self: true, SelfStore: "redis"}, "needs --redis-addr"},
		{selfFlags{Self: true, SelfStore: "sqlite"}, "must be in-memory or redis"},
	} {
		err := c.f.validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v.validate() = %v, want %q", c.f, err, c.want)
		}
	}
}

func TestCommandRejectsBadFlags(t *testing.T) {
	cmd := Command()
	cmd.SetArgs([]string{"state-http", "--concurrency", "0", "--duration", "0"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--concurrency 0") || !strings.Contains(err.Error(), "--duration") {
		t.Fatalf("Execute() = %v, want validation errors", err)
	}
}

func TestValues(t *testing.T) {
	for _, n := range []int{2, 3, 256} {
		v := jsonValue(n)
		var s string
		if len(v) != n || json.Unmarshal(v, &s) != nil {
			t.Errorf("jsonValue(%d) = %q: want a %d-byte JSON string", n, v, n)
		}
		if r := rawValue(n); len(r) != n {
			t.Errorf("rawValue(%d) has %d bytes", n, len(r))
		}
	}
}

func TestComponentYAMLLoads(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.yaml": componentYAML("mem", "state.in-memory"),
		"b.yaml": componentYAML("red", "state.redis", "redisHost", "127.0.0.1:6379"),
	}
	for name, doc := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := config.Load([]string{dir}, config.LoadOptions{AppID: "x"})
	if len(res.Errors) > 0 || len(res.Components) != 2 {
		t.Fatalf("Load: %d components, errors %v; want 2 and none", len(res.Components), res.Errors)
	}
	for _, c := range res.Components {
		if c.Name == "red" && (len(c.Spec.Metadata) != 1 || c.Spec.Metadata[0].Name != "redisHost") {
			t.Errorf("red metadata = %+v", c.Spec.Metadata)
		}
	}
}

func TestRunLoadRequests(t *testing.T) {
	var calls atomic.Int64
	o := loadOptions{Concurrency: 4, Requests: 100, Keys: 3}
	res, err := runLoad(context.Background(), o, func(id int) (pairFunc, error) {
		return func(_ context.Context, k int) error {
			if k < 0 || k >= 3 {
				return fmt.Errorf("key %d out of range", k)
			}
			calls.Add(1)
			return nil
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Latencies) != 100 || res.Total != 100 || calls.Load() != 100 || res.Errors != 0 {
		t.Errorf("measured %d, total %d, calls %d, errors %d; want 100, 100, 100, 0", len(res.Latencies), res.Total, calls.Load(), res.Errors)
	}
	for i := 1; i < len(res.Latencies); i++ {
		if res.Latencies[i] < res.Latencies[i-1] {
			t.Fatal("latencies are not sorted")
		}
	}
}

func TestRunLoadDurationAndWarmup(t *testing.T) {
	o := loadOptions{Concurrency: 2, Duration: 150 * time.Millisecond, Warmup: 50 * time.Millisecond, Keys: 1}
	res, err := runLoad(context.Background(), o, func(int) (pairFunc, error) {
		return func(context.Context, int) error { time.Sleep(time.Millisecond); return nil }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Elapsed < 150*time.Millisecond || res.Elapsed > time.Second {
		t.Errorf("elapsed %v, want about 150ms", res.Elapsed)
	}
	if len(res.Latencies) == 0 || res.Total <= len(res.Latencies) {
		t.Errorf("measured %d of %d: want some measured and some warm-up pairs", len(res.Latencies), res.Total)
	}
	if p := res.PairsPerSec(); p <= 0 || p > 4000 {
		t.Errorf("pairs/s = %v for 2 workers sleeping 1ms", p)
	}
}

func TestRunLoadFailures(t *testing.T) {
	boom := errors.New("boom")
	o := loadOptions{Concurrency: 2, Duration: 5 * time.Second, Keys: 1}
	_, err := runLoad(context.Background(), o, func(int) (pairFunc, error) {
		return func(context.Context, int) error { return boom }, nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "consecutive errors") {
		t.Errorf("always failing: %v, want a consecutive-errors error wrapping boom", err)
	}

	// Occasional errors are counted, not fatal.
	var n atomic.Int64
	res, err := runLoad(context.Background(), loadOptions{Concurrency: 1, Requests: 50, Keys: 1}, func(int) (pairFunc, error) {
		return func(context.Context, int) error {
			if n.Add(1)%10 == 0 {
				return boom
			}
			return nil
		}, nil
	})
	// --requests counts attempts: failed pairs use up requests too.
	if err != nil || res.Errors != 5 || res.FirstError != "boom" || len(res.Latencies) != 45 {
		t.Errorf("occasional errors: %v, %+v", err, res)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := runLoad(ctx, o, func(int) (pairFunc, error) {
		return func(context.Context, int) error { return nil }, nil
	}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

func sampleReport() *Report {
	r := &Report{
		Machine: Machine{CPUs: 2, GOMAXPROCS: 2, OS: "linux", Arch: "amd64", Go: "go1.26", LoadAvg: []string{"0.10 0.20 0.30"}},
		Load:    LoadSettings{Concurrency: 16, DurationSec: 10, WarmupSec: 1, ValueSize: 256, KeysPerWorker: 64, GRPCConns: 1},
		Results: []Result{
			{Scenario: scenarioHTTP, Target: targetInMemory, PairsPerSec: 15000, P50Ms: 0.9, P90Ms: 1.5, P99Ms: 3, GenCPUUs: 50, SidecarCPUUs: 60, SidecarRSSMB: 25},
			{Scenario: scenarioGRPC, Target: targetInMemory, PairsPerSec: 12000, P50Ms: 1.1, P90Ms: 2, P99Ms: 4},
			{Scenario: scenarioHTTP, Target: targetRedis, PairsPerSec: 6500, P50Ms: 2.2, P99Ms: 8},
			{Scenario: scenarioGRPC, Target: targetRedis, PairsPerSec: 5500, P50Ms: 2.6, P99Ms: 9},
			{Scenario: scenarioDirect, Target: targetDirectStore, PairsPerSec: 9000, P50Ms: 1.5, P99Ms: 6},
			{Scenario: scenarioDirect, Target: targetDirectRaw, PairsPerSec: 10000, P50Ms: 1.0, P99Ms: 5, Errors: 2, FirstError: "oops"},
		},
		Startup: &Startup{HealthyMs: []float64{10, 12, 11}, IdleRSSMB: []float64{45, 44, 46}, IdleSec: 2, Resources: "state.in-memory"},
	}
	r.Startup.summarize()
	r.Comparisons = compare(r)
	return r
}

func TestCompare(t *testing.T) {
	r := sampleReport()
	got := map[string]Comparison{}
	for _, c := range r.Comparisons {
		got[c.Name] = c
	}
	want := []struct {
		name  string
		value float64
		met   string // "yes", "no" or "" (no target)
	}{
		{"HTTP in-memory vs daprd 1.18", 15000 / daprdHTTPPairs, "yes"},
		{"gRPC in-memory vs daprd 1.18", 12000 / daprdGRPCPairs, "no"},
		{"HTTP via sidecar on Redis vs raw go-redis", 65, "yes"},
		{"gRPC via sidecar on Redis vs raw go-redis", 55, "no"},
		{"HTTP via sidecar on Redis vs direct state.redis", 100 * 6500 / 9000.0, ""},
		{"gRPC sidecar latency added at p50", 1.1, ""},
		{"exec -> healthy (p50)", 11, "yes"},
		{"idle RSS (p50)", 45, "no"},
	}
	if len(r.Comparisons) != 12 {
		t.Errorf("%d comparisons, want 12", len(r.Comparisons))
	}
	for _, w := range want {
		c, ok := got[w.name]
		if !ok {
			t.Errorf("missing comparison %q", w.name)
			continue
		}
		if d := c.Value - w.value; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", w.name, c.Value, w.value)
		}
		var m string
		if c.Met != nil {
			m = map[bool]string{true: "yes", false: "no"}[*c.Met]
		}
		if m != w.met {
			t.Errorf("%s met = %q, want %q", w.name, m, w.met)
		}
	}
	// Without the Redis rows only the in-memory and startup comparisons remain.
	partial := &Report{Results: r.Results[:2]}
	if n := len(compare(partial)); n != 2 {
		t.Errorf("in-memory only: %d comparisons, want 2", n)
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := writeText(&b, sampleReport(), "run 1/1"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"== run 1/1",
		"machine: 2 CPUs (GOMAXPROCS 2), linux/amd64, go1.26, load avg at start: 0.10 0.20 0.30",
		"load generator runs on the same machine",
		"16 workers, 64 keys each; 10s measured after 1s warm-up",
		"first error in redis-direct raw: oops",
		"startup (3 runs, state.in-memory): exec -> healthy p50 11.00 ms",
		"idle RSS after 2s p50 45.0 MB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Rows are aligned in columns: every row of the results table has
	// PAIRS/S starting at the same offset.
	lines := strings.Split(out, "\n")
	col := -1
	for _, l := range lines {
		if strings.HasPrefix(l, "SCENARIO") {
			col = strings.Index(l, "PAIRS/S")
			continue
		}
		if col > 0 && strings.HasPrefix(l, "state-http    in-memory") {
			if got := strings.Index(l, "15,000"); got != col {
				t.Errorf("PAIRS/S column at %d, value at %d:\n%s", col, got, out)
			}
		}
	}
	if col < 0 {
		t.Fatalf("no results header:\n%s", out)
	}
	for _, want := range []string{"HTTP in-memory vs daprd 1.18", "2.17x", "met", "MISSED", "idle RSS (p50)"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparisons lack %q:\n%s", want, out)
		}
	}
}

func TestMedianReport(t *testing.T) {
	a, b, c := sampleReport(), sampleReport(), sampleReport()
	b.Results[0].PairsPerSec, c.Results[0].PairsPerSec = 9000, 20000
	b.Startup.HealthyMs = []float64{100}
	b.Startup.summarize()
	m := medianReport([]*Report{a, b, c})
	if m.Runs != 3 || len(m.Results) != len(a.Results) {
		t.Fatalf("runs %d, results %d", m.Runs, len(m.Results))
	}
	if m.Results[0].PairsPerSec != 15000 {
		t.Errorf("median pairs/s = %v, want 15000", m.Results[0].PairsPerSec)
	}
	if m.Results[5].Errors != 6 {
		t.Errorf("errors = %d, want 6 (summed)", m.Results[5].Errors)
	}
	if m.Startup.Runs != 7 || m.Startup.HealthyP50Ms != 11 {
		t.Errorf("startup pooled: runs %d p50 %v, want 7 and 11", m.Startup.Runs, m.Startup.HealthyP50Ms)
	}
	if len(m.Machine.LoadAvg) != 3 || len(m.Comparisons) != len(a.Comparisons) {
		t.Errorf("load avgs %v, comparisons %d", m.Machine.LoadAvg, len(m.Comparisons))
	}
}

// quick is a short load for smoke tests.
var quick = loadOptions{Concurrency: 4, Duration: 500 * time.Millisecond, Warmup: 200 * time.Millisecond, Keys: 8}

func TestSmokeAgainstInProcessSidecar(t *testing.T) {
	s := mechatest.Start(t, nil, mechatest.InMemory)
	ctx := context.Background()
	client := newHTTPClient(quick.Concurrency)
	defer client.CloseIdleConnections()
	r, err := measure(ctx, scenarioHTTP, "mechatest", "", quick, pids{}, httpWorkers(client, s.URL, "statestore", "smoke-", quick.Keys, 256))
	if err != nil {
		t.Fatal(err)
	}
	if r.Pairs == 0 || r.Errors != 0 || r.PairsPerSec <= 0 || r.P50Ms <= 0 || r.P50Ms > r.P99Ms {
		t.Errorf("state-http: %+v", r)
	}
	// The value round-trips as saved.
	got := s.Do(t, "GET", "/v1.0/state/statestore/smoke-w0-0", nil)
	if got.Status != 200 || !bytes.Equal(got.Body, jsonValue(256)) {
		t.Errorf("GET = %d %q", got.Status, got.Body)
	}

	conns, err := dialGRPC(s.RT.GRPCAddr(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConns(conns)
	r, err = measure(ctx, scenarioGRPC, "mechatest", "", quick, pids{}, grpcWorkers(conns, "statestore", "smoke-", quick.Keys, 256))
	if err != nil {
		t.Fatal(err)
	}
	if r.Pairs == 0 || r.Errors != 0 {
		t.Errorf("state-grpc: %+v", r)
	}

	// A store that does not exist fails fast with the server's message.
	_, err = measure(ctx, scenarioHTTP, "mechatest", "", quick, pids{}, httpWorkers(client, s.URL, "nope", "", quick.Keys, 256))
	if err == nil || !strings.Contains(err.Error(), "ERR_STATE_STORE_NOT_FOUND") {
		t.Errorf("unknown store: %v", err)
	}
}

func TestCommandAgainstInProcessSidecar(t *testing.T) {
	s := mechatest.Start(t, nil, mechatest.InMemory)
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"state-grpc", "--grpc-addr", s.RT.GRPCAddr(), "-c", "2", "-n", "200", "--warmup", "100ms", "--json"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decoding %s: %v", out.Bytes(), err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Pairs != 200 || rep.Results[0].Scenario != scenarioGRPC || rep.Load.Requests != 200 {
		t.Errorf("report = %+v", rep)
	}
}

// runBenchAsUser runs `mecha bench` with args as a user would, with this
// test binary standing in for mecha (every process it starts is a child
// running the real sidecar, app, ...), and returns stdout and the progress
// written to stderr; it fails the test when the command fails.
func runBenchAsUser(t *testing.T, args ...string) (out, progress string) {
	t.Helper()
	asSidecar(t)
	cmd := Command()
	var o, p bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&p)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, p.String())
	}
	return o.String(), p.String()
}

// checkChildrenGone checks that progress names want started processes
// ("pid N") and, on Linux, that none of them exists any more.
func checkChildrenGone(t *testing.T, progress string, want int) {
	t.Helper()
	pids := regexp.MustCompile(`pid (\d+)`).FindAllStringSubmatch(progress, -1)
	if len(pids) != want {
		t.Fatalf("started %d processes, want %d:\n%s", len(pids), want, progress)
	}
	if runtime.GOOS != "linux" {
		return
	}
	for _, m := range pids {
		if _, err := os.Stat("/proc/" + m[1]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pid %s still exists: %v", m[1], err)
		}
	}
}

// asSidecar makes children exec'ed from os.Executable() run the sidecar.
func asSidecar(t *testing.T) string {
	t.Setenv(sidecarEnv, "1")
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestSidecarProcessStopsByPID(t *testing.T) {
	bin := asSidecar(t)
	tmp := t.TempDir()
	dir, err := writeResources(tmp, "mem", componentYAML("statestore", "state.in-memory"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := startSidecar(sidecarSpec{Name: "t", Binary: bin, AppID: "bench-test", ResourcesDir: dir, LogDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	d, err := p.waitHealthy(context.Background(), time.Millisecond, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Errorf("healthy after %v", d)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	default:
		t.Fatal("Stop returned before the process exited")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID())); runtime.GOOS == "linux" && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid %d still exists after Stop: %v", p.PID(), err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartupFailsWhenTheSidecarExits(t *testing.T) {
	bin := asSidecar(t)
	tmp := t.TempDir()
	// An app id with a space is rejected: the process exits at once.
	p, err := startSidecar(sidecarSpec{Name: "bad", Binary: bin, AppID: "bad id", ResourcesDir: tmp, LogDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	_, err = p.waitHealthy(context.Background(), time.Millisecond, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before it was healthy") || !strings.Contains(err.Error(), "app-id") {
		t.Errorf("waitHealthy = %v, want an early exit with the log", err)
	}
}

func TestAllSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several sidecar processes")
	}
	bin := asSidecar(t)
	redisAddr := os.Getenv("REDIS_ADDR")
	o := allOptions{
		Load: quick, ValueSize: 256, Conns: 1, Store: "statestore", RedisAddr: redisAddr,
		Startup: startupOptions{Binary: bin, Runs: 2, Idle: 50 * time.Millisecond, Poll: time.Millisecond},
	}
	var progress bytes.Buffer
	rep, err := runAll(context.Background(), o, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	want := 2
	if redisAddr != "" {
		want = 6
	}
	if len(rep.Results) != want {
		t.Fatalf("%d results, want %d: %+v", len(rep.Results), want, rep.Results)
	}
	for _, r := range rep.Results {
		if r.Pairs == 0 || r.Errors != 0 {
			t.Errorf("%s %s: %+v", r.Scenario, r.Target, r)
		}
		if runtime.GOOS == "linux" && r.Scenario != scenarioDirect && (r.SidecarCPUUs <= 0 || r.SidecarRSSMB <= 0) {
			t.Errorf("%s %s: no sidecar CPU/RSS: %+v", r.Scenario, r.Target, r)
		}
	}
	if rep.Startup == nil || rep.Startup.Runs != 2 || rep.Startup.HealthyP50Ms <= 0 {
		t.Errorf("startup = %+v", rep.Startup)
	}
	if redisAddr != "" {
		c, err := newRawRedis(context.Background(), redisAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		keys, err := c.Keys(context.Background(), fmt.Sprintf("mecha-bench-%d-*", os.Getpid())).Result()
		if err != nil || len(keys) != 0 {
			t.Errorf("benchmark keys left in Redis: %d (%v)", len(keys), err)
		}
	}
	var b bytes.Buffer
	if err := printReport(&b, false, rep, nil); err != nil || !strings.Contains(b.String(), "exec -> healthy (p50)") {
		t.Errorf("printReport: %v\n%s", err, b.String())
	}
}

func TestSelfCommandStopsItsSidecarAndDeletesItsKeys(t *testing.T) {
	asSidecar(t)
	stores := []string{"in-memory"}
	if os.Getenv("REDIS_ADDR") != "" {
		stores = append(stores, "redis")
	}
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			cmd := Command()
			var out, progress bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&progress)
			cmd.SetArgs([]string{"state-http", "--self", "--self-store", store, "-c", "2", "--keys", "4", "-d", "300ms", "--warmup", "100ms", "--json"})
			if err := cmd.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("%v\n%s", err, progress.String())
			}
			var rep Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != 1 || rep.Results[0].Target != store || rep.Results[0].Pairs == 0 {
				t.Fatalf("report = %+v", rep)
			}
			var pid int
			if _, err := fmt.Sscanf(progress.String(), "started sidecar pid %d", &pid); err != nil {
				t.Fatalf("no pid in %q: %v", progress.String(), err)
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); runtime.GOOS == "linux" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sidecar pid %d still exists: %v", pid, err)
			}
			if store == "redis" {
				c, err := newRawRedis(context.Background(), os.Getenv("REDIS_ADDR"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				keys, err := c.Keys(context.Background(), fmt.Sprintf("mecha-bench-%d||*", os.Getpid())).Result()
				if err != nil || len(keys) != 0 {
					t.Errorf("%d benchmark keys left in Redis (%v)", len(keys), err)
				}
			}
		})
	}
}
