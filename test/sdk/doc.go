// Package sdk is Mecha's black-box SDK compatibility suite. It builds the
// mecha binary, starts `mecha sidecar` processes on free 127.0.0.1 ports and
// drives them with the public Dapr Go SDK (github.com/dapr/go-sdk) and with
// plain net/http, asserting what Dapr's clients depend on: return values,
// gRPC status codes, HTTP statuses and errorCode values.
//
// It is a separate Go module on purpose: it must never import Mecha's own
// packages (they link Dapr's generated protos at another version, and the
// protobuf registry panics on duplicate registrations), and it must test the
// binary the way a user runs it. All the tests live in _test.go files; see
// README.md for how to run them.
package sdk
