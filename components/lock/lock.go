// Package lock is the contract for distributed lock components (lock.redis,
// lock.in-memory, ...): named, owner-held locks with an expiry.
package lock

import (
	"context"
	"io"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Store is what every lock store implements.
type Store interface {
	Init(ctx context.Context, md components.Metadata) error
	// TryLock acquires ResourceID for LockOwner for Expiry, without waiting.
	// It returns false (and no error) when someone else holds the lock.
	TryLock(ctx context.Context, req TryLockRequest) (bool, error)
	// Unlock releases ResourceID if LockOwner holds it.
	Unlock(ctx context.Context, req UnlockRequest) (UnlockStatus, error)
	io.Closer
}

// TryLockRequest asks for a lock.
type TryLockRequest struct {
	ResourceID string
	LockOwner  string
	Expiry     time.Duration
}

// UnlockRequest releases a lock.
type UnlockRequest struct {
	ResourceID string
	LockOwner  string
}

// UnlockStatus is the outcome of Unlock; the values are Dapr's wire values.
type UnlockStatus int32

const (
	Success             UnlockStatus = 0
	LockDoesNotExist    UnlockStatus = 1
	LockBelongsToOthers UnlockStatus = 2
	InternalError       UnlockStatus = 3
)
