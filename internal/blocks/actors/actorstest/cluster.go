// Package actorstest provides test doubles for the actor runtime: an
// in-memory placement service (Cluster) that runs the same lock, update,
// unlock rounds as the real one over the sidecars of a test.
package actorstest

import (
	"context"
	"hash/fnv"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mecha-dev/mecha/internal/blocks/actors"
)

// Cluster is an in-memory placement service. Each sidecar's block gets a
// Member through Placement; a member that runs (reports its actor types)
// joins the table, one that stops leaves it, and every change runs a
// dissemination round: all members locked, then each member's table
// replaced and its OnUpdate called, then all unlocked. Owners are chosen by
// rendezvous hashing, so that a change moves only the actors of the hosts
// that came or went.
type Cluster struct {
	// round serialises dissemination rounds.
	round sync.Mutex

	mu      sync.Mutex
	members map[string]*Member
	hosts   map[string][]string // actor type → hosts serving it
	version uint64
}

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{members: map[string]*Member{}, hosts: map[string][]string{}}
}

// Placement is the actors.NewPlacement of a sidecar of this cluster.
func (c *Cluster) Placement() actors.NewPlacement {
	return func(addr string, h actors.Hooks) (actors.Placement, error) {
		return &Member{c: c, addr: addr, hooks: h}, nil
	}
}

// Version is the version of the latest table.
func (c *Cluster) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Owner returns the host that owns an actor under the latest table.
func (c *Cluster) Owner(typ, id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return owner(c.hosts[typ], id)
}

// Remove takes a host out of the table without telling it, as the
// placement does with a host whose heartbeats stopped.
func (c *Cluster) Remove(addr string) {
	c.round.Lock()
	defer c.round.Unlock()
	c.mu.Lock()
	m := c.members[addr]
	delete(c.members, addr)
	c.mu.Unlock()
	if m != nil {
		m.removed.Store(true)
	}
	c.disseminate()
}

// Freeze stops sending rounds to a host, so that its table goes stale
// while the others move on.
func (c *Cluster) Freeze(addr string) {
	c.round.Lock()
	defer c.round.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[addr]; m != nil {
		m.frozen = true
	}
}

// Thaw resumes rounds to a frozen host and gives it the latest table at
// once.
func (c *Cluster) Thaw(addr string) {
	c.round.Lock()
	defer c.round.Unlock()
	c.mu.Lock()
	m := c.members[addr]
	if m == nil || !m.frozen {
		c.mu.Unlock()
		return
	}
	m.frozen = false
	t := &table{version: c.version, hosts: c.hosts}
	c.mu.Unlock()
	m.hooks.OnLock()
	m.table.Store(t)
	m.hooks.OnUpdate(t.version)
	m.hooks.OnUnlock()
}

// join adds or refreshes a member and runs a round.
func (c *Cluster) join(m *Member) {
	c.round.Lock()
	defer c.round.Unlock()
	c.mu.Lock()
	c.members[m.addr] = m
	c.mu.Unlock()
	c.disseminate()
}

func (c *Cluster) leave(m *Member) {
	c.round.Lock()
	defer c.round.Unlock()
	c.mu.Lock()
	if c.members[m.addr] != m {
		c.mu.Unlock()
		return
	}
	delete(c.members, m.addr)
	c.mu.Unlock()
	c.disseminate()
}

// disseminate runs one lock/update/unlock round; the caller holds round.
func (c *Cluster) disseminate() {
	c.mu.Lock()
	hosts := map[string][]string{}
	var ms []*Member
	for addr, m := range c.members {
		if !m.frozen {
			ms = append(ms, m)
		}
		for _, t := range m.types {
			hosts[t] = append(hosts[t], addr)
		}
	}
	for t := range hosts {
		sort.Strings(hosts[t])
	}
	c.version++
	v := c.version
	c.hosts = hosts
	c.mu.Unlock()
	sort.Slice(ms, func(i, j int) bool { return ms[i].addr < ms[j].addr })
	for _, m := range ms {
		m.hooks.OnLock()
	}
	for _, m := range ms {
		m.table.Store(&table{version: v, hosts: hosts})
		m.hooks.OnUpdate(v)
	}
	for _, m := range ms {
		m.hooks.OnUnlock()
	}
}

type table struct {
	version uint64
	hosts   map[string][]string
}

// owner picks the host with the highest hash of (host, id).
func owner(hosts []string, id string) string {
	var best string
	var bestScore uint64
	for _, h := range hosts {
		f := fnv.New64a()
		f.Write([]byte(h))
		f.Write([]byte{0})
		f.Write([]byte(id))
		if s := mix(f.Sum64()); best == "" || s > bestScore {
			best, bestScore = h, s
		}
	}
	return best
}

// mix is splitmix64's finaliser: FNV alone barely moves the high bits for
// inputs that differ in their last bytes.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Member is one sidecar's view of the cluster; it implements
// actors.Placement.
type Member struct {
	c       *Cluster
	addr    string
	hooks   actors.Hooks
	types   []string
	table   atomic.Pointer[table]
	running atomic.Bool
	removed atomic.Bool
	frozen  bool // guarded by Cluster.mu
}

// Lookup implements actors.Placement.
func (m *Member) Lookup(typ, id string) (string, bool) {
	t := m.table.Load()
	if t == nil {
		return "", false
	}
	o := owner(t.hosts[typ], id)
	return o, o != ""
}

// Version implements actors.Placement.
func (m *Member) Version() uint64 {
	if t := m.table.Load(); t != nil {
		return t.version
	}
	return 0
}

// Connected implements actors.Placement.
func (m *Member) Connected() bool { return m.running.Load() && !m.removed.Load() }

// Run implements actors.Placement: the member is in the table until ctx
// ends.
func (m *Member) Run(ctx context.Context, types []string) error {
	m.types = append([]string(nil), types...)
	m.running.Store(true)
	m.c.join(m)
	<-ctx.Done()
	m.running.Store(false)
	m.c.leave(m)
	return ctx.Err()
}
