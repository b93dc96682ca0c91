// Package state is the contract for state store components: a small required
// interface (Store), optional abilities discovered by type assertion
// (Transactional, BulkGetter), the request types, and the typed errors the
// runtime maps to Dapr's status codes.
//
// Keys reaching a store are already prefixed by the runtime ("appid||key");
// stores treat them as opaque strings.
package state

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Feature is a capability a store declares; the names are Dapr's, and they
// are reported as-is by the metadata API.
type Feature string

const (
	// FeatureETag means the store implements optimistic concurrency with
	// ETags (mismatches return ErrETagMismatch).
	FeatureETag Feature = "ETAG"
	// FeatureTransactional means the store implements Transactional.
	FeatureTransactional Feature = "TRANSACTIONAL"
	// FeatureTTL means the store honours SetRequest.TTL.
	FeatureTTL Feature = "TTL"
	// FeatureQuery means the store implements the query API.
	FeatureQuery Feature = "QUERY_API"
	// FeatureActor is added by the runtime (never by a store) when the
	// component is configured as the actor state store.
	FeatureActor Feature = "ACTOR"
)

// Store is what every state store implements.
type Store interface {
	// Init configures the store and connects to its backend. It is called
	// once, before any other method.
	Init(ctx context.Context, md components.Metadata) error
	// Features lists the capabilities of the initialised store.
	Features() []Feature
	// Get reads one key. A missing (or expired) key returns a response with
	// nil Data and no error.
	Get(ctx context.Context, req *GetRequest) (*GetResponse, error)
	// Set writes one key, honouring ETag, Options.Concurrency and TTL.
	Set(ctx context.Context, req *SetRequest) error
	// Delete removes one key, honouring ETag. Deleting a missing key
	// without an ETag succeeds.
	Delete(ctx context.Context, req *DeleteRequest) error
	// Close releases the store's connections and goroutines.
	io.Closer
}

// Transactional stores apply a list of operations atomically: all of them or
// none. An ETag failure in any operation aborts the whole transaction.
type Transactional interface {
	Multi(ctx context.Context, req *TransactionRequest) error
}

// BulkGetter stores read many keys in one round trip. The runtime falls back
// to parallel Get calls for stores without it.
type BulkGetter interface {
	BulkGet(ctx context.Context, keys []string, opts GetOptions) ([]BulkItem, error)
}

// Pinger stores can report backend health cheaply.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Concurrency selects the write conflict policy.
type Concurrency string

const (
	// LastWrite (the default) lets an unconditional write win.
	LastWrite Concurrency = "last-write"
	// FirstWrite requires an ETag for updates; without one, a write only
	// succeeds when the key does not exist yet.
	FirstWrite Concurrency = "first-write"
)

// Consistency is a hint passed through to stores that support it.
type Consistency string

const (
	Eventual Consistency = "eventual"
	Strong   Consistency = "strong"
)

// GetOptions are the options of a read.
type GetOptions struct {
	Consistency Consistency
	// Metadata holds per-request component metadata (query parameters
	// "metadata.*" with the prefix removed).
	Metadata map[string]string
}

// GetRequest reads one key.
type GetRequest struct {
	Key string
	GetOptions
}

// GetResponse is the result of a read. Data is nil for a missing key.
type GetResponse struct {
	Data []byte
	// ETag is the key's current version; empty when the store has none.
	ETag string
	// ExpireTime is when the key expires, for stores with FeatureTTL and a
	// key written with a TTL.
	ExpireTime *time.Time
}

// WriteOptions are the options of a write or delete.
type WriteOptions struct {
	Concurrency Concurrency
	Consistency Consistency
}

// SetRequest writes one key.
type SetRequest struct {
	Key   string
	Value []byte
	// ETag, when non-nil, must equal the stored version, or the write fails
	// with ErrETagMismatch (also when the key does not exist).
	ETag *string
	// TTL, when positive, makes the key expire after that long. Zero means
	// the key never expires (an earlier TTL is cleared).
	TTL      time.Duration
	Options  WriteOptions
	Metadata map[string]string
}

// DeleteRequest removes one key.
type DeleteRequest struct {
	Key      string
	ETag     *string
	Options  WriteOptions
	Metadata map[string]string
}

// Operation is one step of a transaction: exactly one of Set or Delete is
// non-nil.
type Operation struct {
	Set    *SetRequest
	Delete *DeleteRequest
}

// TransactionRequest is an atomic list of operations.
type TransactionRequest struct {
	Operations []Operation
	Metadata   map[string]string
}

// BulkItem is one key's result in a bulk read.
type BulkItem struct {
	Key        string
	Data       []byte
	ETag       string
	ExpireTime *time.Time
	// Error is set when this key alone failed.
	Error string
}

// ETag errors. Stores return these (wrapped or not); the runtime maps a
// mismatch to HTTP 409 / gRPC Aborted and an invalid ETag to 400 /
// InvalidArgument.
var (
	ErrETagMismatch = errors.New("possible etag mismatch: the key was changed or does not exist")
	ErrETagInvalid  = errors.New("invalid etag value")
)

// Has reports whether f is in the feature list.
func Has(features []Feature, f Feature) bool {
	return slices.Contains(features, f)
}
