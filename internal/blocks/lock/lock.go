// Package lock is the distributed lock building block: TryLock and Unlock
// over lock store components, with daprd's validation, messages and error
// codes, and Dapr's lock key scheme.
//
// The key scheme decides which sidecars share a lock. A resource id r is
// stored under "lock||<prefix>||r", where the prefix comes from the
// component's keyPrefix metadata, as in daprd (pkg/components/lock):
//
//	appid (default)  the app id: each app has its own locks ("lock||r" when the app has no id)
//	name             the component name: every app using the component shares its locks
//	none             no prefix ("lock||r"): shared by every app on the backend
//	<anything else>  that literal, lower-cased (daprd lower-cases it too)
//
// Because the layout is daprd's, a Mecha sidecar and a daprd sidecar with the
// same app id on the same backend exclude each other.
//
// The block knows nothing about HTTP or gRPC: both transports call it.
package lock

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components"
	clock "github.com/mecha-dev/mecha/components/lock"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// Separator joins the parts of a lock key, as in Dapr.
const Separator = "||"

// keyRoot starts every lock key, as in Dapr.
const keyRoot = "lock" + Separator

// Block serves the lock API.
type Block struct {
	appID  string
	stores *compset.Set[*store]
	// res supplies the stores' outbound resiliency policies (nil: none).
	res *resiliency.Provider
}

// store is a registered lock store with its resolved key prefix.
type store struct {
	clock.Store
	// prefix is "lock||" plus, unless the strategy yields none, the
	// prefix and another separator.
	prefix string
}

// NewForApp returns an empty block serving the app appID.
func NewForApp(appID string) *Block {
	return &Block{appID: appID, stores: compset.New[*store]()}
}

// New returns an empty block for a sidecar without an app id. The runtime
// should use NewForApp, or apps cannot have locks of their own.
func New() *Block { return NewForApp("") }

// Add registers an initialised lock store with the default key prefix
// (the app id). Use AddWithMetadata to honour the component's keyPrefix.
func (b *Block) Add(name string, s clock.Store) error {
	return b.AddWithMetadata(name, s, components.Metadata{Name: name})
}

// AddWithMetadata registers an initialised lock store; md is its component
// metadata, from which the runtime-level keyPrefix property is read.
func (b *Block) AddWithMetadata(name string, s clock.Store, md components.Metadata) error {
	prefix, err := keyPrefix(md.String("keyPrefix", "appid"), name, b.appID)
	if err != nil {
		return err
	}
	return b.stores.Add(name, &store{Store: s, prefix: prefix})
}

// keyPrefix resolves Dapr's keyPrefix strategy into the start of every key.
func keyPrefix(strategy, storeName, appID string) (string, error) {
	strategy = strings.ToLower(strategy)
	if strings.Contains(strategy, Separator) {
		return "", fmt.Errorf("metadata keyPrefix: input key/keyPrefix '%s' can't contain '%s'", strategy, Separator)
	}
	var p string
	switch strategy {
	case "appid":
		p = appID
	case "name":
		p = storeName
	case "none":
	default:
		p = strategy
	}
	if p == "" {
		return keyRoot, nil
	}
	return keyRoot + p + Separator, nil
}

// Names lists the registered stores, sorted.
func (b *Block) Names() []string { return b.stores.Names() }

// Close closes every store.
func (b *Block) Close() error { return b.stores.Close() }

// TryLockRequest is a TryLock call as it arrives on the wire.
type TryLockRequest struct {
	Store           string
	ResourceID      string
	LockOwner       string
	ExpiryInSeconds int32
}

// UnlockRequest is an Unlock call as it arrives on the wire.
type UnlockRequest struct {
	Store      string
	ResourceID string
	LockOwner  string
}

// TryLock takes the lock for req.LockOwner if it is free. false means that
// someone (possibly req.LockOwner itself) holds it.
func (b *Block) TryLock(ctx context.Context, req TryLockRequest) (bool, error) {
	// daprd checks the expiry before anything else, even the store.
	if req.ExpiryInSeconds <= 0 {
		return false, apierr.MalformedRequest.New("ExpiryInSeconds is not positive in lock store %s", req.Store)
	}
	s, err := b.resolve(req.Store, req.ResourceID, req.LockOwner)
	if err != nil {
		return false, err
	}
	key, err := s.key(req.ResourceID)
	if err != nil {
		return false, apierr.LockTry.Wrap(err, "failed to try acquiring lock")
	}
	var ok bool
	err = b.res.ComponentOutbound(req.Store, resiliency.Lock).Run(ctx, func(ctx context.Context) (err error) {
		ok, err = s.TryLock(ctx, clock.TryLockRequest{
			ResourceID: key,
			LockOwner:  req.LockOwner,
			Expiry:     secondsToDuration(req.ExpiryInSeconds),
		})
		return err
	})
	if err != nil {
		return false, apierr.LockTry.Wrap(err, "failed to try acquiring lock")
	}
	return ok, nil
}

// Unlock releases the lock if req.LockOwner holds it. On error the status is
// InternalError, as daprd reports it.
func (b *Block) Unlock(ctx context.Context, req UnlockRequest) (clock.UnlockStatus, error) {
	s, err := b.resolve(req.Store, req.ResourceID, req.LockOwner)
	if err != nil {
		return clock.InternalError, err
	}
	key, err := s.key(req.ResourceID)
	if err != nil {
		return clock.InternalError, apierr.LockUnlock.Wrap(err, "failed to release lock")
	}
	var st clock.UnlockStatus
	err = b.res.ComponentOutbound(req.Store, resiliency.Lock).Run(ctx, func(ctx context.Context) (err error) {
		st, err = s.Unlock(ctx, clock.UnlockRequest{ResourceID: key, LockOwner: req.LockOwner})
		return err
	})
	if err != nil {
		return clock.InternalError, apierr.LockUnlock.Wrap(err, "failed to release lock")
	}
	return st, nil
}

// resolve validates the common fields and finds the store, in daprd's order.
func (b *Block) resolve(name, resourceID, owner string) (*store, error) {
	if b.stores.Len() == 0 {
		return nil, apierr.LockStoreNotConfigured.New("lock store is not configured")
	}
	if resourceID == "" {
		return nil, apierr.MalformedRequest.New("ResourceId is empty in lock store %s", name)
	}
	if owner == "" {
		return nil, apierr.MalformedRequest.New("LockOwner is empty in lock store %s", name)
	}
	s, ok := b.stores.Get(name)
	if !ok {
		return nil, apierr.LockStoreNotFound.New("lock store %s not found", name)
	}
	return s, nil
}

// key is the stored key of resourceID. Ids containing the separator are
// refused, so that one app cannot reach into another's locks.
func (s *store) key(resourceID string) (string, error) {
	if strings.Contains(resourceID, Separator) {
		return "", fmt.Errorf("input key/keyPrefix '%s' can't contain '%s'", resourceID, Separator)
	}
	return s.prefix + resourceID, nil
}

func secondsToDuration(n int32) time.Duration { return time.Duration(n) * time.Second }

// SetResiliency makes calls to the stores go through their outbound
// resiliency policies. Call it before the block serves; nil (the default)
// applies none.
func (b *Block) SetResiliency(p *resiliency.Provider) { b.res = p }
