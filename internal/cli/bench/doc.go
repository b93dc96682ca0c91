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
// Service invocation has its own scenarios, each a 1 KiB request answered
// with 1 KiB by a built-in target app (`mecha bench app`: HTTP echo, and
// gRPC AppCallback/OnInvoke and grpc.testing.TestService/UnaryCall):
//
//	mecha bench invoke-all  [--repeat 3] [--rate 1000] [-c 16] [--profile DIR]
//	mecha bench invoke      --call http|invoke-service|unary|oninvoke --addr HOST:PORT [--app-id B]
//	mecha bench app         [--body-size 1024]
//
// invoke-all starts the app and two sidecars (A, the caller's; B, in front
// of the app) from this binary with a temporary name resolution registry
// and measures each path (direct, app → own sidecar → app, A → B over
// /v1.0/invoke, gRPC InvokeService and transparent gRPC proxying) in two
// modes: at a fixed rate, open loop, with each latency taken from the
// request's due time so that stalls are not hidden (no coordinated
// omission), and closed loop with N workers for the maximum throughput. It
// reports the overhead against the direct call at p50 and p99, the
// throughput ratio, requests/s per sidecar core, Mecha's targets and
// daprd's figures. invoke runs one path against running processes, daprd
// included.
//
// Actor calls run on the same machinery (runCall, both modes, the CPU
// meter, the invocation report), with the bench app hosting one actor type
// (GET /dapr/config, PUT /actors/{type}/{id}/method/echo, DELETE on
// deactivation):
//
//	mecha bench actors      [--repeat 3] [--rate 1000] [--activation-rate 500] [--actors 100] [-c 16]
//
// It starts a standalone placement service (`mecha control-plane`), the
// app, sidecar B in front of it (hosting the type, with an in-memory actor
// state store) and sidecar A with no app (hosting nothing), waits until
// B's metadata says hostReady, calls --actors ids once each, and measures
// warm calls cycling round-robin through those ids (app direct, through
// B, through A and B) and activations (a new id every call, through B and
// through A and B), each at a fixed rate and closed loop, against the
// issue's targets and daprd's figures. `mecha bench invoke --call actor`
// runs one actor path against running processes, daprd included.
//
// Publish/subscribe has its own scenarios, each publishing 1 KiB JSON
// events that carry their run, a sequence number and their publish time
// (the due time at a fixed rate), delivered over HTTP to a built-in
// subscriber app (`mecha bench subscriber`) that records each event's
// arrival time and reports the records over HTTP:
//
//	mecha bench pubsub-all  [--repeat 3] [--rate 1000] [-c 16] [--max-backlog 1000] [--profile DIR]
//	mecha bench publish     --call http|grpc|raw --addr ADDR [--pubsub NAME] [--subscriber HOST:PORT] [--mode max|rate]
//	mecha bench subscriber  --subscribe PUBSUB=TOPIC [--port 0]
//
// pubsub-all starts a NATS server with JetStream (the control plane's
// embedded broker, in the hidden `mecha bench nats`, its store in a
// temporary directory), the subscriber and a sidecar in front of it with
// pubsub.jetstream (its default concurrency, and "parallel") and
// pubsub.in-memory, each a process of its own, and measures: publish
// throughput with -c workers through the sidecar over HTTP and gRPC
// against nats.go's JetStream client publishing to the same stream (the
// ratio is the sidecar's share of the raw client's throughput);
// publish → app latency at a fixed rate, open loop, from each event's due
// time (no coordinated omission), per component; and the events/s
// published and delivered with -c publishers held back while more than
// --max-backlog events are undelivered (the subscriber streams its count),
// so that the figure is what gets through, not how fast a broker's queue
// fills. It checks that every accepted event arrived (lost, duplicates)
// and reports each process's CPU per event, the comparisons with daprd
// and Mecha's targets. publish runs one of these against running
// processes, daprd included.
//
// The load generator runs on the same machine as the sidecars, the app and
// Redis; the report says so and shows the CPU each process spent per pair
// or request, read from /proc on Linux. Every process bench starts is
// stopped by its PID on exit, Ctrl-C included, and its temporary directory
// removed. MECHA_BENCH_PPROF_ADDR (see pprof.go) lets invoke-all and
// pubsub-all --profile take CPU profiles of the processes they start.
package bench
