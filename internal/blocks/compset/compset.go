// Package compset is the named set of initialised components each building
// block serves from: lookup by resource name, listing and closing. It exists
// so every block resolves names the same way.
package compset

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Set holds components of one kind by name.
type Set[T io.Closer] struct {
	mu    sync.RWMutex
	items map[string]T
}

// New returns an empty set.
func New[T io.Closer]() *Set[T] { return &Set[T]{items: map[string]T{}} }

// Add registers c under name; names are unique.
func (s *Set[T]) Add(name string, c T) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.items[name]; dup {
		return fmt.Errorf("a component named %s is already registered", name)
	}
	s.items[name] = c
	return nil
}

// Get returns the component named name.
func (s *Set[T]) Get(name string) (T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.items[name]
	return c, ok
}

// Len is the number of components.
func (s *Set[T]) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// Names lists the component names, sorted.
func (s *Set[T]) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.items))
	for n := range s.items {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Close closes and removes every component.
func (s *Set[T]) Close() error {
	s.mu.Lock()
	items := s.items
	s.items = map[string]T{}
	s.mu.Unlock()
	var errs []error
	for n, c := range items {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}
