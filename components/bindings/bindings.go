// Package bindings is the contract for binding components: output bindings
// the app invokes (bindings.http, bindings.redis, ...) and input bindings
// that deliver external events to the app (bindings.cron, bindings.mqtt3).
// One component type may implement both; the runtime then creates one
// instance per direction, so an implementation never has to share a
// connection between its input and output side.
package bindings

import (
	"context"
	"io"

	"github.com/mecha-dev/mecha/components"
)

// Operation names an output binding operation ("create", "get", ...).
type Operation string

// Common operations.
const (
	OperationCreate Operation = "create"
	OperationGet    Operation = "get"
	OperationDelete Operation = "delete"
	OperationList   Operation = "list"
)

// Output is an output binding.
type Output interface {
	Init(ctx context.Context, md components.Metadata) error
	// Operations lists the operations Invoke accepts. The building block
	// rejects any other operation before calling Invoke.
	Operations() []Operation
	// Invoke performs one operation. It may return a response together
	// with an error: the response's Metadata still reaches the caller, as
	// in Dapr (bindings.http reports the status of a non-2xx answer so).
	Invoke(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error)
	io.Closer
}

// InvokeRequest is one call of an output binding.
type InvokeRequest struct {
	Operation Operation
	// Data is the payload. Over the HTTP API it is the JSON text of the
	// request's "data" field, so a JSON string arrives with its quotes, as
	// in Dapr; over gRPC it is the raw bytes.
	Data []byte
	// Metadata is the per-request metadata; never nil.
	Metadata map[string]string
}

// InvokeResponse is an output binding's answer. A nil response means "no
// content" (HTTP 204); a non-nil response is HTTP 200 with Data as the body,
// even when Data is empty, as in daprd.
type InvokeResponse struct {
	Data     []byte
	Metadata map[string]string
	// ContentType is informational; the HTTP API answers application/json
	// as daprd does.
	ContentType string
}

// Input is an input binding.
type Input interface {
	Init(ctx context.Context, md components.Metadata) error
	// Read delivers events to handler until ctx ends or the binding is
	// closed, then returns nil; it returns an error only when it cannot
	// read at all. It is called at most once per instance. A handler error
	// tells the binding the app did not accept the event; bindings that can
	// redeliver do so.
	Read(ctx context.Context, handler Handler) error
	io.Closer
}

// Event is one input event.
type Event struct {
	Data []byte
	// Metadata describes the event (for example the MQTT topic); the
	// building block passes it to the app as HTTP headers or gRPC metadata.
	Metadata map[string]string
}

// Handler receives an input event and returns the app's response body.
type Handler func(ctx context.Context, e *Event) ([]byte, error)
