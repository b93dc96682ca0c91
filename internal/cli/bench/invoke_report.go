package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// InvokeReport is the outcome of the invocation scenarios (or the median
// of several runs), or of the actor scenarios (Kind reportActors).
type InvokeReport struct {
	// Kind is "" for service invocation, reportActors for actor calls.
	Kind        string         `json:"kind,omitempty"`
	Machine     Machine        `json:"machine"`
	Settings    InvokeSettings `json:"settings"`
	Results     []InvokeResult `json:"results"`
	Comparisons []Comparison   `json:"comparisons,omitempty"`
	// SidecarRSSMB is the largest sidecar RSS seen after the runs.
	SidecarRSSMB float64 `json:"sidecar_rss_mb,omitempty"`
	// ActiveActors (actors only) is the number of actors sidecar B
	// reported active after the runs: the warm ones plus one per
	// successful activation.
	ActiveActors int `json:"active_actors_b,omitempty"`
	Runs         int `json:"runs,omitempty"`
}

// compare computes the comparisons of the report's kind.
func (r *InvokeReport) compare() []Comparison {
	if r.Kind == reportActors {
		return compareActors(r)
	}
	return compareInvoke(r)
}

// InvokeSettings are the load parameters.
type InvokeSettings struct {
	BodyBytes int `json:"body_bytes"`
	// Fixed-rate mode (0: off).
	Rate            float64 `json:"rate,omitempty"`
	RateDurationSec float64 `json:"rate_duration_s,omitempty"`
	RateWarmupSec   float64 `json:"rate_warmup_s,omitempty"`
	RateWorkers     int     `json:"rate_workers,omitempty"`
	SpinUs          float64 `json:"pacer_spin_us,omitempty"`
	// Max-throughput mode (0 workers: off).
	MaxWorkers     int     `json:"max_workers,omitempty"`
	MaxDurationSec float64 `json:"max_duration_s,omitempty"`
	MaxWarmupSec   float64 `json:"max_warmup_s,omitempty"`
	GRPCConns      int     `json:"grpc_conns"`
	// Actor scenarios: the type, the number of pre-activated ids the warm
	// calls cycle through, and the fixed rate of the activation scenarios.
	ActorType      string  `json:"actor_type,omitempty"`
	WarmActors     int     `json:"warm_actors,omitempty"`
	ActivationRate float64 `json:"activation_rate,omitempty"`
}

func invokeSettings(o invokeOptions) InvokeSettings {
	s := InvokeSettings{BodyBytes: o.BodySize, GRPCConns: o.Conns}
	if o.Rate.Rate > 0 {
		s.Rate, s.RateDurationSec, s.RateWarmupSec = o.Rate.Rate, o.Rate.Duration.Seconds(), o.Rate.Warmup.Seconds()
		s.RateWorkers, s.SpinUs = o.Rate.Workers, float64(o.Rate.Spin.Microseconds())
	}
	if o.Max.Concurrency > 0 {
		s.MaxWorkers, s.MaxDurationSec, s.MaxWarmupSec = o.Max.Concurrency, o.Max.Duration.Seconds(), o.Max.Warmup.Seconds()
	}
	return s
}

// InvokeResult is one scenario in both modes.
type InvokeResult struct {
	invokeScenario
	// Rate is the fixed-rate (open-loop) run, for latency.
	Rate *ModeResult `json:"rate,omitempty"`
	// Max is the closed-loop run, for throughput.
	Max *ModeResult `json:"max,omitempty"`
}

// ModeResult is one run of a scenario.
type ModeResult struct {
	// TargetRate is the schedule's rate (fixed-rate mode only).
	TargetRate float64 `json:"target_rate,omitempty"`
	Workers    int     `json:"workers"`
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	ElapsedSec float64 `json:"elapsed_s"`
	ReqPerSec  float64 `json:"req_per_s"`
	// Latencies; in fixed-rate mode from each request's due time.
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// LagP50Ms/LagP99Ms (fixed rate only) are due → sent: the pacer's own
	// lateness plus waits for a free worker; included in the latencies.
	LagP50Ms float64 `json:"lag_p50_ms,omitempty"`
	LagP99Ms float64 `json:"lag_p99_ms,omitempty"`
	// CPU microseconds per request (warm-up included) of the load
	// generator, the app and the sidecars on the path; 0 when not on the
	// path or unknown.
	GenCPUUs      float64 `json:"loadgen_cpu_us_per_req,omitempty"`
	AppCPUUs      float64 `json:"app_cpu_us_per_req,omitempty"`
	SidecarACPUUs float64 `json:"sidecar_a_cpu_us_per_req,omitempty"`
	SidecarBCPUUs float64 `json:"sidecar_b_cpu_us_per_req,omitempty"`
	// ReqPerSidecarCore is requests per CPU second of the sidecars on the
	// path together.
	ReqPerSidecarCore float64 `json:"req_per_sidecar_core_s,omitempty"`
	OtherCores        float64 `json:"other_cpu_cores"`
}

func (m *ModeResult) setLatencies(sorted []time.Duration) {
	m.P50Ms = ms(percentile(sorted, 50))
	m.P90Ms = ms(percentile(sorted, 90))
	m.P99Ms = ms(percentile(sorted, 99))
	m.MaxMs = ms(percentile(sorted, 100))
}

// behind reports whether a fixed-rate run completed noticeably fewer
// requests per second than scheduled (the path could not keep up).
func (m *ModeResult) behind() bool {
	return m != nil && m.TargetRate > 0 && m.ReqPerSec < 0.97*m.TargetRate
}

// daprd 1.18's invocation figures on a 2-core machine, from the issue
// that set Mecha's targets, and the targets themselves.
const (
	daprdDirectP50Ms   = 0.17
	daprdTwoP50Ms      = 1.35
	daprdTwoP99Ms      = 11.0
	daprdHTTPTwoRPS    = 3000.0
	daprdHTTPDirectRPS = 24000.0
	daprdGRPCTwoRPS    = 4300.0
	daprdGRPCDirectRPS = 30900.0

	targetTwoP50Ms      = 0.3  // two-sidecar overhead at p50, 1,000 req/s
	targetTwoP99Ms      = 2.0  // and at p99
	targetThroughputPct = 40.0 // two sidecars vs direct
)

// find returns the result with id, or nil.
func (r *InvokeReport) find(id string) *InvokeResult {
	for i := range r.Results {
		if r.Results[i].ID == id {
			return &r.Results[i]
		}
	}
	return nil
}

// compareInvoke computes, for every path through sidecars whose direct
// baseline was measured, the overhead at p50 and p99 at the fixed rate and
// the throughput ratio, with the targets for the two-sidecar paths
// and daprd's figures where the issue gives them.
func compareInvoke(r *InvokeReport) []Comparison {
	var out []Comparison
	for _, x := range r.Results {
		if x.Sidecars == 0 {
			continue
		}
		base := r.find(x.Baseline)
		if base == nil {
			continue
		}
		two := x.Sidecars == 2
		label := fmt.Sprintf("%s vs %s", x.ID, base.ID)
		if x.Rate != nil && base.Rate != nil {
			rate := thousands(x.Rate.TargetRate)
			p50 := Comparison{Name: label + ": added p50 @ " + rate + "/s", Value: x.Rate.P50Ms - base.Rate.P50Ms, Unit: "ms"}
			p99 := Comparison{Name: label + ": added p99 @ " + rate + "/s", Value: x.Rate.P99Ms - base.Rate.P99Ms, Unit: "ms"}
			if two {
				p50.Target, p50.Met = fmt.Sprintf("<= %g ms", targetTwoP50Ms), met(p50.Value <= targetTwoP50Ms)
				p99.Target, p99.Met = fmt.Sprintf("<= %g ms", targetTwoP99Ms), met(p99.Value <= targetTwoP99Ms)
			}
			if x.ID == "http-two" {
				p50.Reference = fmt.Sprintf("daprd %s ms (%g - %g)", fmtMs(daprdTwoP50Ms-daprdDirectP50Ms), daprdTwoP50Ms, daprdDirectP50Ms)
				p99.Reference = fmt.Sprintf("daprd p99 %g ms through two", daprdTwoP99Ms)
			}
			out = append(out, p50, p99)
		}
		if x.Max != nil && base.Max != nil && base.Max.ReqPerSec > 0 {
			c := Comparison{Name: label + ": max throughput", Value: 100 * x.Max.ReqPerSec / base.Max.ReqPerSec, Unit: "%"}
			if two {
				c.Target, c.Met = fmt.Sprintf(">= %g%%", targetThroughputPct), met(c.Value >= targetThroughputPct)
			}
			switch x.ID {
			case "http-two":
				c.Reference = fmt.Sprintf("daprd %.0f%% (%s of %s)", 100*daprdHTTPTwoRPS/daprdHTTPDirectRPS, thousands(daprdHTTPTwoRPS), thousands(daprdHTTPDirectRPS))
			case "proxy-two":
				c.Reference = fmt.Sprintf("daprd gRPC %.0f%% (%s of %s)", 100*daprdGRPCTwoRPS/daprdGRPCDirectRPS, thousands(daprdGRPCTwoRPS), thousands(daprdGRPCDirectRPS))
			}
			out = append(out, c)
		}
	}
	return out
}

// medianInvokeReport merges repeated runs: every figure of a scenario is
// the median of that figure over the runs (errors are summed) and the
// comparisons are recomputed from the medians.
func medianInvokeReport(runs []*InvokeReport) *InvokeReport {
	if len(runs) == 0 {
		return &InvokeReport{}
	}
	out := &InvokeReport{Kind: runs[0].Kind, Machine: runs[0].Machine, Settings: runs[0].Settings, Runs: len(runs)}
	out.Machine.LoadAvg = nil
	var rss, active []float64
	for _, r := range runs {
		out.Machine.LoadAvg = append(out.Machine.LoadAvg, r.Machine.LoadAvg...)
		rss = append(rss, r.SidecarRSSMB)
		active = append(active, float64(r.ActiveActors))
	}
	out.SidecarRSSMB = median(rss)
	out.ActiveActors = int(math.Round(median(active)))
	for _, first := range runs[0].Results {
		var rates, maxes []*ModeResult
		for _, r := range runs {
			if x := r.find(first.ID); x != nil {
				if x.Rate != nil {
					rates = append(rates, x.Rate)
				}
				if x.Max != nil {
					maxes = append(maxes, x.Max)
				}
			}
		}
		out.Results = append(out.Results, InvokeResult{invokeScenario: first.invokeScenario, Rate: medianMode(rates), Max: medianMode(maxes)})
	}
	out.Comparisons = out.compare()
	return out
}

// medianMode is the figure-by-figure median of ms (nil when empty).
func medianMode(ms []*ModeResult) *ModeResult {
	if len(ms) == 0 {
		return nil
	}
	pick := func(f func(*ModeResult) float64) float64 {
		vs := make([]float64, len(ms))
		for i, m := range ms {
			vs[i] = f(m)
		}
		return median(vs)
	}
	out := &ModeResult{TargetRate: ms[0].TargetRate, Workers: ms[0].Workers}
	out.Requests = int(math.Round(pick(func(m *ModeResult) float64 { return float64(m.Requests) })))
	out.ElapsedSec = pick(func(m *ModeResult) float64 { return m.ElapsedSec })
	out.ReqPerSec = pick(func(m *ModeResult) float64 { return m.ReqPerSec })
	out.P50Ms = pick(func(m *ModeResult) float64 { return m.P50Ms })
	out.P90Ms = pick(func(m *ModeResult) float64 { return m.P90Ms })
	out.P99Ms = pick(func(m *ModeResult) float64 { return m.P99Ms })
	out.MaxMs = pick(func(m *ModeResult) float64 { return m.MaxMs })
	out.LagP50Ms = pick(func(m *ModeResult) float64 { return m.LagP50Ms })
	out.LagP99Ms = pick(func(m *ModeResult) float64 { return m.LagP99Ms })
	out.GenCPUUs = pick(func(m *ModeResult) float64 { return m.GenCPUUs })
	out.AppCPUUs = pick(func(m *ModeResult) float64 { return m.AppCPUUs })
	out.SidecarACPUUs = pick(func(m *ModeResult) float64 { return m.SidecarACPUUs })
	out.SidecarBCPUUs = pick(func(m *ModeResult) float64 { return m.SidecarBCPUUs })
	out.ReqPerSidecarCore = pick(func(m *ModeResult) float64 { return m.ReqPerSidecarCore })
	out.OtherCores = pick(func(m *ModeResult) float64 { return m.OtherCores })
	for _, m := range ms {
		out.Errors += m.Errors
		if out.FirstError == "" {
			out.FirstError = m.FirstError
		}
	}
	return out
}

// writeInvokeText writes the report as plain-text tables: one row per
// scenario with both modes, then the comparisons with targets and daprd.
func writeInvokeText(w io.Writer, r *InvokeReport, title string) error {
	var b strings.Builder
	if title != "" {
		fmt.Fprintf(&b, "== %s\n", title)
	}
	m := r.Machine
	fmt.Fprintf(&b, "machine: %d CPUs (GOMAXPROCS %d), %s/%s, %s", m.CPUs, m.GOMAXPROCS, m.OS, m.Arch, m.Go)
	if len(m.LoadAvg) > 0 {
		fmt.Fprintf(&b, ", load avg at start: %s", strings.Join(m.LoadAvg, " | "))
	}
	if r.Kind == reportActors {
		b.WriteString("\nnote: the load generator, the app, both sidecars and the placement service run on this machine and share its CPUs\n")
	} else {
		b.WriteString("\nnote: the load generator, the app and both sidecars run on this machine and share its CPUs\n")
	}
	s := r.Settings
	fmt.Fprintf(&b, "load: %d-byte request and response bodies", s.BodyBytes)
	if s.Rate > 0 {
		fmt.Fprintf(&b, "; fixed rate %s req/s for %gs after %gs warm-up (open loop, up to %d in flight, latency from each request's due time)",
			thousands(s.Rate), s.RateDurationSec, s.RateWarmupSec, s.RateWorkers)
	}
	if s.MaxWorkers > 0 {
		fmt.Fprintf(&b, "; max throughput: %d workers back to back for %gs after %gs warm-up", s.MaxWorkers, s.MaxDurationSec, s.MaxWarmupSec)
	}
	if s.ActorType != "" {
		fmt.Fprintf(&b, "\nactors: type %s, warm calls cycle through %d pre-activated ids; activation calls a new id each time", s.ActorType, s.WarmActors)
		if s.Rate > 0 && s.ActivationRate > 0 {
			fmt.Fprintf(&b, ", at %s req/s", thousands(s.ActivationRate))
		}
		b.WriteString("\n")
	} else {
		fmt.Fprintf(&b, "; gRPC conns %d\n", s.GRPCConns)
	}
	if r.Runs > 1 {
		fmt.Fprintf(&b, "figures: median of %d runs, figure by figure (errors summed)\n", r.Runs)
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	rateHdr := "@RATE"
	if s.Rate > 0 {
		rateHdr = "@" + thousands(s.Rate) + "/s"
	}
	fmt.Fprintf(tw, "SCENARIO\tSC\t%s P50 ms\tP90\tP99\tMAX\tLAG P50|P99\t+P50\t+P99\tMAX REQ/S\tVS DIRECT\tP50|P99 @MAX\tCPU us/req gen|app|A|B @MAX\tREQ/S PER SIDECAR CORE\tOTHER CPU\tERRORS\n", rateHdr)
	for _, x := range r.Results {
		base := r.find(x.Baseline)
		cols := []string{x.ID, fmt.Sprint(x.Sidecars)}
		if x.Rate != nil {
			p50 := fmtMs(x.Rate.P50Ms)
			if x.Rate.TargetRate != s.Rate {
				p50 += " (@" + thousands(x.Rate.TargetRate) + "/s)"
			}
			if x.Rate.behind() {
				p50 += " (behind: " + thousands(x.Rate.ReqPerSec) + "/s)"
			}
			cols = append(cols, p50, fmtMs(x.Rate.P90Ms), fmtMs(x.Rate.P99Ms), fmtMs(x.Rate.MaxMs),
				fmtMs(x.Rate.LagP50Ms)+"|"+fmtMs(x.Rate.LagP99Ms))
			if base != nil && base.Rate != nil {
				cols = append(cols, fmtSigned(x.Rate.P50Ms-base.Rate.P50Ms), fmtSigned(x.Rate.P99Ms-base.Rate.P99Ms))
			} else {
				cols = append(cols, "-", "-")
			}
		} else {
			cols = append(cols, "-", "-", "-", "-", "-", "-", "-")
		}
		errs := 0
		if x.Max != nil {
			cols = append(cols, thousands(x.Max.ReqPerSec))
			if base != nil && base.Max != nil && base.Max.ReqPerSec > 0 {
				cols = append(cols, fmt.Sprintf("%.0f%%", 100*x.Max.ReqPerSec/base.Max.ReqPerSec))
			} else {
				cols = append(cols, "-")
			}
			cols = append(cols, fmtMs(x.Max.P50Ms)+"|"+fmtMs(x.Max.P99Ms),
				fmtCPU(x.Max.GenCPUUs)+"|"+fmtCPU(x.Max.AppCPUUs)+"|"+fmtCPU(x.Max.SidecarACPUUs)+"|"+fmtCPU(x.Max.SidecarBCPUUs))
			if x.Max.ReqPerSidecarCore > 0 {
				cols = append(cols, thousands(x.Max.ReqPerSidecarCore))
			} else {
				cols = append(cols, "-")
			}
		} else {
			cols = append(cols, "-", "-", "-", "-", "-")
		}
		other := 0.0
		for _, mr := range []*ModeResult{x.Rate, x.Max} {
			if mr != nil {
				errs += mr.Errors
				other = max(other, mr.OtherCores)
			}
		}
		cols = append(cols, fmt.Sprintf("%.2f", other), fmt.Sprint(errs))
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	for _, x := range r.Results {
		fmt.Fprintf(&b, "  %-19s %s\n", x.ID, x.Path)
	}
	for _, x := range r.Results {
		for _, mr := range []*ModeResult{x.Rate, x.Max} {
			if mr != nil && mr.FirstError != "" {
				fmt.Fprintf(&b, "first error in %s: %s\n", x.ID, mr.FirstError)
			}
		}
	}
	b.WriteString("OTHER CPU: cores the rest of the machine used meanwhile (other processes, uncharged kernel work), the larger of the two modes\n")
	if r.SidecarRSSMB > 0 {
		fmt.Fprintf(&b, "largest sidecar RSS after the runs: %.1f MB\n", r.SidecarRSSMB)
	}
	if r.ActiveActors > 0 {
		fmt.Fprintf(&b, "actors active on sidecar B after the runs: %s\n", thousands(float64(r.ActiveActors)))
	}

	if len(r.Comparisons) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "COMPARISON\tMECHA\tDAPRD 1.18\tTARGET\tRESULT")
		for _, c := range r.Comparisons {
			res, ref, target := "-", c.Reference, c.Target
			if c.Met != nil {
				res = "met"
				if !*c.Met {
					res = "MISSED"
				}
			}
			if ref == "" {
				ref = "-"
			}
			if target == "" {
				target = "-"
			}
			v := fmtValue(c.Value, c.Unit)
			if c.Unit == "ms" && strings.Contains(c.Name, ": added ") {
				v = fmtSigned(c.Value) + " ms"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, v, ref, target, res)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtSigned is fmtMs with a sign.
func fmtSigned(v float64) string {
	if v >= 0 {
		return "+" + fmtMs(v)
	}
	return fmtMs(v)
}

// printInvokeReport writes rep as text, or as JSON ({"median":…,"runs":[…]}
// when runs are given).
func printInvokeReport(w io.Writer, asJSON bool, rep *InvokeReport, runs []*InvokeReport) error {
	if asJSON {
		if runs != nil {
			return writeJSON(w, struct {
				Median *InvokeReport   `json:"median"`
				Runs   []*InvokeReport `json:"runs"`
			}{rep, runs})
		}
		return writeJSON(w, rep)
	}
	title := ""
	if rep.Runs > 1 {
		title = fmt.Sprintf("median of %d runs", rep.Runs)
	}
	return writeInvokeText(w, rep, title)
}
