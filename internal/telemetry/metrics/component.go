package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type componentMetrics struct {
	loaded   prometheus.Counter
	initOK   *prometheus.CounterVec
	initFail *prometheus.CounterVec
}

func newComponentMetrics(f factory) componentMetrics {
	return componentMetrics{
		loaded:   f.counter("runtime_component_loaded", "Number of components loaded successfully.").WithLabelValues(),
		initOK:   f.counter("runtime_component_init_total", "Number of components initialised, by type.", "component"),
		initFail: f.counter("runtime_component_init_fail_total", "Number of component initialisation failures, by type, reason (creation or init) and name.", "component", "reason", "componentName"),
	}
}

// Reasons of dapr_runtime_component_init_fail_total.
const (
	// ReasonCreation: the component could not be created (unknown type or
	// version).
	ReasonCreation = "creation"
	// ReasonInit: creating it worked, initialising it did not.
	ReasonInit = "init"
)

// ComponentInitialized counts a component of type typ (e.g.
// "state.redis") that initialised and was loaded.
func (m *Metrics) ComponentInitialized(typ string) {
	if m == nil {
		return
	}
	m.component.initOK.WithLabelValues(clean(typ)).Inc()
	m.component.loaded.Inc()
}

// ComponentInitFailed counts a component that failed to load.
func (m *Metrics) ComponentInitFailed(typ, reason, name string) {
	if m == nil {
		return
	}
	m.component.initFail.WithLabelValues(clean(typ), reason, clean(name)).Inc()
}

type pubsubMetrics struct {
	namespace                     string
	ingressCount, egressCount     *prometheus.CounterVec
	ingressLatency, egressLatency *prometheus.HistogramVec
}

func newPubsubMetrics(f factory, namespace string) pubsubMetrics {
	return pubsubMetrics{
		namespace:      namespace,
		ingressCount:   f.counter("component_pubsub_ingress_count", "Number of messages from pub/sub components delivered to the app, by outcome (success, retry, drop).", "component", "namespace", "process_status", "topic", "status"),
		ingressLatency: f.histogram("component_pubsub_ingress_latencies", "Time the app took to process a pub/sub message, in milliseconds.", f.latency, "component", "namespace", "process_status", "topic", "status"),
		egressCount:    f.counter("component_pubsub_egress_count", "Number of messages published to pub/sub components.", "component", "namespace", "success", "topic"),
		egressLatency:  f.histogram("component_pubsub_egress_latencies", "Time pub/sub components took to accept a published message, in milliseconds.", f.latency, "component", "namespace", "success", "topic"),
	}
}

// Outcomes of a pub/sub delivery (the process_status label).
const (
	DeliverySuccess = "success"
	DeliveryRetry   = "retry"
	DeliveryDrop    = "drop"
)

// PubsubPublished counts one message published to component pubsub on
// topic, and its latency.
func (m *Metrics) PubsubPublished(pubsub, topic string, success bool, elapsed time.Duration) {
	if m == nil {
		return
	}
	p := &m.pubsub
	ok := strconv.FormatBool(success)
	pubsub, topic = m.topics.get(pubsub), m.topics.get(topic)
	p.egressCount.WithLabelValues(pubsub, p.namespace, ok, topic).Inc()
	p.egressLatency.WithLabelValues(pubsub, p.namespace, ok, topic).Observe(float64(elapsed) / float64(time.Millisecond))
}

// PubsubDelivered counts one message of topic from component pubsub given
// to the app, with its outcome (DeliverySuccess, DeliveryRetry or
// DeliveryDrop) and the time the app took.
func (m *Metrics) PubsubDelivered(pubsub, topic, outcome string, elapsed time.Duration) {
	if m == nil {
		return
	}
	p := &m.pubsub
	pubsub, topic = m.topics.get(pubsub), m.topics.get(topic)
	p.ingressCount.WithLabelValues(pubsub, p.namespace, outcome, topic, outcome).Inc()
	if elapsed > 0 {
		p.ingressLatency.WithLabelValues(pubsub, p.namespace, outcome, topic, outcome).Observe(float64(elapsed) / float64(time.Millisecond))
	}
}
