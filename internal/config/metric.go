package config

import "fmt"

// MetricSpec is spec.metric (or spec.metrics, which wins when both are
// set, as in daprd): the sidecar's Prometheus metrics.
type MetricSpec struct {
	// Enabled defaults to true; false turns metrics off whatever the
	// --enable-metrics flag says.
	Enabled *bool       `yaml:"enabled"`
	HTTP    *MetricHTTP `yaml:"http"`
	// LatencyDistributionBuckets replace the latency histogram bounds, in
	// milliseconds, increasing.
	LatencyDistributionBuckets []int `yaml:"latencyDistributionBuckets"`
}

// MetricHTTP is spec.metric.http.
type MetricHTTP struct {
	// IncreasedCardinality defaults to false: the path label of HTTP
	// metrics is "" (a few static paths aside); true keeps the route less
	// keys and ids. (daprd 1.18 still defaults to true, warning that the
	// default will flip; per-path series are what made daprd's metrics
	// memory grow, so Mecha starts bounded.)
	IncreasedCardinality *bool `yaml:"increasedCardinality"`
	// ExcludeVerbs drops the HTTP method label.
	ExcludeVerbs *bool `yaml:"excludeVerbs"`
}

// Metrics returns the metric section in force: spec.metrics, else
// spec.metric, else the zero value (daprd's defaults).
func (s *ConfigurationSpec) Metrics() MetricSpec {
	switch {
	case s.MetricsAlias != nil:
		return *s.MetricsAlias
	case s.Metric != nil:
		return *s.Metric
	}
	return MetricSpec{}
}

func (m *MetricSpec) validate(section string) error {
	if m == nil {
		return nil
	}
	prev := 0
	for i, b := range m.LatencyDistributionBuckets {
		if b <= prev {
			return fmt.Errorf("spec.%s.latencyDistributionBuckets[%d] = %d: the bounds must be positive and increasing", section, i, b)
		}
		prev = b
	}
	return nil
}
