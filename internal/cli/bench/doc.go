// Package bench is `mecha bench`, Mecha's load and start-up benchmark tool.
//
// One operation is a pair: save a key (256-byte value by default), then get
// it back. N workers (--concurrency) each loop over their own keys for
// --duration (or until --requests pairs are done) after a warm-up, and every
// pair's latency is recorded in memory; the report gives pairs/s and the
// p50/p90/p99 latency per pair. Scenarios:
//
//	mecha bench state-http  --http-addr 127.0.0.1:3500 [--store statestore]
//	mecha bench state-grpc  --grpc-addr 127.0.0.1:50001 [--conns 1]
//	mecha bench redis-direct --redis-addr 127.0.0.1:6379
//	mecha bench startup     [--binary ./mecha] [--resources-path DIR] [--runs 10]
//	mecha bench all         --redis-addr 127.0.0.1:6379 [--repeat 3] [--json]
//
// state-http and state-grpc talk to a running sidecar, or with --self start
// one. redis-direct calls the state.redis component in-process (exactly the
// storage operations the sidecar performs per request, so the difference is
// the sidecar's overhead) and, for reference, plain go-redis HSET+HGET.
// startup execs `mecha sidecar` repeatedly and measures exec → first 204 from
// /v1.0/healthz and the idle RSS. all starts its own sidecars (in-memory, and
// Redis when --redis-addr is set) from this very binary, runs every scenario
// and prints one table with the comparisons against daprd and Mecha's
// targets.
//
// The load generator runs on the same machine as the sidecar and Redis; the
// report says so and shows the CPU each process spent per pair, read from
// /proc on Linux. Every process bench starts is stopped by its PID on exit,
// Ctrl-C included, and its temporary directory removed.
package bench
