package placement

import (
	"context"
	"maps"
	"slices"
	"time"
)

// NamespaceState describes one namespace's placement.
type NamespaceState struct {
	Namespace string `json:"namespace"`
	// Version is the current table version.
	Version uint64 `json:"tableVersion"`
	// Members are the actor hosts, sorted by name.
	Members []Member `json:"members"`
	// Streams counts the connected sidecars, actor hosts or not (on the
	// leader only).
	Streams int `json:"streams"`
	// Rounds counts the namespace's dissemination rounds in this
	// leadership term (catch-ups of single sidecars excluded), and
	// LastRound is how long the last one took.
	Rounds    uint64        `json:"rounds"`
	LastRound time.Duration `json:"lastRoundNanos"`
	// Disseminating is true while a change is being committed or a
	// namespace round is under way.
	Disseminating bool `json:"disseminating"`
}

// State is what the placement knows: on the leader, its live view; on a
// follower, the replicated membership.
type State struct {
	ID         string           `json:"id"`
	Leader     bool             `json:"leader"`
	Namespaces []NamespaceState `json:"namespaces"`
}

// State returns the placement's state; ctx bounds the wait for the
// leader's loop.
func (s *Server) State(ctx context.Context) State {
	st := State{ID: s.opts.ID}
	if t := s.currentTerm(); t != nil {
		reply := make(chan []NamespaceState, 1)
		if t.post(&evState{reply: reply}) {
			select {
			case st.Namespaces = <-reply:
				st.Leader = true
				return st
			case <-ctx.Done():
			case <-t.ctx.Done():
			}
		}
	}
	for _, name := range s.fsm.namespaces() {
		members, version := s.fsm.namespace(name)
		st.Namespaces = append(st.Namespaces, NamespaceState{Namespace: name, Version: version, Members: sortedMembers(members)})
	}
	return st
}

func (t *term) state() []NamespaceState {
	out := make([]NamespaceState, 0, len(t.ns))
	for _, name := range slices.Sorted(maps.Keys(t.ns)) {
		n := t.ns[name]
		out = append(out, NamespaceState{
			Namespace: name,
			Version:   n.version,
			Members:   sortedMembers(n.members),
			Streams:   len(n.conns),
			Rounds:    n.rounds,
			LastRound: n.lastRound,

			Disseminating: n.round != nil || n.committing,
		})
	}
	return out
}

func sortedMembers(m map[string]Member) []Member {
	out := make([]Member, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		mm := m[name]
		mm.Entities = slices.Clone(mm.Entities)
		out = append(out, mm)
	}
	return out
}
