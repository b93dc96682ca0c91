package actors

import (
	"context"
	"sort"
	"sync"
	"time"
)

// table holds the active actors of this host. An actor being deactivated
// keeps its key reserved until the app has been told (DELETE
// /actors/{type}/{id}), so that a new activation never reaches the app
// before the old one's deactivation.
type table struct {
	mu           sync.Mutex
	actors       map[string]*actor
	deactivating map[string]chan struct{}
	// activated is told of each new activation (metrics); may be nil.
	activated func(typ string)
}

func newTable() *table {
	return &table{actors: map[string]*actor{}, deactivating: map[string]chan struct{}{}}
}

// getOrCreate returns the activation of the actor, creating it (after a
// pending deactivation of the same actor finished) when there is none.
func (t *table) getOrCreate(ctx context.Context, typ, id string) (*actor, error) {
	key := actorKey(typ, id)
	for {
		t.mu.Lock()
		if a := t.actors[key]; a != nil {
			t.mu.Unlock()
			return a, nil
		}
		if wait := t.deactivating[key]; wait != nil {
			t.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		a := newActor(typ, id)
		t.actors[key] = a
		t.mu.Unlock()
		if t.activated != nil {
			t.activated(typ)
		}
		return a, nil
	}
}

// get returns the activation of the actor, or nil.
func (t *table) get(typ, id string) *actor {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.actors[actorKey(typ, id)]
}

// remove takes a (killed) activation out of the table and reserves its key
// until done is called.
func (t *table) remove(a *actor) (done func()) {
	ch := make(chan struct{})
	t.mu.Lock()
	if t.actors[a.key] == a {
		delete(t.actors, a.key)
	}
	prev := t.deactivating[a.key]
	t.deactivating[a.key] = ch
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		if t.deactivating[a.key] == ch {
			if prev != nil {
				// Cannot happen: a key is only reserved by the one
				// activation the table held.
				t.deactivating[a.key] = prev
			} else {
				delete(t.deactivating, a.key)
			}
		}
		t.mu.Unlock()
		close(ch)
	}
}

// all returns the active actors.
func (t *table) all() []*actor {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*actor, 0, len(t.actors))
	for _, a := range t.actors {
		out = append(out, a)
	}
	return out
}

// counts returns the number of active actors per type, types sorted.
func (t *table) counts() []TypeCount {
	t.mu.Lock()
	m := map[string]int{}
	for _, a := range t.actors {
		m[a.typ]++
	}
	t.mu.Unlock()
	out := make([]TypeCount, 0, len(m))
	for typ, n := range m {
		out = append(out, TypeCount{Type: typ, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// idleSince returns the activations unused since before cutoff(type).
func (t *table) idle(now time.Time, timeout func(typ string) time.Duration) []*actor {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*actor
	for _, a := range t.actors {
		if now.Sub(time.Unix(0, a.lastUsed.Load())) >= timeout(a.typ) {
			out = append(out, a)
		}
	}
	return out
}
