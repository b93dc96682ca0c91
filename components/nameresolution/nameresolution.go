// Package nameresolution is the contract for name resolution components
// (nameresolution.sqlite — the self-hosted default, nameresolution.mdns,
// nameresolution.kubernetes): they map an app id to the internal gRPC
// addresses of the sidecars serving it, and optionally announce this one.
//
// The runtime creates one resolver per sidecar, chosen by the Configuration
// resource's spec.nameResolution.component (type "nameresolution.<name>").
// It calls Init with spec.nameResolution.configuration, Register once the
// sidecar's internal gRPC server listens and its APIs serve, Register again
// when what it announces changes (the app's pid once `mecha run` started it),
// Resolve on every call to another app (the invocation block caches the
// answer briefly and balances over the addresses), and on shutdown
// Deregister (when implemented) before draining, then Close.
package nameresolution

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Instance describes one running sidecar.
type Instance struct {
	// InstanceID is unique per sidecar process.
	InstanceID string
	AppID      string
	Namespace  string
	// Address is host:port of the internal gRPC server (sidecar-to-sidecar),
	// as other sidecars reach it: 127.0.0.1:<port> in self-hosted mode.
	Address      string
	HTTPPort     int
	GRPCPort     int
	InternalPort int
	AppPort      int
	// AppProtocol is http, https, grpc, grpcs or h2c ("" without an app).
	AppProtocol string
	// PID is the sidecar's process id (the `mecha run` process when the
	// sidecar runs in-process), and AppPID the app's when known.
	PID     int
	AppPID  int
	Command string
	// StartedAt is when the sidecar started.
	StartedAt time.Time
	// LastSeen is filled in by Lister implementations: when the instance
	// last proved it was alive (its last heartbeat).
	LastSeen time.Time
}

// ResolveRequest asks for the sidecars of an app.
type ResolveRequest struct {
	ID        string
	Namespace string
}

// Resolver is what every name resolution component implements.
type Resolver interface {
	// Init configures the resolver from the Configuration resource's
	// spec.nameResolution.configuration (as string properties).
	Init(ctx context.Context, md components.Metadata) error
	// Register announces this sidecar and keeps the announcement alive
	// until Close. Calling it again replaces the announcement (same
	// InstanceID, updated fields). Resolvers that cannot announce (DNS) do
	// nothing.
	Register(ctx context.Context, self Instance) error
	// Resolve returns the internal gRPC addresses of the app's live
	// sidecars, in a stable order, or an error wrapping ErrNotFound when
	// there is none.
	Resolve(ctx context.Context, req ResolveRequest) ([]string, error)
	// Close withdraws the announcement, stops background work and
	// releases resources.
	io.Closer
}

// Deregisterer resolvers can withdraw the announcement before Close while
// still resolving: the runtime calls Deregister first on shutdown, so that
// no new callers find the sidecar while it drains the calls in flight
// (which may call other apps).
type Deregisterer interface {
	Deregister(ctx context.Context) error
}

// Lister resolvers can enumerate the live sidecars they know (for
// `mecha list`).
type Lister interface {
	List(ctx context.Context) ([]Instance, error)
}

// ErrNotFound is returned (wrapped) when no sidecar serves the app id.
var ErrNotFound = errors.New("app id not found")
