package resiliency

// Policy kinds and flow directions, as daprd's resiliency metrics label
// them.
const (
	PolicyTimeout        = "timeout"
	PolicyRetry          = "retry"
	PolicyCircuitBreaker = "circuitbreaker"

	FlowOutbound = "outbound"
	FlowInbound  = "inbound"
)

// Labels identify one policy applied to one target in metrics: Name and
// Namespace are the Resiliency resource's, Policy a policy kind, Flow the
// direction, Target the target ("app_<id>", "actor_<type>",
// "<Type>_<component>", e.g. "Statestore_statestore"), and Status the
// circuit breaker's state for circuit breaker policies ("" otherwise).
type Labels struct {
	Name, Namespace, Policy, Flow, Target, Status string
}

// Recorder receives the resiliency metrics. The metrics package implements
// it with daprd's series:
//
//   - PolicyLoaded: dapr_resiliency_loaded{name, namespace}, once per
//     Resiliency resource applied;
//   - PolicyExecuted: dapr_resiliency_count{name, policy, namespace,
//     flow_direction, target, status}, once per policy kind per call made
//     under a policy; for circuit breakers status is the breaker's state
//     and dapr_resiliency_cb_state (1 for that state, 0 for the others)
//     follows it;
//   - PolicyActivated: dapr_resiliency_activations_total{...}, when a
//     timeout fires, when a call is retried (once per call), and when a
//     breaker changes state (status: the new state).
//
// Implementations must be safe for concurrent use and must not block.
type Recorder interface {
	PolicyLoaded(name, namespace string)
	PolicyExecuted(l Labels)
	PolicyActivated(l Labels)
}
