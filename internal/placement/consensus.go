package placement

import (
	"context"
	"sync"
)

// consensus is how the leader commits membership changes and learns that
// it leads: raft across the peers (raftNode), or, for a single node without
// peers, the FSM itself (standalone).
type consensus interface {
	// apply commits c and returns its namespace's version after it.
	apply(ctx context.Context, c command) (uint64, error)
	// leadership delivers true when this node has become the leader and
	// its FSM holds every committed change, false when it stops leading.
	leadership() <-chan bool
	// healthy returns nil while the node is part of a working cluster (it
	// leads, or knows a leader).
	healthy() error
	// isLeader reports whether this node leads now.
	isLeader() bool
	// shutdown stops the node; graceful hands leadership to a peer first
	// when this node leads.
	shutdown(graceful bool) error
}

// standalone is the single-node mode without raft (the self-hosted control
// plane): the node is always the leader and the membership lives in
// memory. Nothing is lost that matters: sidecars report their actor types
// again when they reconnect after a restart, as they do to a new raft
// leader.
type standalone struct {
	f    *fsm
	lead chan bool

	mu     sync.Mutex
	closed bool
}

func newStandalone(f *fsm) *standalone {
	s := &standalone{f: f, lead: make(chan bool, 1)}
	s.lead <- true
	return s
}

func (s *standalone) apply(_ context.Context, c command) (uint64, error) {
	return s.f.apply(c), nil
}

func (s *standalone) leadership() <-chan bool { return s.lead }

func (s *standalone) healthy() error { return nil }

func (s *standalone) isLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed
}

func (s *standalone) shutdown(bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.lead)
	}
	return nil
}
