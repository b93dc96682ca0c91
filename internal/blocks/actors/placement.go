package actors

import (
	"context"
	"sync"
	"time"
)

// Placement is what the actor runtime needs from the placement service:
// the placement client of internal/placement/client in a sidecar, a fake in
// tests. It is consulted on every call, so Lookup must be cheap.
type Placement interface {
	// Lookup returns the internal gRPC address ("host:port") of the
	// sidecar that owns the actor under the table applied last; ok is
	// false when the table has no host for the actor type.
	Lookup(actorType, actorID string) (addr string, ok bool)
	// Version is the version of the table applied last; 0 before the
	// first one arrives.
	Version() uint64
	// Connected reports whether the placement stream is up.
	Connected() bool
	// Run reports this host with the actor types it serves (none: it only
	// calls actors) and delivers dissemination rounds to the Hooks the
	// placement was created with, until ctx ends.
	Run(ctx context.Context, actorTypes []string) error
}

// Hooks receive the three phases of a dissemination round. The block
// implements them; a placement calls them in order, one round at a time.
type Hooks interface {
	// OnLock: a new table is coming; calls wait until OnUnlock.
	OnLock()
	// OnUpdate: the table with this version is now the one Lookup uses.
	// It returns once the actors that moved away are deactivated (drained
	// within their drainOngoingCallTimeout).
	OnUpdate(version uint64)
	// OnUnlock: calls may proceed with the new table.
	OnUnlock()
}

// NewPlacement creates the placement of the block of the sidecar whose
// internal gRPC address is address (the name the table gives it), with
// the block's hooks.
type NewPlacement func(address string, h Hooks) (Placement, error)

// gate holds calls while a table changes and tells waiters when a new
// table arrived.
type gate struct {
	mu       sync.Mutex
	locked   bool
	unlocked chan struct{} // closed while not locked
	changed  chan struct{} // closed and replaced at every table update
	// lockTimeout ends a lock that no unlock follows (a placement that
	// died mid-round), as daprd does.
	lockTimeout time.Duration
	timer       *time.Timer
	gen         uint64
}

func newGate(lockTimeout time.Duration) *gate {
	g := &gate{unlocked: make(chan struct{}), changed: make(chan struct{}), lockTimeout: lockTimeout}
	close(g.unlocked)
	return g
}

func (g *gate) lock() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.locked {
		return
	}
	g.locked = true
	g.unlocked = make(chan struct{})
	g.gen++
	gen := g.gen
	if g.lockTimeout > 0 {
		g.timer = time.AfterFunc(g.lockTimeout, func() { g.unlockGen(gen) })
	}
}

func (g *gate) unlock() { g.unlockGen(0) }

// unlockGen unlocks; with a non-zero gen only the lock of that generation
// (the safety timer's).
func (g *gate) unlockGen(gen uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.locked || (gen != 0 && gen != g.gen) {
		return
	}
	g.locked = false
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	close(g.unlocked)
}

// tableChanged wakes everyone waiting for a new table.
func (g *gate) tableChanged() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.changed)
	g.changed = make(chan struct{})
}

// wait returns once calls may proceed, or ctx ends.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.unlocked
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	default:
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// changes returns a channel closed at the next table update.
func (g *gate) changes() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

func (g *gate) isLocked() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.locked
}
