// Package lock is the contract for distributed lock components (lock.redis,
// lock.sqlite, lock.postgresql, lock.in-memory): named, owner-held locks
// with an expiry, as Dapr's distributed lock API (alpha) serves them.
//
// The semantics every store must keep, checked by the conformance suite in
// locktest:
//
//   - TryLock never waits: it either takes a free (or expired) lock and
//     returns true, or returns false because the lock is held.
//   - Locks are not re-entrant: TryLock by the owner that already holds the
//     lock returns false, as in Dapr.
//   - A lock is released by Unlock from its owner or by its expiry, whichever
//     comes first; an expired lock is free for anyone.
//   - Unlock reports what happened with Dapr's status values: Success,
//     LockDoesNotExist (free or expired) or LockBelongsToOthers (held by a
//     different owner, which keeps it).
//
// Resource ids arrive already namespaced by the runtime (Dapr's
// "lock||<app id>||<resource>" scheme), so stores use them verbatim as keys.
package lock

import (
	"context"
	"io"
	"strconv"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// Store is what every lock store implements.
type Store interface {
	// Init configures the store from its component metadata and connects to
	// its backend; ctx bounds the connection attempt.
	Init(ctx context.Context, md components.Metadata) error
	// TryLock acquires ResourceID for LockOwner for Expiry, without waiting.
	// It returns false (and no error) when the lock is held, also by
	// LockOwner itself.
	TryLock(ctx context.Context, req TryLockRequest) (bool, error)
	// Unlock releases ResourceID if LockOwner holds it. An error means the
	// outcome is unknown; the status is then InternalError.
	Unlock(ctx context.Context, req UnlockRequest) (UnlockStatus, error)
	io.Closer
}

// TryLockRequest asks for a lock.
type TryLockRequest struct {
	ResourceID string
	LockOwner  string
	// Expiry is how long the lock is held unless unlocked; positive.
	Expiry time.Duration
}

// UnlockRequest releases a lock.
type UnlockRequest struct {
	ResourceID string
	LockOwner  string
}

// UnlockStatus is the outcome of Unlock; the values are Dapr's wire values
// (dapr.proto.runtime.v1.UnlockResponse.Status).
type UnlockStatus int32

// The unlock outcomes.
const (
	Success             UnlockStatus = 0
	LockDoesNotExist    UnlockStatus = 1
	LockBelongsToOthers UnlockStatus = 2
	InternalError       UnlockStatus = 3
)

// String returns Dapr's name of the status, e.g. "LOCK_BELONGS_TO_OTHERS".
func (s UnlockStatus) String() string {
	switch s {
	case Success:
		return "SUCCESS"
	case LockDoesNotExist:
		return "LOCK_DOES_NOT_EXIST"
	case LockBelongsToOthers:
		return "LOCK_BELONGS_TO_OTHERS"
	case InternalError:
		return "INTERNAL_ERROR"
	}
	return "UnlockStatus(" + strconv.Itoa(int(s)) + ")"
}
