// Package inmemory is the state.in-memory component: a process-local map with
// ETags, TTLs and atomic transactions. It keeps nothing across restarts and is
// meant for tests and throwaway development.
package inmemory

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state"
)

type item struct {
	data    []byte
	version uint64
	expires time.Time // zero: never
}

// Store is the in-memory state store.
type Store struct {
	mu      sync.RWMutex
	items   map[string]*item
	version uint64
	now     func() time.Time

	stop chan struct{}
	done chan struct{}
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.BulkGetter    = (*Store)(nil)
)

// New returns an uninitialised store.
func New(components.Deps) state.Store { return &Store{now: time.Now} }

// Init starts the expiry sweeper. The metadata property cleanupInterval
// (default 10s) sets how often expired keys are purged; reads never return
// expired keys regardless.
func (s *Store) Init(_ context.Context, md components.Metadata) error {
	interval, err := md.Duration("cleanupInterval", time.Second, 10*time.Second)
	if err != nil {
		return err
	}
	s.items = map[string]*item{}
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	go s.sweep(interval)
	return nil
}

func (s *Store) sweep(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.now()
			s.mu.Lock()
			for k, it := range s.items {
				if it.expired(now) {
					delete(s.items, k)
				}
			}
			s.mu.Unlock()
		}
	}
}

// Features reports ETAG, TRANSACTIONAL and TTL.
func (s *Store) Features() []state.Feature {
	return []state.Feature{state.FeatureETag, state.FeatureTransactional, state.FeatureTTL}
}

func (it *item) expired(now time.Time) bool {
	return !it.expires.IsZero() && !now.Before(it.expires)
}

// Get returns the value and ETag of key.
func (s *Store) Get(_ context.Context, req *state.GetRequest) (*state.GetResponse, error) {
	s.mu.RLock()
	it, ok := s.items[req.Key]
	s.mu.RUnlock()
	if !ok || it.expired(s.now()) {
		return &state.GetResponse{}, nil
	}
	resp := &state.GetResponse{Data: it.data, ETag: strconv.FormatUint(it.version, 10)}
	if !it.expires.IsZero() {
		t := it.expires
		resp.ExpireTime = &t
	}
	return resp, nil
}

// BulkGet reads many keys under one lock.
func (s *Store) BulkGet(_ context.Context, keys []string, _ state.GetOptions) ([]state.BulkItem, error) {
	now := s.now()
	out := make([]state.BulkItem, len(keys))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, k := range keys {
		out[i].Key = k
		if it, ok := s.items[k]; ok && !it.expired(now) {
			out[i].Data = it.data
			out[i].ETag = strconv.FormatUint(it.version, 10)
			if !it.expires.IsZero() {
				t := it.expires
				out[i].ExpireTime = &t
			}
		}
	}
	return out, nil
}

// Set writes one key.
func (s *Store) Set(_ context.Context, req *state.SetRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSet(req, s.now()); err != nil {
		return err
	}
	s.applySet(req)
	return nil
}

// Delete removes one key.
func (s *Store) Delete(_ context.Context, req *state.DeleteRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkETag(req.Key, req.ETag, s.now()); err != nil {
		return err
	}
	delete(s.items, req.Key)
	return nil
}

// Multi applies all operations or none.
func (s *Store) Multi(_ context.Context, req *state.TransactionRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	// Validate against the state as it evolves inside the transaction, on a
	// scratch overlay, so that "set k then set k with the new etag" works.
	saved := map[string]*item{}
	snapshot := func(k string) {
		if _, done := saved[k]; !done {
			saved[k] = s.items[k]
		}
	}
	rollback := func() {
		for k, it := range saved {
			if it == nil {
				delete(s.items, k)
			} else {
				s.items[k] = it
			}
		}
	}
	for _, op := range req.Operations {
		switch {
		case op.Set != nil:
			if err := s.checkSet(op.Set, now); err != nil {
				rollback()
				return err
			}
			snapshot(op.Set.Key)
			s.applySet(op.Set)
		case op.Delete != nil:
			if err := s.checkETag(op.Delete.Key, op.Delete.ETag, now); err != nil {
				rollback()
				return err
			}
			snapshot(op.Delete.Key)
			delete(s.items, op.Delete.Key)
		}
	}
	return nil
}

func (s *Store) checkSet(req *state.SetRequest, now time.Time) error {
	if req.ETag == nil && req.Options.Concurrency == state.FirstWrite {
		if it, ok := s.items[req.Key]; ok && !it.expired(now) {
			return state.ErrETagMismatch
		}
		return nil
	}
	return s.checkETag(req.Key, req.ETag, now)
}

func (s *Store) checkETag(key string, etag *string, now time.Time) error {
	if etag == nil {
		return nil
	}
	want, err := strconv.ParseUint(*etag, 10, 64)
	if err != nil {
		return state.ErrETagInvalid
	}
	it, ok := s.items[key]
	if !ok || it.expired(now) || it.version != want {
		return state.ErrETagMismatch
	}
	return nil
}

func (s *Store) applySet(req *state.SetRequest) {
	s.version++
	it := &item{data: append(make([]byte, 0, len(req.Value)), req.Value...), version: s.version}
	if req.TTL > 0 {
		it.expires = s.now().Add(req.TTL)
	}
	s.items[req.Key] = it
}

// Close stops the sweeper.
func (s *Store) Close() error {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
	return nil
}
