// Package metrics is the sidecar's Prometheus instrumentation: the same
// metric names, labels and buckets as daprd (pkg/diagnostics, exported by
// its OpenCensus bridge with namespace "dapr"), so existing Dapr Grafana
// dashboards and alerts keep working against Mecha.
//
// One *Metrics per sidecar holds its own prometheus.Registry (never the
// global one: tests and `mecha run -f` run many sidecars in one process).
// A nil *Metrics is valid and records nothing, so the runtime can call the
// hooks unconditionally and pay nothing when metrics are off.
//
// The hooks, one per place a metric is observed:
//
//   - HTTPServer wraps the HTTP API handler: dapr_http_server_request_count,
//     _latency, _response_count, _request_bytes, _response_bytes.
//   - ServerOption is a gRPC stats handler for the API and internal
//     servers: dapr_grpc_io_server_completed_rpcs, _server_latency,
//     _received_bytes_per_rpc, _sent_bytes_per_rpc; on the internal server
//     also the callee side of service invocation
//     (dapr_runtime_service_invocation_req_recv_total, _res_sent_total), and
//     on the API server the caller side of proxied gRPC streams.
//   - ClientDialOption (app gRPC channel, sidecar-to-sidecar client) and
//     HTTPTransport (app HTTP channel): dapr_grpc_io_client_* and
//     dapr_http_client_*.
//   - Remote wraps the sidecar-to-sidecar invocation client: the caller side
//     of service invocation (dapr_runtime_service_invocation_req_sent_total,
//     _res_recv_total, _res_recv_latency_ms).
//   - PubsubPublished / PubsubDelivered: dapr_component_pubsub_egress_* and
//     _ingress_*.
//   - StateOp, OutputBindingOp, InputBindingEvent, SecretOp,
//     ConfigurationOp: daprd's per-component operation metrics,
//     dapr_component_state_*, _output_binding_*, _input_binding_*,
//     _secret_* and _configuration_* (_count and _latencies, by operation
//     and success). Each building block observes its store calls in one
//     place (the state block where it starts the call's span) through a
//     hook the runtime sets only when metrics are on; requests the block
//     refuses before calling a component (no such component, an
//     operation the binding does not declare) are not operations, so the
//     component and operation labels only take values the sidecar's
//     components have.
//   - ComponentInitialized / ComponentInitFailed:
//     dapr_runtime_component_loaded, _init_total, _init_fail_total.
//   - The actor runtime's events (it takes *Metrics as its actors.Metrics):
//     dapr_runtime_actor_activated_total, _deactivated_total,
//     _deactivated_failed_total, _rebalanced_total, _timers_fired_total,
//     _reminders_fired_total, _table_operation_recv_total; ObserveActors
//     reads its gauges at scrape time (_pending_actor_calls, _timers,
//     _reminders), rather than every call updating them.
//
// Latencies are milliseconds with daprd's default buckets; sizes use
// daprd's byte buckets.
//
// # The path label
//
// A sidecar's HTTP metrics have the path label "" by default (a few static
// paths aside): spec.metric.http.increasedCardinality is off unless the
// Configuration sets it (daprd 1.18 still defaults it to true, warning it
// will flip; per-path series are what made daprd's metrics memory grow).
// With increasedCardinality: true, as daprd, the label is the request path
// less its variable parts (NormalizePath): /v1.0/state/statestore/order-17 becomes
// /v1.0/state/statestore, /v1.0/secrets/vault/db-password becomes
// /v1.0/secrets/vault, actor ids become {id}. Keys and ids never reach a
// label. Other paths (service invocation methods, an unknown route a
// client made up) are kept as they are, as daprd does; so that they cannot
// grow the registry without bound, a sidecar keeps at most MaxPaths
// distinct path values and labels every further new path "" (the value
// daprd uses for every path with increasedCardinality: false, which
// Options.LowCardinality selects).
//
// # The endpoint
//
// Listen serves the registry on every path (daprd serves "/"; Prometheus
// asks for /metrics). `mecha sidecar` follows daprd: --enable-metrics on,
// --metrics-port 9090; --metrics-listen-address defaults to the API's
// --dapr-listen-addresses (127.0.0.1 unless opened up) where daprd uses
// 0.0.0.0, so a sidecar exposes nothing more than its API by default.
// Several sidecars on one host cannot share a port: `mecha run` and each
// app of `mecha run -f` get a free port (as the dapr CLI gives them) and
// pass it to the app in DAPR_METRICS_PORT; a port that is taken makes the
// sidecar log a warning and run without the endpoint, where daprd exits
// ("failed to listen on …"): losing metrics should not take the app's
// sidecar down.
package metrics
