// Package watch is the subscription bookkeeping the built-in configuration
// stores share, so that each of them keeps the contract's promises the same
// way: ids unique within the store, a subscription that ends with its ctx,
// Unsubscribe or Close, handler calls that never overlap for one
// subscription, and no handler call once Unsubscribe has returned.
//
// A store registers a subscription with Set.Add, starts its watching
// goroutines with Sub.Go, and reports changes with Sub.Deliver. How changes
// are detected (keyspace notifications, LISTEN/NOTIFY, polling) is the
// store's business.
package watch

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/google/uuid"

	"github.com/mecha-dev/mecha/components/configuration"
)

// Set holds one store's subscriptions.
type Set struct {
	log    *slog.Logger
	mu     sync.Mutex
	subs   map[string]*Sub
	closed bool
}

// NewSet returns an empty set; log receives handler errors.
func NewSet(log *slog.Logger) *Set {
	return &Set{log: log, subs: map[string]*Sub{}}
}

// Sub is one subscription.
type Sub struct {
	// ID is the subscription id.
	ID string
	// Metadata is the subscribe request's metadata.
	Metadata map[string]string

	keys    map[string]bool // nil: every key
	list    []string        // the keys, sorted; nil: every key
	handler configuration.UpdateHandler
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex // held while the handler runs
	stopped bool
	wg      sync.WaitGroup // the subscription's goroutines
	done    chan struct{}  // closed once fully stopped
}

// ErrClosed is returned by Add after Close.
var ErrClosed = fmt.Errorf("the configuration store is closed")

// Add registers a subscription whose lifetime is parent: it ends when parent
// ends, or on Stop or Close.
func (s *Set) Add(parent context.Context, req configuration.SubscribeRequest, handler configuration.UpdateHandler) (*Sub, error) {
	if handler == nil {
		return nil, fmt.Errorf("subscribe: handler is nil")
	}
	ctx, cancel := context.WithCancel(parent)
	sub := &Sub{
		ID:       uuid.NewString(),
		Metadata: req.Metadata,
		handler:  handler,
		log:      s.log,
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	if len(req.Keys) > 0 {
		sub.keys = make(map[string]bool, len(req.Keys))
		for _, k := range req.Keys {
			if !sub.keys[k] {
				sub.keys[k] = true
				sub.list = append(sub.list, k)
			}
		}
		sort.Strings(sub.list)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	s.subs[sub.ID] = sub
	s.mu.Unlock()
	context.AfterFunc(ctx, func() { s.finish(sub) })
	return sub, nil
}

// finish runs once the subscription's context has ended: it forgets the
// subscription, waits for an in-flight handler call and the subscription's
// goroutines, and marks it done.
func (s *Set) finish(sub *Sub) {
	s.mu.Lock()
	if s.subs[sub.ID] == sub {
		delete(s.subs, sub.ID)
	}
	s.mu.Unlock()
	sub.mu.Lock()
	sub.stopped = true
	sub.mu.Unlock()
	sub.wg.Wait()
	close(sub.done)
}

// Stop ends the subscription id and waits until it has fully stopped.
func (s *Set) Stop(id string) error {
	s.mu.Lock()
	sub := s.subs[id]
	s.mu.Unlock()
	if sub == nil {
		return fmt.Errorf("subscription %s: %w", id, configuration.ErrSubscriptionNotFound)
	}
	sub.cancel()
	<-sub.done
	return nil
}

// Close ends every subscription, waits for them, and makes Add fail.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	subs := make([]*Sub, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.cancel()
	}
	for _, sub := range subs {
		<-sub.done
	}
}

// Len is the number of live subscriptions.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// All returns the live subscriptions.
func (s *Set) All() []*Sub {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Sub, 0, len(s.subs))
	for _, sub := range s.subs {
		out = append(out, sub)
	}
	return out
}

// Context ends with the subscription.
func (sub *Sub) Context() context.Context { return sub.ctx }

// Done is closed once the subscription has fully stopped.
func (sub *Sub) Done() <-chan struct{} { return sub.done }

// Keys returns the watched keys, sorted; nil means every key.
func (sub *Sub) Keys() []string { return sub.list }

// Watches reports whether key is one of the subscription's keys.
func (sub *Sub) Watches(key string) bool { return sub.keys == nil || sub.keys[key] }

// Go runs f in a goroutine owned by the subscription; f must return once
// ctx (the subscription's context) ends. It does nothing when the
// subscription has already ended.
func (sub *Sub) Go(f func(ctx context.Context)) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.stopped {
		return
	}
	sub.wg.Add(1)
	go func() {
		defer sub.wg.Done()
		f(sub.ctx)
	}()
}

// Deliver calls the handler with items unless the subscription has ended;
// it reports whether the handler was called. Calls are serialised.
func (sub *Sub) Deliver(items map[string]*configuration.Item) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.stopped || sub.ctx.Err() != nil {
		return false
	}
	if err := sub.handler(sub.ctx, &configuration.UpdateEvent{ID: sub.ID, Items: items}); err != nil && sub.ctx.Err() == nil {
		sub.log.Warn("configuration update handler failed", "subscription", sub.ID, "error", err)
	}
	return true
}
