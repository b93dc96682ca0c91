// Package secretstores is the contract for secret store components
// (secretstores.local.file, secretstores.local.env, secretstores.kubernetes,
// ...). A secret has a name and one or more key/value pairs; stores that
// hold exactly one value per name return {name: value}.
//
// Stores are read-only: the secrets building block reads them for the API
// and for other components' secretKeyRef values; writing secrets is the
// backend's business.
package secretstores

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/mecha-dev/mecha/components"
)

// Feature is a capability a store declares.
type Feature string

// FeatureMultipleKeyValues means a secret may hold several key/value pairs
// (Dapr's MULTIPLE_KEY_VALUES_PER_SECRET). Without it every secret is
// exactly {name: value}.
const FeatureMultipleKeyValues Feature = "MULTIPLE_KEY_VALUES_PER_SECRET"

// Has reports whether fs contains f.
func Has(fs []Feature, f Feature) bool { return slices.Contains(fs, f) }

// Store is what every secret store implements.
type Store interface {
	// Init reads the component metadata and connects (the only I/O).
	Init(ctx context.Context, md components.Metadata) error
	// Features lists the store's guarantees; valid after Init.
	Features() []Feature
	// Get returns the key/value pairs of the secret req.Name, or an error
	// wrapping ErrNotFound when there is no such secret. A nil map with a
	// nil error means the secret exists but has no data.
	Get(ctx context.Context, req GetRequest) (map[string]string, error)
	// BulkGet returns every secret the store holds, by name.
	BulkGet(ctx context.Context, req BulkGetRequest) (map[string]map[string]string, error)
	// Close releases the store; it is idempotent.
	io.Closer
}

// GetRequest reads one secret.
type GetRequest struct {
	Name string
	// Metadata is the request's metadata (the API's metadata.* query
	// parameters), interpreted by the store, e.g. "namespace".
	Metadata map[string]string
}

// BulkGetRequest reads all secrets.
type BulkGetRequest struct {
	Metadata map[string]string
}

// ErrNotFound is returned (wrapped) for a secret that does not exist.
var ErrNotFound = errors.New("secret not found")
