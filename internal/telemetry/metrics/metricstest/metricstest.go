// Package metricstest scrapes a sidecar's Prometheus endpoint in tests and
// reads samples by name and exact label set, with the Prometheus text
// parser, so that tests assert what a Prometheus server would see.
package metricstest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is one scrape, by metric name.
type Families map[string]*dto.MetricFamily

// Scrape GETs /metrics from the endpoint at addr (host:port) and parses it.
func Scrape(t testing.TB, addr string) Families {
	t.Helper()
	if addr == "" {
		t.Fatal("the sidecar serves no metrics endpoint")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

// Labels is a label set from name, value pairs.
func Labels(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Value is the sample of name whose labels are exactly want (a counter's
// or gauge's value, a histogram's sample count); ok is false when there is
// none.
func (f Families) Value(name string, want map[string]string) (float64, bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch fam.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// Series lists the label sets of name, for failure messages.
func (f Families) Series(name string) string {
	var out []string
	for _, m := range f[name].GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		out = append(out, "{"+strings.Join(ls, ",")+"}")
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// Expect is one sample a test wants: the value of name with exactly
// Labels.
type Expect struct {
	Name   string
	Labels map[string]string
	Want   float64
}

// Check reports every expectation the scrape does not meet.
func (f Families) Check(t testing.TB, cases []Expect) {
	t.Helper()
	for _, c := range cases {
		if m := f.Mismatch([]Expect{c}); m != "" {
			t.Error(m)
		}
	}
}

// Mismatch describes the first expectation f does not meet ("" when all
// do).
func (f Families) Mismatch(cases []Expect) string {
	for _, c := range cases {
		if got, ok := f.Value(c.Name, c.Labels); !ok || got != c.Want {
			return fmt.Sprintf("%s%v = %v (present %v), want %v; series: %s", c.Name, c.Labels, got, ok, c.Want, f.Series(c.Name))
		}
	}
	return ""
}

// Wait scrapes addr until every expectation holds (a counter may be
// recorded just after the client saw its call end), failing t after
// timeout; it returns the last scrape.
func Wait(t testing.TB, addr string, timeout time.Duration, cases []Expect) Families {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f := Scrape(t, addr)
		m := f.Mismatch(cases)
		if m == "" {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %s", timeout, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
