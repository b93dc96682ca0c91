package metrics

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation label values of the component metrics, daprd's names
// (pkg/diagnostics: diag.Get, diag.BulkGet, ...). The building blocks use
// their own copies; these are for readers and tests. (daprd's "query", of
// the alpha state query API, has no counterpart: Mecha does not serve
// that API.)
const (
	OpGet         = "get"
	OpSet         = "set"
	OpDelete      = "delete"
	OpBulkGet     = "bulk_get"
	OpBulkDelete  = "bulk_delete"
	OpTransaction = "transaction"
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
)

// opMetrics is one daprd component family: dapr_component_<kind>_count
// and _latencies. The label values all come from loaded components (a
// store or binding the request named and the sidecar has) and from a
// fixed set of operations (the block's, or an operation the output
// binding declares), so they need no bound.
type opMetrics struct {
	namespace string
	count     *prometheus.CounterVec
	latency   *prometheus.HistogramVec

	// series caches each label set's counter and histogram: a state call
	// then costs no label hashing and no allocation.
	series seriesCache[opKey, opSeries]
}

type opKey struct {
	component, op string
	success       bool
}

type opSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

func newOpMetrics(f factory, namespace, kind, countHelp, latencyHelp string, withOp bool) *opMetrics {
	labels := []string{"component", "namespace", "success"}
	if withOp {
		labels = []string{"component", "namespace", "operation", "success"}
	}
	return &opMetrics{
		namespace: namespace,
		count:     f.counter("component_"+kind+"_count", countHelp, labels...),
		latency:   f.histogram("component_"+kind+"_latencies", latencyHelp, f.latency, labels...),
	}
}

// observe counts one operation op ("" for a family without the operation
// label) on component and its latency in milliseconds. (daprd leaves out
// a latency of exactly 0, which a measured call never has; here the count
// and the histogram's sample count always agree.)
func (o *opMetrics) observe(component, op string, success bool, elapsed time.Duration) {
	s := o.series.getOrMake(opKey{component, op, success}, o.create)
	s.count.Inc()
	s.latency.Observe(float64(elapsed) / float64(time.Millisecond))
}

// create makes the series of k, and the key to keep them under.
func (o *opMetrics) create(k opKey) (opKey, opSeries) {
	// The names may be slices of a request (a path, a decoded body).
	k.component, k.op = strings.Clone(k.component), strings.Clone(k.op)
	ok := strconv.FormatBool(k.success)
	labels := []string{k.component, o.namespace, k.op, ok}
	if k.op == "" {
		labels = []string{k.component, o.namespace, ok}
	}
	return k, opSeries{count: o.count.WithLabelValues(labels...), latency: o.latency.WithLabelValues(labels...)}
}

// componentOps holds daprd's per-component operation metrics of the state,
// bindings, secrets and configuration building blocks.
type componentOps struct {
	state, output, input, secret, configuration *opMetrics
}

func newComponentOps(f factory, namespace string) componentOps {
	return componentOps{
		state: newOpMetrics(f, namespace, "state",
			"The number of operations performed on the state component.",
			"The latency of the response from the state component.", true),
		output: newOpMetrics(f, namespace, "output_binding",
			"The number of operations invoked on the output binding component.",
			"The latency of the response from the output binding component.", true),
		input: newOpMetrics(f, namespace, "input_binding",
			"The number of incoming events arriving from the input binding component.",
			"The triggered app event processing latency.", false),
		secret: newOpMetrics(f, namespace, "secret",
			"The number of operations performed on the secret component.",
			"The latency of the response from the secret component.", true),
		configuration: newOpMetrics(f, namespace, "configuration",
			"The number of operations performed on the configuration component.",
			"The latency of the response from the configuration component.", true),
	}
}

// StateOp counts one operation (OpGet, OpSet, OpDelete, OpBulkGet,
// OpBulkDelete, OpTransaction) on state store store, whether it succeeded
// and how long the store took: dapr_component_state_count and
// _latencies. A request's save of several items is one set, as in daprd.
func (m *Metrics) StateOp(store, op string, success bool, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.ops.state.observe(store, op, success, elapsed)
}

// OutputBindingOp counts one call of operation op on output binding
// binding: dapr_component_output_binding_count and _latencies.
func (m *Metrics) OutputBindingOp(binding, op string, success bool, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.ops.output.observe(binding, op, success, elapsed)
}

// InputBindingEvent counts one event of input binding binding handed to
// the app, whether the app accepted it and how long it took:
// dapr_component_input_binding_count and _latencies.
func (m *Metrics) InputBindingEvent(binding string, success bool, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.ops.input.observe(binding, "", success, elapsed)
}

// SecretOp counts one operation (OpGet, OpBulkGet) on secret store store:
// dapr_component_secret_count and _latencies.
func (m *Metrics) SecretOp(store, op string, success bool, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.ops.secret.observe(store, op, success, elapsed)
}

// ConfigurationOp counts one operation (OpGet, OpSubscribe,
// OpUnsubscribe) on configuration store store:
// dapr_component_configuration_count and _latencies.
func (m *Metrics) ConfigurationOp(store, op string, success bool, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.ops.configuration.observe(store, op, success, elapsed)
}
