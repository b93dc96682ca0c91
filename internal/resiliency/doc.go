// Package resiliency applies Dapr's resiliency policies — timeouts,
// retries and circuit breakers, from Resiliency resources
// (internal/config) — to the calls the sidecar makes: service invocation
// (targets.apps), actor calls (targets.actors), and component calls
// outbound (state, publish, output bindings, secrets, configuration, lock)
// and inbound (pub/sub and input binding deliveries to the app).
//
// A Provider holds the loaded policies; call sites ask it for the Policy
// of their target and run the call through it:
//
//	pol := res.ComponentOutbound("statestore", resiliency.Statestore)
//	err := pol.Run(ctx, func(ctx context.Context) error {
//		return store.Set(ctx, req)
//	})
//
// A target without a policy gets a nil *Policy, which runs the call once
// with no overhead. An operation tells the policy what its error means:
// Permanent (do not retry), Handled (the caller's fault: do not retry, not
// a failure of the target), or a *StatusError (the target answered with a
// failure status, retried when the retry policy's matching codes list
// it); any other error is a retryable failure. Each attempt runs under
// the timeout and through the breakers; a timed-out attempt fails with
// context.DeadlineExceeded, an open breaker with ErrBreakerOpen.
//
// Resolution follows daprd: a target entry names the policies of its
// target; a target without one gets the Default*Policy policies of its
// level (e.g. DefaultStatestoreComponentOutboundRetryPolicy, then
// DefaultComponentOutboundRetryPolicy, DefaultComponentRetryPolicy,
// DefaultRetryPolicy). Built-in retries (DaprBuiltInServiceRetries: 3
// retries 1s apart when another sidecar cannot be reached) are Schedules
// that a resource may replace, with no fewer than three retries.
//
// Metrics go to a Recorder (dapr_resiliency_loaded, _count,
// _activations_total, _cb_state).
package resiliency
