package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, spec string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n" + spec
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestMetricSpec: spec.metric is read as daprd reads it; spec.metrics wins
// over it, a later file's section replaces an earlier one's, and
// latencyDistributionBuckets must increase.
func TestMetricSpec(t *testing.T) {
	a := writeConfig(t, "  metric:\n    enabled: false\n    http:\n      increasedCardinality: false\n      excludeVerbs: true\n    latencyDistributionBuckets: [5, 50, 500]\n")
	c, err := LoadConfiguration([]string{a})
	if err != nil {
		t.Fatal(err)
	}
	m := c.Spec.Metrics()
	if m.Enabled == nil || *m.Enabled || m.HTTP == nil || *m.HTTP.IncreasedCardinality || !*m.HTTP.ExcludeVerbs || len(m.LatencyDistributionBuckets) != 3 {
		t.Fatalf("Metrics() = %+v", m)
	}

	both := writeConfig(t, "  metric:\n    enabled: false\n  metrics:\n    enabled: true\n")
	if c, err = LoadConfiguration([]string{both}); err != nil {
		t.Fatal(err)
	}
	if m := c.Spec.Metrics(); m.Enabled == nil || !*m.Enabled {
		t.Fatalf("spec.metrics does not win over spec.metric: %+v", m)
	}

	later := writeConfig(t, "  metric:\n    enabled: true\n")
	if c, err = LoadConfiguration([]string{a, later}); err != nil {
		t.Fatal(err)
	}
	if m := c.Spec.Metrics(); m.Enabled == nil || !*m.Enabled || m.HTTP != nil {
		t.Fatalf("a later file's spec.metric does not replace the earlier one: %+v", m)
	}

	if c, err = LoadConfiguration(nil); err != nil || c.Spec.Metrics().Enabled != nil {
		t.Fatalf("no Configuration: %+v, %v", c, err)
	}

	bad := writeConfig(t, "  metric:\n    latencyDistributionBuckets: [10, 5]\n")
	if _, err := LoadConfiguration([]string{bad}); err == nil || !strings.Contains(err.Error(), "spec.metric.latencyDistributionBuckets[1] = 5") {
		t.Fatalf("decreasing buckets: %v", err)
	}
}
