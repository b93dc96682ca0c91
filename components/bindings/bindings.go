// Package bindings is the contract for binding components: output bindings
// the app invokes (bindings.http, bindings.redis, ...) and input bindings
// that deliver external events to the app (bindings.cron, bindings.mqtt3).
// One component type may implement both.
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
	Operations() []Operation
	Invoke(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error)
	io.Closer
}

// InvokeRequest is one call of an output binding.
type InvokeRequest struct {
	Operation Operation
	Data      []byte
	Metadata  map[string]string
}

// InvokeResponse is an output binding's answer; a nil response or nil Data
// means "no content".
type InvokeResponse struct {
	Data        []byte
	Metadata    map[string]string
	ContentType string
}

// Input is an input binding.
type Input interface {
	Init(ctx context.Context, md components.Metadata) error
	// Read delivers events to handler until ctx ends. A handler error tells
	// the binding the app did not accept the event; bindings that can
	// redeliver do so.
	Read(ctx context.Context, handler Handler) error
	io.Closer
}

// Event is one input event.
type Event struct {
	Data     []byte
	Metadata map[string]string
}

// Handler receives an input event and returns the app's response body.
type Handler func(ctx context.Context, e *Event) ([]byte, error)
