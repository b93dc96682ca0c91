// Package secretstores is the contract for secret store components
// (secretstores.local.file, secretstores.local.env, secretstores.kubernetes,
// ...). A secret has a name and one or more key/value pairs; stores that
// hold exactly one value per name return {name: value}.
package secretstores

import (
	"context"
	"errors"
	"io"

	"github.com/mecha-dev/mecha/components"
)

// Feature is a capability a store declares.
type Feature string

// FeatureMultipleKeyValues means a secret may hold several key/value pairs
// (Dapr's MULTIPLE_KEY_VALUES_PER_SECRET).
const FeatureMultipleKeyValues Feature = "MULTIPLE_KEY_VALUES_PER_SECRET"

// Store is what every secret store implements.
type Store interface {
	Init(ctx context.Context, md components.Metadata) error
	Features() []Feature
	// Get returns the key/value pairs of the secret name, or an error
	// wrapping ErrNotFound when there is no such secret.
	Get(ctx context.Context, req GetRequest) (map[string]string, error)
	// BulkGet returns every secret the store holds, by name.
	BulkGet(ctx context.Context, req BulkGetRequest) (map[string]map[string]string, error)
	io.Closer
}

// GetRequest reads one secret.
type GetRequest struct {
	Name     string
	Metadata map[string]string
}

// BulkGetRequest reads all secrets.
type BulkGetRequest struct {
	Metadata map[string]string
}

// ErrNotFound is returned (wrapped) for a secret that does not exist.
var ErrNotFound = errors.New("secret not found")
