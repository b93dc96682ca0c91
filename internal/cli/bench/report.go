package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Report is the outcome of one bench invocation (or the median of several).
type Report struct {
	Machine     Machine      `json:"machine"`
	Load        LoadSettings `json:"load"`
	Results     []Result     `json:"results,omitempty"`
	Startup     *Startup     `json:"startup,omitempty"`
	Comparisons []Comparison `json:"comparisons,omitempty"`
	// Runs is the number of runs this report is the median of (0 or 1: a
	// single run).
	Runs int `json:"runs,omitempty"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Go         string `json:"go"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute averages at the start
	// of each run.
	LoadAvg []string `json:"load_avg,omitempty"`
}

func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if l := loadAvg(); l != "" {
		m.LoadAvg = []string{l}
	}
	return m
}

// LoadSettings are the load parameters shared by the throughput scenarios.
type LoadSettings struct {
	Concurrency   int     `json:"concurrency"`
	DurationSec   float64 `json:"duration_s,omitempty"`
	Requests      int     `json:"requests,omitempty"`
	WarmupSec     float64 `json:"warmup_s"`
	ValueSize     int     `json:"value_bytes"`
	KeysPerWorker int     `json:"keys_per_worker"`
	GRPCConns     int     `json:"grpc_conns,omitempty"`
}

// Result is one throughput scenario. One pair is a save then a get.
type Result struct {
	Scenario string `json:"scenario"`
	// Target is what was measured: in-memory, redis, store, raw, or an
	// address.
	Target string `json:"target"`
	// Detail says how, for the reader.
	Detail      string  `json:"detail,omitempty"`
	Pairs       int     `json:"pairs"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	ElapsedSec  float64 `json:"elapsed_s"`
	PairsPerSec float64 `json:"pairs_per_s"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	// CPU microseconds per pair (warm-up included) spent by each process;
	// 0 when unknown.
	GenCPUUs     float64 `json:"loadgen_cpu_us_per_pair,omitempty"`
	SidecarCPUUs float64 `json:"sidecar_cpu_us_per_pair,omitempty"`
	RedisCPUUs   float64 `json:"redis_cpu_us_per_pair,omitempty"`
	// OtherCores is the CPU the rest of the machine used meanwhile (other
	// processes, and kernel work not charged to the three above), in cores:
	// a noisy neighbour shows here.
	OtherCores float64 `json:"other_cpu_cores"`
	// SidecarRSSMB is the sidecar's resident memory right after the run.
	SidecarRSSMB float64 `json:"sidecar_rss_mb,omitempty"`
}

// Startup is the start-up scenario.
type Startup struct {
	Runs int `json:"runs"`
	// HealthyMs are exec → first 204 from /v1.0/healthz, one per run.
	HealthyMs    []float64 `json:"healthy_ms"`
	HealthyP50Ms float64   `json:"healthy_p50_ms"`
	HealthyP90Ms float64   `json:"healthy_p90_ms"`
	HealthyMinMs float64   `json:"healthy_min_ms"`
	HealthyMaxMs float64   `json:"healthy_max_ms"`
	// IdleRSSMB is VmRSS after the sidecar sat idle, one per run.
	IdleRSSMB    []float64 `json:"idle_rss_mb,omitempty"`
	IdleRSSP50MB float64   `json:"idle_rss_p50_mb,omitempty"`
	IdleRSSMaxMB float64   `json:"idle_rss_max_mb,omitempty"`
	IdleSec      float64   `json:"idle_s"`
	Resources    string    `json:"resources"`
}

func (s *Startup) summarize() {
	s.Runs = len(s.HealthyMs)
	s.HealthyP50Ms = median(s.HealthyMs)
	s.HealthyP90Ms = percentileF(s.HealthyMs, 90)
	s.HealthyMinMs = percentileF(s.HealthyMs, 0)
	s.HealthyMaxMs = percentileF(s.HealthyMs, 100)
	s.IdleRSSP50MB = median(s.IdleRSSMB)
	s.IdleRSSMaxMB = percentileF(s.IdleRSSMB, 100)
}

// Comparison is one of the ratios that matter, with its reference and target.
type Comparison struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Unit is "x" (times the reference), "%", "ms" or "MB".
	Unit      string `json:"unit"`
	Reference string `json:"reference,omitempty"`
	Target    string `json:"target,omitempty"`
	// Met is nil when there is no target.
	Met *bool `json:"met,omitempty"`
}

// daprd 1.18's figures on a 2-core machine, from the issue that set Mecha's
// targets, and the targets themselves.
const (
	daprdHTTPPairs = 6900.0
	daprdGRPCPairs = 8400.0
	daprdHealthyMs = 71.0
	daprdIdleRSSMB = 163.0

	targetVsDaprd     = 2.0  // ≥2× daprd's in-memory throughput
	targetRedisShare  = 60.0 // ≥60% of raw go-redis throughput
	targetHealthyMs   = 30.0 // ≤30 ms exec → healthy
	targetIdleRSSMB   = 40.0 // ≤40 MB idle RSS
	scenarioHTTP      = "state-http"
	scenarioGRPC      = "state-grpc"
	scenarioDirect    = "redis-direct"
	targetInMemory    = "in-memory"
	targetRedis       = "redis"
	targetDirectStore = "store"
	targetDirectRaw   = "raw"
)

// find returns the result for scenario and target, or nil.
func (r *Report) find(scenario, target string) *Result {
	for i := range r.Results {
		if r.Results[i].Scenario == scenario && r.Results[i].Target == target {
			return &r.Results[i]
		}
	}
	return nil
}

func met(ok bool) *bool { return &ok }

// compare computes the comparisons the results allow.
func compare(r *Report) []Comparison {
	var out []Comparison
	for _, c := range []struct {
		scenario, label string
		daprd           float64
	}{{scenarioHTTP, "HTTP", daprdHTTPPairs}, {scenarioGRPC, "gRPC", daprdGRPCPairs}} {
		if m := r.find(c.scenario, targetInMemory); m != nil {
			v := m.PairsPerSec / c.daprd
			out = append(out, Comparison{
				Name: c.label + " in-memory vs daprd 1.18", Value: v, Unit: "x",
				Reference: "daprd " + thousands(c.daprd) + " pairs/s",
				Target:    fmt.Sprintf(">= %gx", targetVsDaprd), Met: met(v >= targetVsDaprd),
			})
		}
	}
	raw, store := r.find(scenarioDirect, targetDirectRaw), r.find(scenarioDirect, targetDirectStore)
	for _, c := range []struct{ scenario, label string }{{scenarioHTTP, "HTTP"}, {scenarioGRPC, "gRPC"}} {
		side := r.find(c.scenario, targetRedis)
		if side == nil {
			continue
		}
		if raw != nil && raw.PairsPerSec > 0 {
			v := 100 * side.PairsPerSec / raw.PairsPerSec
			out = append(out, Comparison{
				Name: c.label + " via sidecar on Redis vs raw go-redis", Value: v, Unit: "%",
				Reference: "raw " + thousands(raw.PairsPerSec) + " pairs/s",
				Target:    fmt.Sprintf(">= %g%%", targetRedisShare), Met: met(v >= targetRedisShare),
			})
		}
		if store != nil && store.PairsPerSec > 0 {
			out = append(out,
				Comparison{
					Name: c.label + " via sidecar on Redis vs direct state.redis", Value: 100 * side.PairsPerSec / store.PairsPerSec, Unit: "%",
					Reference: "direct " + thousands(store.PairsPerSec) + " pairs/s",
				},
				Comparison{
					Name: c.label + " sidecar latency added at p50", Value: side.P50Ms - store.P50Ms, Unit: "ms",
					Reference: fmt.Sprintf("direct p50 %s ms", fmtMs(store.P50Ms)),
				},
				Comparison{
					Name: c.label + " sidecar latency added at p99", Value: side.P99Ms - store.P99Ms, Unit: "ms",
					Reference: fmt.Sprintf("direct p99 %s ms", fmtMs(store.P99Ms)),
				})
		}
	}
	if s := r.Startup; s != nil && s.Runs > 0 {
		out = append(out, Comparison{
			Name: "exec -> healthy (p50)", Value: s.HealthyP50Ms, Unit: "ms",
			Reference: fmt.Sprintf("daprd %g ms", daprdHealthyMs),
			Target:    fmt.Sprintf("<= %g ms", targetHealthyMs), Met: met(s.HealthyP50Ms <= targetHealthyMs),
		})
		if len(s.IdleRSSMB) > 0 {
			out = append(out, Comparison{
				Name: "idle RSS (p50)", Value: s.IdleRSSP50MB, Unit: "MB",
				Reference: fmt.Sprintf("daprd %g MB", daprdIdleRSSMB),
				Target:    fmt.Sprintf("<= %g MB", targetIdleRSSMB), Met: met(s.IdleRSSP50MB <= targetIdleRSSMB),
			})
		}
	}
	return out
}

// medianReport merges reports of repeated runs: every figure of a scenario
// is the median of that figure over the runs (errors are summed), start-up
// samples are pooled, and the comparisons are recomputed.
func medianReport(runs []*Report) *Report {
	if len(runs) == 0 {
		return &Report{}
	}
	out := &Report{Machine: runs[0].Machine, Load: runs[0].Load, Runs: len(runs)}
	out.Machine.LoadAvg = nil
	for _, r := range runs {
		out.Machine.LoadAvg = append(out.Machine.LoadAvg, r.Machine.LoadAvg...)
	}
	for _, first := range runs[0].Results {
		var same []Result
		for _, r := range runs {
			if x := r.find(first.Scenario, first.Target); x != nil {
				same = append(same, *x)
			}
		}
		m := Result{Scenario: first.Scenario, Target: first.Target, Detail: first.Detail}
		pick := func(f func(Result) float64) float64 {
			vs := make([]float64, len(same))
			for i, x := range same {
				vs[i] = f(x)
			}
			return median(vs)
		}
		m.Pairs = int(math.Round(pick(func(x Result) float64 { return float64(x.Pairs) })))
		m.ElapsedSec = pick(func(x Result) float64 { return x.ElapsedSec })
		m.PairsPerSec = pick(func(x Result) float64 { return x.PairsPerSec })
		m.P50Ms = pick(func(x Result) float64 { return x.P50Ms })
		m.P90Ms = pick(func(x Result) float64 { return x.P90Ms })
		m.P99Ms = pick(func(x Result) float64 { return x.P99Ms })
		m.MaxMs = pick(func(x Result) float64 { return x.MaxMs })
		m.GenCPUUs = pick(func(x Result) float64 { return x.GenCPUUs })
		m.SidecarCPUUs = pick(func(x Result) float64 { return x.SidecarCPUUs })
		m.RedisCPUUs = pick(func(x Result) float64 { return x.RedisCPUUs })
		m.SidecarRSSMB = pick(func(x Result) float64 { return x.SidecarRSSMB })
		m.OtherCores = pick(func(x Result) float64 { return x.OtherCores })
		for _, x := range same {
			m.Errors += x.Errors
			if m.FirstError == "" {
				m.FirstError = x.FirstError
			}
		}
		out.Results = append(out.Results, m)
	}
	var st *Startup
	for _, r := range runs {
		if r.Startup == nil {
			continue
		}
		if st == nil {
			st = &Startup{IdleSec: r.Startup.IdleSec, Resources: r.Startup.Resources}
		}
		st.HealthyMs = append(st.HealthyMs, r.Startup.HealthyMs...)
		st.IdleRSSMB = append(st.IdleRSSMB, r.Startup.IdleRSSMB...)
	}
	if st != nil {
		st.summarize()
		out.Startup = st
	}
	out.Comparisons = compare(out)
	return out
}

// writeJSON writes v indented.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeText writes the report as plain-text tables.
func writeText(w io.Writer, r *Report, title string) error {
	var b strings.Builder
	if title != "" {
		fmt.Fprintf(&b, "== %s\n", title)
	}
	m := r.Machine
	fmt.Fprintf(&b, "machine: %d CPUs (GOMAXPROCS %d), %s/%s, %s", m.CPUs, m.GOMAXPROCS, m.OS, m.Arch, m.Go)
	if len(m.LoadAvg) > 0 {
		fmt.Fprintf(&b, ", load avg at start: %s", strings.Join(m.LoadAvg, " | "))
	}
	b.WriteString("\nnote: the load generator runs on the same machine as the sidecar (and Redis): they share these CPUs;\n" +
		"      OTHER CPU is what the rest of the machine used meanwhile (other processes, uncharged kernel work)\n")
	if len(r.Results) > 0 {
		l := r.Load
		run := fmt.Sprintf("%gs measured after %gs warm-up", l.DurationSec, l.WarmupSec)
		if l.Requests > 0 {
			run = fmt.Sprintf("%d pairs measured after %gs warm-up", l.Requests, l.WarmupSec)
		}
		fmt.Fprintf(&b, "load: one op = save + get of a %d-byte value; %d workers, %d keys each; %s", l.ValueSize, l.Concurrency, l.KeysPerWorker, run)
		if l.GRPCConns > 0 {
			fmt.Fprintf(&b, "; gRPC conns %d", l.GRPCConns)
		}
		b.WriteString("\n")
	}
	if r.Runs > 1 {
		fmt.Fprintf(&b, "figures: median of %d runs (errors summed, start-up samples pooled)\n", r.Runs)
	}
	b.WriteString("\n")
	if len(r.Results) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SCENARIO\tTARGET\tPAIRS/S\tP50 ms\tP90 ms\tP99 ms\tERRORS\tCPU us/pair gen|sidecar|redis\tOTHER CPU\tSIDECAR RSS\tDETAIL")
		for _, x := range r.Results {
			rss := "-"
			if x.SidecarRSSMB > 0 {
				rss = fmt.Sprintf("%.1f MB", x.SidecarRSSMB)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s|%s|%s\t%.2f cores\t%s\t%s\n",
				x.Scenario, x.Target, thousands(x.PairsPerSec), fmtMs(x.P50Ms), fmtMs(x.P90Ms), fmtMs(x.P99Ms), x.Errors,
				fmtCPU(x.GenCPUUs), fmtCPU(x.SidecarCPUUs), fmtCPU(x.RedisCPUUs), x.OtherCores, rss, x.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, x := range r.Results {
			if x.FirstError != "" {
				fmt.Fprintf(&b, "first error in %s %s: %s\n", x.Scenario, x.Target, x.FirstError)
			}
		}
	}
	if s := r.Startup; s != nil && s.Runs > 0 {
		if len(r.Results) > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "startup (%d runs, %s): exec -> healthy p50 %s ms, p90 %s ms, min %s ms, max %s ms",
			s.Runs, s.Resources, fmtMs(s.HealthyP50Ms), fmtMs(s.HealthyP90Ms), fmtMs(s.HealthyMinMs), fmtMs(s.HealthyMaxMs))
		if len(s.IdleRSSMB) > 0 {
			fmt.Fprintf(&b, "; idle RSS after %gs p50 %.1f MB, max %.1f MB", s.IdleSec, s.IdleRSSP50MB, s.IdleRSSMaxMB)
		}
		b.WriteString("\n")
	}
	if len(r.Comparisons) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "COMPARISON\tVALUE\tREFERENCE\tTARGET\tRESULT")
		for _, c := range r.Comparisons {
			res := "-"
			if c.Met != nil {
				res = "met"
				if !*c.Met {
					res = "MISSED"
				}
			}
			target := c.Target
			if target == "" {
				target = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, fmtValue(c.Value, c.Unit), c.Reference, target, res)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// thousands formats v rounded to an integer with comma separators.
func thousands(v float64) string {
	n := int64(math.Round(v))
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtMs formats milliseconds with three significant decimals below 1 ms.
func fmtMs(v float64) string {
	if math.Abs(v) < 1 {
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func fmtCPU(us float64) string {
	if us <= 0 {
		return "-"
	}
	return strconv.FormatFloat(us, 'f', 0, 64)
}

func fmtValue(v float64, unit string) string {
	switch unit {
	case "x":
		return fmt.Sprintf("%.2fx", v)
	case "%":
		return fmt.Sprintf("%.0f%%", v)
	case "ms":
		return fmtMs(v) + " ms"
	case "MB":
		return fmt.Sprintf("%.1f MB", v)
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " " + unit
}
