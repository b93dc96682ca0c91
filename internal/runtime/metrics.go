package runtime

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mecha-dev/mecha/internal/blocks/bindings"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics"
)

// MetricsOptions configure the Prometheus endpoint (daprd's
// --enable-metrics, --metrics-port, --metrics-listen-address).
type MetricsOptions struct {
	// Enabled collects metrics and serves them; the zero value (tests,
	// embedders) leaves them off. `mecha sidecar` turns them on, as daprd.
	Enabled bool
	// Port is the endpoint's port; 0 picks a free one (MetricsAddr tells
	// which).
	Port int
	// ListenAddresses are the hosts the endpoint listens on (default: the
	// API's ListenAddresses).
	ListenAddresses []string
	// Instrumentation tunes labels and buckets; AppID and Namespace are
	// the sidecar's.
	Instrumentation metrics.Options
}

// runtimeMetrics is the sidecar's instrumentation: m is nil when metrics
// are off, and every hook is then a no-op.
type runtimeMetrics struct {
	m  *metrics.Metrics
	ep *metrics.Endpoint
}

// initMetrics creates the registry, before anything that records into it,
// as the flags and the Configuration's spec.metric say.
func (r *Runtime) initMetrics() {
	o := r.opts.Metrics
	if !o.Enabled {
		return
	}
	spec := r.cfg.Spec.Metrics()
	if spec.Enabled != nil && !*spec.Enabled {
		r.log.Info("metrics are off: the Configuration sets spec.metric.enabled: false")
		return
	}
	io := o.Instrumentation
	io.AppID, io.Namespace = r.opts.AppID, r.opts.Namespace
	// Low cardinality unless the Configuration asks for per-path series.
	io.LowCardinality = true
	if h := spec.HTTP; h != nil {
		if h.IncreasedCardinality != nil && *h.IncreasedCardinality {
			io.LowCardinality = false
		}
		if h.ExcludeVerbs != nil && *h.ExcludeVerbs {
			io.ExcludeVerbs = true
		}
	}
	if len(spec.LatencyDistributionBuckets) > 0 {
		io.LatencyBuckets = make([]float64, len(spec.LatencyDistributionBuckets))
		for i, b := range spec.LatencyDistributionBuckets {
			io.LatencyBuckets[i] = float64(b)
		}
	}
	r.mx.m = metrics.New(io)
}

// observeBlocks gives the state, bindings, secrets and configuration
// blocks their metrics hooks (daprd's dapr_component_* operation metrics).
// With metrics off they get none, and their calls read no clock.
func (r *Runtime) observeBlocks() {
	m := r.mx.m
	if m == nil {
		return
	}
	r.state.SetObserver(m.StateOp)
	r.secrets.SetObserver(m.SecretOp)
	r.configuration.SetObserver(m.ConfigurationOp)
	r.bindings.SetObservers(bindings.Observers{Output: m.OutputBindingOp, Input: m.InputBindingEvent})
}

// serveMetrics opens the endpoint once the sidecar serves. A port that
// cannot be bound does not stop the sidecar (daprd exits instead): the
// app keeps its sidecar, and the warning says how to fix it. Several
// sidecars on one host need a port each; `mecha run` picks free ones.
func (r *Runtime) serveMetrics() {
	if r.mx.m == nil {
		return
	}
	o := r.opts.Metrics
	hosts := o.ListenAddresses
	if len(hosts) == 0 {
		hosts = r.opts.ListenAddresses
	}
	log := r.log.With(slog.String("scope", "mecha.runtime.metrics"))
	ep, err := metrics.Listen(r.mx.m, hosts, o.Port, log)
	if err != nil {
		log.Warn("metrics endpoint not started; the sidecar runs without it (choose a free --metrics-port, 0 for any, or --enable-metrics=false)",
			"port", o.Port, "hosts", hosts, "error", err)
		return
	}
	r.mx.ep = ep
	log.Info("metrics server started", "address", ep.Addrs())
}

// closeMetrics stops the endpoint, after the servers drained (a last scrape
// sees the final counts).
func (r *Runtime) closeMetrics(ctx context.Context) {
	if r.mx.ep == nil {
		return
	}
	if err := r.mx.ep.Close(ctx); err != nil {
		r.log.Warn("closing the metrics endpoint", "error", err)
	}
}

// MetricsAddr is the metrics endpoint's first address, e.g.
// "127.0.0.1:9090"; "" when metrics are off or could not be served.
func (r *Runtime) MetricsAddr() string {
	if r.mx.ep == nil {
		return ""
	}
	return r.mx.ep.Addr()
}

// creationError marks a component that could not be created (an unknown
// type or version), as opposed to one that failed to initialise: the
// reason label of dapr_runtime_component_init_fail_total.
type creationError struct{ error }

func (e creationError) Unwrap() error { return e.error }

func failReason(err error) string {
	if errors.As(err, new(creationError)) {
		return metrics.ReasonCreation
	}
	return metrics.ReasonInit
}
