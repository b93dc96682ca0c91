package placement

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"
)

// Member is an actor host in the membership table: a sidecar that reported
// at least one actor type. Sidecars hosting no actor types are not members
// (they change no table); the leader keeps them only as connections.
type Member struct {
	// Name is host:port of the sidecar's internal gRPC server, the key.
	Name string `json:"name"`
	// AppID is the app behind the sidecar.
	AppID string `json:"appId"`
	// Namespace scopes the member: each namespace has its own tables.
	Namespace string `json:"namespace"`
	// Entities are the actor types it hosts, sorted.
	Entities []string `json:"entities"`
	// Port is the internal gRPC port the sidecar reported.
	Port int64 `json:"port,omitempty"`
	// UpdatedAt is when the leader last changed this entry (Unix ms).
	UpdatedAt int64 `json:"updatedAt"`
}

// sameTable reports whether m and o give the same tables (UpdatedAt aside).
func (m Member) sameTable(o Member) bool {
	return m.Name == o.Name && m.AppID == o.AppID && m.Port == o.Port && slices.Equal(m.Entities, o.Entities)
}

// command is one change of one namespace's membership, the unit the leader
// replicates: all changes coalesced into one dissemination round go in one
// command, which raises the namespace's table version by one.
type command struct {
	Namespace string   `json:"ns"`
	Upsert    []Member `json:"upsert,omitempty"`
	Remove    []string `json:"remove,omitempty"`
}

// nsMembers is one namespace in the FSM.
type nsMembers struct {
	Version uint64            `json:"version"`
	Members map[string]Member `json:"members"`
}

// fsm is the replicated membership state: per namespace, the actor hosts
// and the table version. Every node applies the same commands in the same
// order, so a new leader continues the versions where the old one stopped
// (a sidecar never sees a table version go back).
type fsm struct {
	mu sync.RWMutex
	ns map[string]*nsMembers
}

func newFSM() *fsm { return &fsm{ns: map[string]*nsMembers{}} }

// apply applies c and returns the namespace's version after it: one more
// than before when c changed anything, else unchanged.
func (f *fsm) apply(c command) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.ns[c.Namespace]
	if n == nil {
		n = &nsMembers{Members: map[string]Member{}}
		f.ns[c.Namespace] = n
	}
	changed := false
	for _, name := range c.Remove {
		if _, ok := n.Members[name]; ok {
			delete(n.Members, name)
			changed = true
		}
	}
	for _, m := range c.Upsert {
		if old, ok := n.Members[m.Name]; ok && old.sameTable(m) {
			continue
		}
		m.Entities = slices.Clone(m.Entities)
		n.Members[m.Name] = m
		changed = true
	}
	if changed {
		n.Version++
	}
	return n.Version
}

// namespace returns a copy of namespace ns's members and its version.
func (f *fsm) namespace(ns string) (map[string]Member, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := f.ns[ns]
	if n == nil {
		return map[string]Member{}, 0
	}
	return maps.Clone(n.Members), n.Version
}

// namespaces returns the namespaces the FSM knows, sorted.
func (f *fsm) namespaces() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Sorted(maps.Keys(f.ns))
}

// encode writes the whole state as JSON (snapshots).
func (f *fsm) encode(w io.Writer) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return json.NewEncoder(w).Encode(f.ns)
}

// restore replaces the state with one encode wrote.
func (f *fsm) restore(r io.Reader) error {
	st := map[string]*nsMembers{}
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return fmt.Errorf("placement: restoring the membership snapshot: %w", err)
	}
	for _, n := range st {
		if n.Members == nil {
			n.Members = map[string]Member{}
		}
	}
	f.mu.Lock()
	f.ns = st
	f.mu.Unlock()
	return nil
}

// nowMillis is the UpdatedAt of entries written now.
func nowMillis() int64 { return time.Now().UnixMilli() }
