// Package secrets is the secrets building block: reads secrets from secret
// store components by name, enforces the Configuration's secret scopes, and
// resolves secretKeyRef values in other components' metadata.
//
// It knows nothing about HTTP or gRPC: both transports call Get and BulkGet
// and receive *apierr.Error values with daprd's codes.
package secrets

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mecha-dev/mecha/components/secretstores"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// Block serves the secrets API.
type Block struct {
	stores *compset.Set[secretstores.Store]
	// scopes is replaced whole by SetScopes and read without a lock.
	scopes atomic.Pointer[map[string]*policy]
	// res supplies the stores' outbound resiliency policies (nil: none).
	res *resiliency.Provider
	// observe is told about every store call of the API (nil: nothing is).
	observe Observer
}

// New returns an empty block.
func New() *Block { return &Block{stores: compset.New[secretstores.Store]()} }

// Add registers an initialised secret store.
func (b *Block) Add(name string, s secretstores.Store) error { return b.stores.Add(name, s) }

// Names lists the registered stores, sorted.
func (b *Block) Names() []string { return b.stores.Names() }

// Close closes every store.
func (b *Block) Close() error { return b.stores.Close() }

// Resolve returns the value of key in secret name of store, for a
// component's secretKeyRef (key defaults to name, as in Dapr). Scopes do not
// apply: this is the operator's configuration, not an app request.
func (b *Block) Resolve(ctx context.Context, store, name, key string) (string, error) {
	s, ok := b.stores.Get(store)
	if !ok {
		return "", fmt.Errorf("secret store %s is not loaded (it is not defined, not in scope for this app, or failed to initialise)", store)
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

// GetRequest reads one secret.
type GetRequest struct {
	Store string
	Name  string
	// Metadata is passed to the store (e.g. "namespace", "version_id").
	Metadata map[string]string
}

// Get returns the key/values of one secret; nil data (no error) means the
// store returned none, which the HTTP API answers with 204.
func (b *Block) Get(ctx context.Context, req GetRequest) (map[string]string, error) {
	s, err := b.store(req.Store)
	if err != nil {
		return nil, err
	}
	if !b.allowed(req.Store, req.Name) {
		return nil, apierr.SecretPermissionDenied.New("access denied by policy to get %q from %q", req.Name, req.Store)
	}
	var data map[string]string
	err = b.call(ctx, req.Store, opGet, func(ctx context.Context) (err error) {
		data, err = s.Get(ctx, secretstores.GetRequest{Name: req.Name, Metadata: req.Metadata})
		return err
	})
	if err != nil {
		return nil, apierr.SecretGet.Wrap(err, "failed getting secret with key %s from secret store %s", req.Name, req.Store)
	}
	return data, nil
}

// BulkGetRequest reads every secret of a store.
type BulkGetRequest struct {
	Store    string
	Metadata map[string]string
}

// BulkGet returns every secret of a store that the scopes allow; denied
// secrets are left out, as daprd does, rather than failing the request.
func (b *Block) BulkGet(ctx context.Context, req BulkGetRequest) (map[string]map[string]string, error) {
	s, err := b.store(req.Store)
	if err != nil {
		return nil, err
	}
	var all map[string]map[string]string
	err = b.call(ctx, req.Store, opBulkGet, func(ctx context.Context) (err error) {
		all, err = s.BulkGet(ctx, secretstores.BulkGetRequest{Metadata: req.Metadata})
		return err
	})
	if err != nil {
		return nil, apierr.SecretGet.Wrap(err, "failed getting secrets from secret store %s", req.Store)
	}
	if all == nil {
		return nil, nil
	}
	p := b.policy(req.Store)
	if p == nil {
		return all, nil
	}
	out := make(map[string]map[string]string, len(all))
	for name, kv := range all {
		if p.allows(name) {
			out[name] = kv
		}
	}
	return out, nil
}

func (b *Block) store(name string) (secretstores.Store, error) {
	if s, ok := b.stores.Get(name); ok {
		return s, nil
	}
	if b.stores.Len() == 0 {
		return nil, apierr.SecretStoresNotConfigured.New("secret store is not configured")
	}
	return nil, apierr.SecretStoreNotFound.New("failed finding secret store with key %s", name)
}

// SetResiliency makes calls to the stores go through their outbound
// resiliency policies. Call it before the block serves; nil (the default)
// applies none.
func (b *Block) SetResiliency(p *resiliency.Provider) { b.res = p }

// Observer is told about every store call of the secrets API: the store,
// daprd's operation name (get, bulk_get), whether it succeeded and how
// long it took, resiliency retries included (metrics). Requests refused
// before the store is asked (no such store, denied by scope) are not
// calls; secretKeyRef lookups for components are not the API's.
type Observer func(store, op string, success bool, elapsed time.Duration)

// SetObserver sets the block's Observer. Call it before the block serves;
// nil (the default) observes nothing.
func (b *Block) SetObserver(o Observer) { b.observe = o }

// Operation names, as daprd's metrics label them.
const (
	opGet     = "get"
	opBulkGet = "bulk_get"
)

// call runs fn, one call to store, under the store's outbound resiliency
// policy, and observes it as op: the one place the API's store calls go
// through.
func (b *Block) call(ctx context.Context, store, op string, fn func(ctx context.Context) error) error {
	var start time.Time
	if b.observe != nil {
		start = time.Now()
	}
	err := b.res.ComponentOutbound(store, resiliency.Secretstore).Run(ctx, fn)
	if b.observe != nil {
		b.observe(store, op, err == nil, time.Since(start))
	}
	return err
}
