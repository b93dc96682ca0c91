// Package inmemory is the lock.in-memory component: locks held in the
// sidecar's memory. It is for tests and single-process development, where a
// lock only has to exclude callers of the same sidecar; the locks vanish
// when the sidecar stops.
//
// Expiry is a deadline checked on every access. Expired entries are dropped
// lazily, and the whole map is swept whenever it has doubled since the last
// sweep, so memory stays proportional to the locks actually held and no
// goroutine is needed.
package inmemory

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/lock"
)

// minSweep is the map size below which no sweep is worth doing.
const minSweep = 64

// Store is the in-memory lock store.
type Store struct {
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex
	locks     map[string]entry
	sweepSize int // sweep when len(locks) reaches this
}

type entry struct {
	owner    string
	deadline time.Time
}

var _ lock.Store = (*Store)(nil)

// New returns an empty store.
func New(deps components.Deps) lock.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log, now: time.Now, locks: map[string]entry{}, sweepSize: minSweep}
}

// Init accepts any metadata; the store has no settings.
func (s *Store) Init(context.Context, components.Metadata) error { return nil }

// TryLock takes the lock if it is free or expired.
func (s *Store) TryLock(ctx context.Context, req lock.TryLockRequest) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.locks[req.ResourceID]; ok && now.Before(e.deadline) {
		return false, nil
	}
	s.locks[req.ResourceID] = entry{owner: req.LockOwner, deadline: now.Add(req.Expiry)}
	if len(s.locks) >= s.sweepSize {
		s.sweep(now)
	}
	return true, nil
}

// Unlock releases the lock if req.LockOwner holds it.
func (s *Store) Unlock(ctx context.Context, req lock.UnlockRequest) (lock.UnlockStatus, error) {
	if err := ctx.Err(); err != nil {
		return lock.InternalError, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.locks[req.ResourceID]
	switch {
	case !ok:
		return lock.LockDoesNotExist, nil
	case !now.Before(e.deadline):
		delete(s.locks, req.ResourceID)
		return lock.LockDoesNotExist, nil
	case e.owner != req.LockOwner:
		return lock.LockBelongsToOthers, nil
	}
	delete(s.locks, req.ResourceID)
	return lock.Success, nil
}

// sweep drops expired entries; s.mu is held.
func (s *Store) sweep(now time.Time) {
	for k, e := range s.locks {
		if !now.Before(e.deadline) {
			delete(s.locks, k)
		}
	}
	s.sweepSize = max(minSweep, 2*len(s.locks))
}

// Close drops every lock.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locks = map[string]entry{}
	return nil
}
