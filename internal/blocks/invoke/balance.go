package invoke

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mecha-dev/mecha/components/nameresolution"
)

// balancer caches resolved addresses per app for a short time and spreads
// calls over them round robin, avoiding for a while the instances that
// could not be reached.
type balancer struct {
	resolver Resolver
	ttl      time.Duration
	now      func() time.Time

	mu      sync.RWMutex
	targets map[nameresolution.ResolveRequest]*target

	downMu sync.Mutex
	down   map[string]time.Time // address → avoided until
	nDown  atomic.Int32         // len(down), read without the lock
}

type target struct {
	addrs   []string
	expires time.Time
	next    atomic.Uint32
}

func newBalancer(r Resolver, ttl time.Duration) *balancer {
	return &balancer{resolver: r, ttl: ttl, now: time.Now, targets: map[nameresolution.ResolveRequest]*target{}, down: map[string]time.Time{}}
}

// pick returns the next address for the app, preferring one not in avoid
// and not recently unreachable; fresh is false when every address was
// already tried.
func (b *balancer) pick(ctx context.Context, key nameresolution.ResolveRequest, avoid []string) (addr string, fresh bool, err error) {
	t, err := b.target(ctx, key)
	if err != nil {
		return "", false, err
	}
	n := uint32(len(t.addrs))
	start := t.next.Add(1) - 1
	if len(avoid) == 0 && b.nDown.Load() == 0 {
		return t.addrs[start%n], true, nil
	}
	now := b.now()
	for i := range n {
		a := t.addrs[(start+i)%n]
		if !slices.Contains(avoid, a) && !b.isDown(a, now) {
			return a, true, nil
		}
	}
	for i := range n {
		a := t.addrs[(start+i)%n]
		if !slices.Contains(avoid, a) {
			return a, true, nil
		}
	}
	return t.addrs[start%n], false, nil
}

func (b *balancer) target(ctx context.Context, key nameresolution.ResolveRequest) (*target, error) {
	now := b.now()
	b.mu.RLock()
	t := b.targets[key]
	b.mu.RUnlock()
	if t != nil && now.Before(t.expires) {
		return t, nil
	}
	addrs, err := b.resolver.Resolve(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, errors.Join(nameresolution.ErrNotFound, errors.New("the resolver returned no address"))
	}
	nt := &target{addrs: addrs, expires: now.Add(b.ttl)}
	if t != nil {
		// Keep the rotation going across refreshes.
		nt.next.Store(t.next.Load())
	}
	b.mu.Lock()
	b.targets[key] = nt
	b.mu.Unlock()
	return nt, nil
}

func (b *balancer) isDown(addr string, now time.Time) bool {
	b.downMu.Lock()
	defer b.downMu.Unlock()
	until, ok := b.down[addr]
	if ok && !now.Before(until) {
		delete(b.down, addr)
		b.nDown.Store(int32(len(b.down)))
		return false
	}
	return ok
}

// markDown avoids addr for a while and makes the app resolve again.
func (b *balancer) markDown(addr, id, ns string) {
	b.downMu.Lock()
	b.down[addr] = b.now().Add(downFor)
	b.nDown.Store(int32(len(b.down)))
	b.downMu.Unlock()
	b.mu.Lock()
	delete(b.targets, nameresolution.ResolveRequest{ID: id, Namespace: ns})
	b.mu.Unlock()
}
