// Package secrets is the secrets building block: reads secrets from secret
// store components by name, enforces the Configuration's secret scopes, and
// resolves secretKeyRef values in other components' metadata.
package secrets

import (
	"context"
	"fmt"

	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
)

// Block serves the secrets API.
type Block struct {
	stores *compset.Set[secretstores.Store]
}

// New returns an empty block.
func New() *Block { return &Block{stores: compset.New[secretstores.Store]()} }

// Add registers an initialised secret store.
func (b *Block) Add(name string, s secretstores.Store) error { return b.stores.Add(name, s) }

// Close closes every store.
func (b *Block) Close() error { return b.stores.Close() }

// Resolve returns the value of key in secret name of store, for a
// component's secretKeyRef (key defaults to name, as in Dapr). Scopes do not
// apply: this is the operator's configuration, not an app request.
func (b *Block) Resolve(ctx context.Context, store, name, key string) (string, error) {
	s, ok := b.stores.Get(store)
	if !ok {
		return "", fmt.Errorf("secret store %s is not loaded", store)
	}
	if key == "" {
		key = name
	}
	kv, err := s.Get(ctx, secretstores.GetRequest{Name: name})
	if err != nil {
		return "", fmt.Errorf("secret %s in store %s: %w", name, store, err)
	}
	v, ok := kv[key]
	if !ok {
		return "", fmt.Errorf("secret %s in store %s has no key %s", name, store, key)
	}
	return v, nil
}
