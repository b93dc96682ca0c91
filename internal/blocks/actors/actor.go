package actors

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// errDeactivated is returned by acquire on an activation that was (or is
// being) deactivated: the caller routes the call again, to a new
// activation here or to the actor's new owner.
var errDeactivated = errors.New("the actor was deactivated")

// errStackDepth is returned when a reentrant chain nests deeper than the
// type's maxStackDepth.
var errStackDepth = errors.New("maximum stack depth exceeded")

// actor is one activation of an actor id on this host. Its lock gives
// turn-based concurrency: one call at a time, the others queued in arrival
// order and handed the turn directly (no barging), except that calls of
// the chain holding the turn (same Dapr-Reentrancy-Id) enter at once when
// the type is reentrant.
type actor struct {
	typ, id string
	key     string

	// lastUsed is unix nanos of the last turn; the idle scan reads it.
	lastUsed atomic.Int64

	mu      sync.Mutex
	busy    bool
	holder  string // reentrancy id of the turn's chain ("" when not reentrant)
	depth   int
	waiters []*waiter
	dead    bool
	// idle is closed when the turn is free (busy false); nil when nobody
	// waits for that.
	idle   chan struct{}
	timers map[string]*timerJob
}

type waiter struct {
	rid     string
	ch      chan struct{}
	granted bool
	err     error
}

func newActor(typ, id string) *actor {
	a := &actor{typ: typ, id: id, key: actorKey(typ, id)}
	a.lastUsed.Store(time.Now().UnixNano())
	return a
}

// actorKey is the table key of an actor; "||" cannot occur in validated
// types and ids.
func actorKey(typ, id string) string { return typ + "||" + id }

// acquire waits for the actor's turn. rid is the call's reentrancy id
// (empty when the type is not reentrant); maxDepth bounds reentrant
// nesting. The returned release must be called exactly once.
func (a *actor) acquire(ctx context.Context, rid string, maxDepth int) (func(), error) {
	a.mu.Lock()
	if a.dead {
		a.mu.Unlock()
		return nil, errDeactivated
	}
	if !a.busy {
		a.busy, a.holder, a.depth = true, rid, 1
		a.mu.Unlock()
		return a.release, nil
	}
	if rid != "" && rid == a.holder {
		if a.depth >= maxDepth {
			a.mu.Unlock()
			return nil, errStackDepth
		}
		a.depth++
		a.mu.Unlock()
		return a.release, nil
	}
	w := &waiter{rid: rid, ch: make(chan struct{})}
	a.waiters = append(a.waiters, w)
	a.mu.Unlock()

	select {
	case <-w.ch:
		if w.err != nil {
			return nil, w.err
		}
		return a.release, nil
	case <-ctx.Done():
		a.mu.Lock()
		if w.granted {
			a.mu.Unlock()
			a.release()
			return nil, ctx.Err()
		}
		if w.err == nil {
			for i, x := range a.waiters {
				if x == w {
					a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
					break
				}
			}
		}
		a.mu.Unlock()
		return nil, ctx.Err()
	}
}

// release ends one turn (or one level of a reentrant turn) and hands the
// turn to the next waiter. Once the activation is dead, waiters are sent
// away with errDeactivated.
func (a *actor) release() {
	a.lastUsed.Store(time.Now().UnixNano())
	a.mu.Lock()
	defer a.mu.Unlock()
	a.depth--
	if a.depth > 0 {
		return
	}
	if a.dead {
		for _, w := range a.waiters {
			w.err = errDeactivated
			close(w.ch)
		}
		a.waiters = nil
	} else if len(a.waiters) > 0 {
		w := a.waiters[0]
		a.waiters[0] = nil
		a.waiters = a.waiters[1:]
		a.holder, a.depth, w.granted = w.rid, 1, true
		close(w.ch)
		return
	}
	a.busy, a.holder = false, ""
	if a.idle != nil {
		close(a.idle)
		a.idle = nil
	}
}

// kill marks the activation dead so that no new turn starts, and returns a
// channel closed once the current turn (if any) is over. With idleOnly, an
// activation in use or with calls queued is left alone (ok false).
func (a *actor) kill(idleOnly bool) (drained <-chan struct{}, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dead {
		return nil, false
	}
	if idleOnly && (a.busy || len(a.waiters) > 0) {
		return nil, false
	}
	a.dead = true
	if !a.busy {
		for _, w := range a.waiters {
			w.err = errDeactivated
			close(w.ch)
		}
		a.waiters = nil
		ch := make(chan struct{})
		close(ch)
		return ch, true
	}
	if a.idle == nil {
		a.idle = make(chan struct{})
	}
	return a.idle, true
}

// takeTimers removes and returns the activation's timers.
func (a *actor) takeTimers() map[string]*timerJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.timers
	a.timers = nil
	return t
}

// setTimer adds or replaces a timer; it fails on a dead activation.
func (a *actor) setTimer(name string, t *timerJob) (old *timerJob, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dead {
		return nil, errDeactivated
	}
	if a.timers == nil {
		a.timers = map[string]*timerJob{}
	}
	old = a.timers[name]
	a.timers[name] = t
	return old, nil
}

// removeTimer removes the named timer if t is nil or the named timer is t.
func (a *actor) removeTimer(name string, t *timerJob) *timerJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.timers[name]
	if cur == nil || (t != nil && cur != t) {
		return nil
	}
	delete(a.timers, name)
	return cur
}

func (a *actor) touch() { a.lastUsed.Store(time.Now().UnixNano()) }
