package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// PubsubReport is the outcome of the pub/sub scenarios (or the median of
// several runs).
type PubsubReport struct {
	Machine     Machine        `json:"machine"`
	Settings    PubsubSettings `json:"settings"`
	Results     []PubsubResult `json:"results"`
	Comparisons []Comparison   `json:"comparisons,omitempty"`
	// SidecarRSSMB and BrokerRSSMB are the resident memory of the sidecar
	// and of the NATS server after the runs.
	SidecarRSSMB float64 `json:"sidecar_rss_mb,omitempty"`
	BrokerRSSMB  float64 `json:"broker_rss_mb,omitempty"`
	Runs         int     `json:"runs,omitempty"`
}

// PubsubSettings are the load parameters.
type PubsubSettings struct {
	BodyBytes int `json:"body_bytes"`
	// Closed-loop scenarios.
	MaxWorkers     int     `json:"max_workers"`
	MaxDurationSec float64 `json:"max_duration_s"`
	MaxWarmupSec   float64 `json:"max_warmup_s"`
	MaxBacklog     int     `json:"max_backlog"`
	// Fixed-rate scenarios.
	Rate            float64 `json:"rate"`
	RateDurationSec float64 `json:"rate_duration_s"`
	RateWarmupSec   float64 `json:"rate_warmup_s"`
	RateWorkers     int     `json:"rate_workers"`
	SpinUs          float64 `json:"pacer_spin_us"`
	DrainTimeoutSec float64 `json:"drain_timeout_s"`
	// JetStreamConcurrency is the pubsub.jetstream component's
	// concurrency metadata, when set.
	JetStreamConcurrency string `json:"jetstream_concurrency,omitempty"`
}

func pubsubSettings(o pubsubOptions, jsConcurrency string) PubsubSettings {
	return PubsubSettings{
		BodyBytes:  o.BodySize,
		MaxWorkers: o.Max.Concurrency, MaxDurationSec: o.Max.Duration.Seconds(), MaxWarmupSec: o.Max.Warmup.Seconds(), MaxBacklog: o.MaxBacklog,
		Rate: o.Rate.Rate, RateDurationSec: o.Rate.Duration.Seconds(), RateWarmupSec: o.Rate.Warmup.Seconds(), RateWorkers: o.Rate.Workers,
		SpinUs: float64(o.Rate.Spin.Microseconds()), DrainTimeoutSec: o.DrainTimeout.Seconds(), JetStreamConcurrency: jsConcurrency,
	}
}

// PubsubResult is one scenario.
type PubsubResult struct {
	pubsubScenario
	// TargetRate is the schedule's rate (fixed-rate scenarios only).
	TargetRate float64 `json:"target_rate,omitempty"`
	Workers    int     `json:"workers"`
	// MaxBacklog is the bound on undelivered events of a closed-loop run
	// with a subscriber (0: none).
	MaxBacklog int `json:"max_backlog,omitempty"`
	// Published counts the measured publishes; Errors the failed ones
	// (warm-up included).
	Published     int     `json:"published"`
	Errors        int     `json:"errors"`
	FirstError    string  `json:"first_error,omitempty"`
	PublishPerSec float64 `json:"publish_per_s"`
	// Publish request latency: from the due time at a fixed rate; in
	// closed-loop runs with a subscriber it includes the wait for the
	// backlog to shrink.
	PubP50Ms float64 `json:"publish_p50_ms"`
	PubP90Ms float64 `json:"publish_p90_ms"`
	PubP99Ms float64 `json:"publish_p99_ms"`
	PubMaxMs float64 `json:"publish_max_ms"`
	// Deliveries (scenarios with a subscriber): distinct events received
	// (warm-up included), duplicates, accepted publishes never received,
	// and events received per second within the measured window.
	Delivered     int     `json:"delivered,omitempty"`
	Duplicates    int     `json:"duplicates,omitempty"`
	Lost          int     `json:"lost,omitempty"`
	DeliverPerSec float64 `json:"deliver_per_s,omitempty"`
	// Publish (due time, at a fixed rate) → arrival at the app, for the
	// events published in the measured window.
	E2ESamples int     `json:"e2e_samples,omitempty"`
	E2EP50Ms   float64 `json:"e2e_p50_ms,omitempty"`
	E2EP90Ms   float64 `json:"e2e_p90_ms,omitempty"`
	E2EP99Ms   float64 `json:"e2e_p99_ms,omitempty"`
	E2EMaxMs   float64 `json:"e2e_max_ms,omitempty"`
	// DrainSec is how long the last deliveries took after publishing
	// stopped.
	DrainSec float64 `json:"drain_s,omitempty"`
	// CPU microseconds per accepted event (warm-up, and with a subscriber
	// the drain, included) of the load generator, the sidecar, the NATS
	// server and the subscriber app; 0 when not on the path or unknown.
	GenCPUUs     float64 `json:"loadgen_cpu_us_per_event,omitempty"`
	SidecarCPUUs float64 `json:"sidecar_cpu_us_per_event,omitempty"`
	BrokerCPUUs  float64 `json:"broker_cpu_us_per_event,omitempty"`
	AppCPUUs     float64 `json:"app_cpu_us_per_event,omitempty"`
	// EventsPerSidecarCore is events per CPU second of the sidecar.
	EventsPerSidecarCore float64 `json:"events_per_sidecar_core_s,omitempty"`
	OtherCores           float64 `json:"other_cpu_cores"`
}

// behind reports whether a fixed-rate run delivered noticeably fewer
// events per second than scheduled (the path could not keep up).
func (r *PubsubResult) behind() bool {
	return r.TargetRate > 0 && r.Deliver && r.DeliverPerSec < 0.97*r.TargetRate
}

// daprd 1.18's pub/sub figures on a 2-core machine, from the issue that
// set Mecha's targets, and the targets themselves.
const (
	daprdInMemoryDeliverPerSec = 2500.0 // publish → deliver, pubsub.in-memory
	daprdInMemoryP50Ms         = 0.43   // at 1,000 events/s
	daprdReferenceRate         = 1000.0

	targetPublishSharePct = 50.0 // sidecar publish vs raw JetStream client
	targetJetStreamP50Ms  = 2.0  // publish → app at 1,000/s, pubsub.jetstream
	targetDeliverVsDaprd  = 3.0  // ≥3× daprd's in-memory delivery rate
)

// find returns the result with id, or nil.
func (r *PubsubReport) find(id string) *PubsubResult {
	for i := range r.Results {
		if r.Results[i].ID == id {
			return &r.Results[i]
		}
	}
	return nil
}

// comparePubsub computes the ratios the targets are about: each
// sidecar publish path against the raw JetStream client, the end-to-end
// p50 at the reference rate, and the in-memory delivery rate against
// daprd's.
func comparePubsub(r *PubsubReport) []Comparison {
	var out []Comparison
	if raw := r.find("publish-raw"); raw != nil && raw.PublishPerSec > 0 {
		for _, id := range []string{"publish-http", "publish-grpc"} {
			x := r.find(id)
			if x == nil {
				continue
			}
			c := Comparison{Name: id + " vs publish-raw: publish throughput", Value: 100 * x.PublishPerSec / raw.PublishPerSec, Unit: "%",
				Reference: "raw " + thousands(raw.PublishPerSec) + "/s", Target: fmt.Sprintf(">= %g%%", targetPublishSharePct)}
			c.Met = met(c.Value >= targetPublishSharePct)
			out = append(out, c)
		}
	}
	for _, id := range []string{"e2e-jetstream", "e2e-jetstream-parallel", "e2e-in-memory"} {
		x := r.find(id)
		if x == nil || x.E2ESamples == 0 {
			continue
		}
		c := Comparison{Name: fmt.Sprintf("%s: publish -> app p50 @ %s/s", id, thousands(x.TargetRate)), Value: x.E2EP50Ms, Unit: "ms"}
		atRef := x.TargetRate == daprdReferenceRate
		switch {
		case strings.HasPrefix(id, "e2e-jetstream") && atRef:
			c.Target, c.Met = fmt.Sprintf("<= %g ms", targetJetStreamP50Ms), met(x.E2EP50Ms <= targetJetStreamP50Ms && x.Lost == 0)
		case id == "e2e-in-memory" && atRef:
			c.Reference = fmt.Sprintf("daprd %g ms (%.2fx)", daprdInMemoryP50Ms, x.E2EP50Ms/daprdInMemoryP50Ms)
		}
		out = append(out, c)
	}
	if x := r.find("deliver-max-in-memory"); x != nil {
		c := Comparison{Name: "deliver-max-in-memory vs daprd: events/s delivered", Value: x.DeliverPerSec / daprdInMemoryDeliverPerSec, Unit: "x",
			Reference: "daprd " + thousands(daprdInMemoryDeliverPerSec) + "/s",
			Target:    fmt.Sprintf(">= %gx (%s/s)", targetDeliverVsDaprd, thousands(targetDeliverVsDaprd*daprdInMemoryDeliverPerSec))}
		c.Met = met(c.Value >= targetDeliverVsDaprd && x.Lost == 0)
		out = append(out, c)
	}
	return out
}

// medianPubsubReport merges repeated runs: every figure of a scenario is
// the median of that figure over the runs (errors, duplicates and losses
// are summed) and the comparisons are recomputed from the medians.
func medianPubsubReport(runs []*PubsubReport) *PubsubReport {
	if len(runs) == 0 {
		return &PubsubReport{}
	}
	out := &PubsubReport{Machine: runs[0].Machine, Settings: runs[0].Settings, Runs: len(runs)}
	out.Machine.LoadAvg = nil
	var rss, brss []float64
	for _, r := range runs {
		out.Machine.LoadAvg = append(out.Machine.LoadAvg, r.Machine.LoadAvg...)
		rss, brss = append(rss, r.SidecarRSSMB), append(brss, r.BrokerRSSMB)
	}
	out.SidecarRSSMB, out.BrokerRSSMB = median(rss), median(brss)
	for _, first := range runs[0].Results {
		var xs []*PubsubResult
		for _, r := range runs {
			if x := r.find(first.ID); x != nil {
				xs = append(xs, x)
			}
		}
		pick := func(f func(*PubsubResult) float64) float64 {
			vs := make([]float64, len(xs))
			for i, x := range xs {
				vs[i] = f(x)
			}
			return median(vs)
		}
		pickInt := func(f func(*PubsubResult) int) int {
			return int(math.Round(pick(func(x *PubsubResult) float64 { return float64(f(x)) })))
		}
		m := PubsubResult{pubsubScenario: first.pubsubScenario, TargetRate: first.TargetRate, Workers: first.Workers, MaxBacklog: first.MaxBacklog}
		m.Published = pickInt(func(x *PubsubResult) int { return x.Published })
		m.PublishPerSec = pick(func(x *PubsubResult) float64 { return x.PublishPerSec })
		m.PubP50Ms = pick(func(x *PubsubResult) float64 { return x.PubP50Ms })
		m.PubP90Ms = pick(func(x *PubsubResult) float64 { return x.PubP90Ms })
		m.PubP99Ms = pick(func(x *PubsubResult) float64 { return x.PubP99Ms })
		m.PubMaxMs = pick(func(x *PubsubResult) float64 { return x.PubMaxMs })
		m.Delivered = pickInt(func(x *PubsubResult) int { return x.Delivered })
		m.DeliverPerSec = pick(func(x *PubsubResult) float64 { return x.DeliverPerSec })
		m.E2ESamples = pickInt(func(x *PubsubResult) int { return x.E2ESamples })
		m.E2EP50Ms = pick(func(x *PubsubResult) float64 { return x.E2EP50Ms })
		m.E2EP90Ms = pick(func(x *PubsubResult) float64 { return x.E2EP90Ms })
		m.E2EP99Ms = pick(func(x *PubsubResult) float64 { return x.E2EP99Ms })
		m.E2EMaxMs = pick(func(x *PubsubResult) float64 { return x.E2EMaxMs })
		m.DrainSec = pick(func(x *PubsubResult) float64 { return x.DrainSec })
		m.GenCPUUs = pick(func(x *PubsubResult) float64 { return x.GenCPUUs })
		m.SidecarCPUUs = pick(func(x *PubsubResult) float64 { return x.SidecarCPUUs })
		m.BrokerCPUUs = pick(func(x *PubsubResult) float64 { return x.BrokerCPUUs })
		m.AppCPUUs = pick(func(x *PubsubResult) float64 { return x.AppCPUUs })
		m.EventsPerSidecarCore = pick(func(x *PubsubResult) float64 { return x.EventsPerSidecarCore })
		m.OtherCores = pick(func(x *PubsubResult) float64 { return x.OtherCores })
		for _, x := range xs {
			m.Errors += x.Errors
			m.Duplicates += x.Duplicates
			m.Lost += x.Lost
			if m.FirstError == "" {
				m.FirstError = x.FirstError
			}
		}
		out.Results = append(out.Results, m)
	}
	out.Comparisons = comparePubsub(out)
	return out
}

// writePubsubText writes the report as plain-text tables: one row per
// scenario, then the comparisons with targets and daprd.
func writePubsubText(w io.Writer, r *PubsubReport, title string) error {
	var b strings.Builder
	if title != "" {
		fmt.Fprintf(&b, "== %s\n", title)
	}
	m := r.Machine
	fmt.Fprintf(&b, "machine: %d CPUs (GOMAXPROCS %d), %s/%s, %s", m.CPUs, m.GOMAXPROCS, m.OS, m.Arch, m.Go)
	if len(m.LoadAvg) > 0 {
		fmt.Fprintf(&b, ", load avg at start: %s", strings.Join(m.LoadAvg, " | "))
	}
	b.WriteString("\nnote: the load generator, the sidecar, the NATS server and the subscriber app run on this machine and share its CPUs\n")
	s := r.Settings
	fmt.Fprintf(&b, "load: %d-byte JSON events; closed loop: %d workers for %gs after %gs warm-up", s.BodyBytes, s.MaxWorkers, s.MaxDurationSec, s.MaxWarmupSec)
	if s.MaxBacklog > 0 {
		fmt.Fprintf(&b, " (with a subscriber: at most %s events published ahead of deliveries)", thousands(float64(s.MaxBacklog)))
	}
	fmt.Fprintf(&b, "; fixed rate: %s events/s for %gs after %gs warm-up (open loop, up to %d publishes in flight, latency from each event's due time)",
		thousands(s.Rate), s.RateDurationSec, s.RateWarmupSec, s.RateWorkers)
	if s.JetStreamConcurrency != "" {
		fmt.Fprintf(&b, "; pubsub.jetstream concurrency %s", s.JetStreamConcurrency)
	}
	b.WriteString("\n")
	if r.Runs > 1 {
		fmt.Fprintf(&b, "figures: median of %d runs, figure by figure (errors, duplicates and losses summed)\n", r.Runs)
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPUBSUB\tMODE\tPUBLISH/S\tPUB P50|P99 ms\tDELIVERED/S\tE2E P50 ms\tP90\tP99\tMAX\tLOST|DUP\tDRAIN s\tCPU us/event gen|sidecar|nats|app\tEVENTS/S PER SIDECAR CORE\tOTHER CPU\tERRORS")
	for _, x := range r.Results {
		mode := "c=" + fmt.Sprint(x.Workers)
		if x.Mode == modeRate {
			mode = "@" + thousands(x.TargetRate) + "/s"
		}
		pubLat := fmtMs(x.PubP50Ms) + "|" + fmtMs(x.PubP99Ms)
		if x.Mode == modeMax && x.Deliver && x.MaxBacklog > 0 {
			pubLat = "-" // includes the wait for the backlog to shrink
		}
		cols := []string{x.ID, x.Pubsub, mode, thousands(x.PublishPerSec), pubLat}
		if x.Deliver {
			dps := thousands(x.DeliverPerSec)
			if x.behind() {
				dps += " (behind)"
			}
			cols = append(cols, dps, fmtMs(x.E2EP50Ms), fmtMs(x.E2EP90Ms), fmtMs(x.E2EP99Ms), fmtMs(x.E2EMaxMs),
				fmt.Sprintf("%d|%d", x.Lost, x.Duplicates), fmt.Sprintf("%.2f", x.DrainSec))
		} else {
			cols = append(cols, "-", "-", "-", "-", "-", "-", "-")
		}
		cols = append(cols, fmtCPU(x.GenCPUUs)+"|"+fmtCPU(x.SidecarCPUUs)+"|"+fmtCPU(x.BrokerCPUUs)+"|"+fmtCPU(x.AppCPUUs))
		if x.EventsPerSidecarCore > 0 {
			cols = append(cols, thousands(x.EventsPerSidecarCore))
		} else {
			cols = append(cols, "-")
		}
		cols = append(cols, fmt.Sprintf("%.2f", x.OtherCores), fmt.Sprint(x.Errors))
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	for _, x := range r.Results {
		fmt.Fprintf(&b, "  %-22s %s\n", x.ID, x.Path)
	}
	for _, x := range r.Results {
		if x.FirstError != "" {
			fmt.Fprintf(&b, "first error in %s: %s\n", x.ID, x.FirstError)
		}
	}
	b.WriteString("E2E: publish (due time at a fixed rate, else sent) -> arrival at the app, for the events published in the measured window; DELIVERED/S: arrivals in that window\n")
	b.WriteString("CPU per accepted event, warm-up and drain included; OTHER CPU: cores the rest of the machine used meanwhile\n")
	if r.SidecarRSSMB > 0 || r.BrokerRSSMB > 0 {
		fmt.Fprintf(&b, "RSS after the runs: sidecar %.1f MB, NATS server %.1f MB\n", r.SidecarRSSMB, r.BrokerRSSMB)
	}
	if len(r.Comparisons) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "COMPARISON\tMECHA\tREFERENCE\tTARGET\tRESULT")
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, fmtValue(c.Value, c.Unit), ref, target, res)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printPubsubReport writes rep as text, or as JSON
// ({"median":…,"runs":[…]} when runs are given).
func printPubsubReport(w io.Writer, asJSON bool, rep *PubsubReport, runs []*PubsubReport) error {
	if asJSON {
		if runs != nil {
			return writeJSON(w, struct {
				Median *PubsubReport   `json:"median"`
				Runs   []*PubsubReport `json:"runs"`
			}{rep, runs})
		}
		return writeJSON(w, rep)
	}
	title := ""
	if rep.Runs > 1 {
		title = fmt.Sprintf("median of %d runs", rep.Runs)
	}
	return writePubsubText(w, rep, title)
}
