// Package benchmarks holds the in-process benchmarks of the state hot path,
// from the outside in, each with b.Loop and b.ReportAllocs:
//
//   - BenchmarkStateHTTP: save+get over a real loopback connection to a
//     sidecar started with mechatest (state.in-memory), next to the same
//     client against a bare net/http server, so the sidecar's share of the
//     time and allocations is the difference;
//   - BenchmarkStateGRPC: the same with SaveState+GetState, next to a stub
//     Dapr gRPC server;
//   - BenchmarkStateHandlers: the HTTP handler and the gRPC service methods
//     called directly, without a network or a client;
//   - BenchmarkStateBlock: the state block alone, and the store under it.
//
// Run them with
//
//	go test -run '^$' -bench . -benchmem ./internal/benchmarks
//
// and compare runs with benchstat. `mecha bench` (internal/cli/bench) is the
// out-of-process load tool; BENCHMARKS.md has the figures.
package benchmarks
