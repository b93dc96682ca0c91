package resiliency

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// maxTargetLabels bounds the distinct target label values: callers name
// the apps and actor types they call, and Default* policies apply to all
// of them. Further targets are labelled "".
const maxTargetLabels = 500

// breakerStates are the values dapr_resiliency_cb_state has a series for.
var breakerStates = []string{string(StateClosed), string(StateHalfOpen), string(StateOpen), "unknown"}

// PrometheusRecorder records the resiliency metrics with daprd's names and
// labels on a Prometheus registry.
type PrometheusRecorder struct {
	loaded      *prometheus.CounterVec
	count       *prometheus.CounterVec
	activations *prometheus.CounterVec
	cbState     *prometheus.GaugeVec

	mu      sync.Mutex
	targets map[string]struct{}
}

// NewPrometheusRecorder registers the resiliency metrics on reg, labelled
// with appID.
func NewPrometheusRecorder(reg prometheus.Registerer, appID string) (*PrometheusRecorder, error) {
	app := prometheus.Labels{"app_id": appID}
	labels := []string{"app_id", "name", "policy", "namespace", "flow_direction", "target", "status"}
	r := &PrometheusRecorder{
		loaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dapr", Name: "resiliency_loaded", Help: "Number of resiliency policies loaded.",
		}, []string{"app_id", "name", "namespace"}),
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dapr", Name: "resiliency_count", Help: "Number of times a resiliency policyKey has been applied to a building block.",
		}, labels),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dapr", Name: "resiliency_activations_total", Help: "Number of times a resiliency policyKey has been activated in a building block after a failure or after a state change.",
		}, labels),
		cbState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dapr", Name: "resiliency_cb_state", Help: "A resiliency policy's current CircuitBreakerState state. 0 is closed, 1 is half-open, 2 is open, and -1 is unknown.",
		}, labels),
		targets: map[string]struct{}{},
	}
	for _, c := range []prometheus.Collector{r.loaded, r.count, r.activations, r.cbState} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	r.loaded = r.loaded.MustCurryWith(app)
	r.count = r.count.MustCurryWith(app)
	r.activations = r.activations.MustCurryWith(app)
	r.cbState = r.cbState.MustCurryWith(app)
	return r, nil
}

// PolicyLoaded implements Recorder.
func (r *PrometheusRecorder) PolicyLoaded(name, namespace string) {
	r.loaded.WithLabelValues(name, namespace).Inc()
}

// PolicyExecuted implements Recorder.
func (r *PrometheusRecorder) PolicyExecuted(l Labels) {
	l.Target = r.target(l.Target)
	r.count.WithLabelValues(l.Name, l.Policy, l.Namespace, l.Flow, l.Target, l.Status).Inc()
	r.breakerState(l)
}

// PolicyActivated implements Recorder.
func (r *PrometheusRecorder) PolicyActivated(l Labels) {
	l.Target = r.target(l.Target)
	r.activations.WithLabelValues(l.Name, l.Policy, l.Namespace, l.Flow, l.Target, l.Status).Inc()
	r.breakerState(l)
}

// breakerState sets the state gauge of a circuit breaker policy: 1 for its
// current state, 0 for the others, as daprd.
func (r *PrometheusRecorder) breakerState(l Labels) {
	if l.Policy != PolicyCircuitBreaker {
		return
	}
	for _, s := range breakerStates {
		v := 0.0
		if s == l.Status {
			v = 1
		}
		r.cbState.WithLabelValues(l.Name, l.Policy, l.Namespace, l.Flow, l.Target, s).Set(v)
	}
}

func (r *PrometheusRecorder) target(t string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.targets[t]; ok {
		return t
	}
	if len(r.targets) >= maxTargetLabels {
		return ""
	}
	r.targets[t] = struct{}{}
	return t
}
