// Package hashing is the consistent-hashing ring that places an actor on
// one host among those that host its type. The placement service and every
// sidecar compute the same ring from the same member list, so a sidecar
// finds an actor's owner locally, with no call to the placement service per
// lookup.
//
// # Algorithm
//
//   - Hash(key) is the first 8 bytes, read little-endian, of the BLAKE2b-512
//     digest of key's bytes.
//   - Each host h contributes replicationFactor virtual nodes, the i-th at
//     point Hash(h + decimal(i)) for i = 0 … replicationFactor-1 (host
//     "10.0.0.1:50002" with i = 7 hashes the string "10.0.0.1:500027").
//   - The points of all hosts are sorted ascending. Should two points be
//     equal (a 64-bit collision), the one of the host whose name sorts first
//     is kept, so the ring never depends on the order hosts are given in.
//   - Get(key) returns the host of the first point ≥ Hash(key), wrapping
//     around to the first point when Hash(key) is beyond the last.
//
// These are the hash function, virtual-node keys and lookup rule Dapr's
// placement documents and daprd uses (pkg/placement/hashing), written anew
// here: a Mecha sidecar and a daprd given the same table place every actor
// on the same host, so both can share one placement service.
//
// Adding a host moves only the keys whose first point at or after their
// hash now belongs to the new host: about 1/(n+1) of them; removing one
// moves only that host's keys.
package hashing

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/blake2b"
)

// DefaultReplicationFactor is the number of virtual nodes per host when a
// table names none: Dapr's default, which keeps the spread of keys across
// hosts within a few percent of even.
const DefaultReplicationFactor = 100

// Hash is the ring's hash of key.
func Hash(key string) uint64 {
	sum := blake2b.Sum512([]byte(key))
	return binary.LittleEndian.Uint64(sum[:8])
}

// VirtualNodes returns the points of host's replicationFactor virtual
// nodes, in virtual-node order (not sorted).
func VirtualNodes(host string, replicationFactor int) []uint64 {
	out := make([]uint64, replicationFactor)
	buf := make([]byte, 0, len(host)+20)
	buf = append(buf, host...)
	for i := range out {
		k := strconv.AppendInt(buf[:len(host)], int64(i), 10)
		sum := blake2b.Sum512(k)
		out[i] = binary.LittleEndian.Uint64(sum[:8])
	}
	return out
}

// Ring maps keys to hosts. It is immutable once built and safe for
// concurrent use.
type Ring struct {
	points []uint64 // ascending
	owners []int32  // hosts[owners[i]] owns points[i]
	hosts  []string // sorted, unique
	rf     int
	// collided is set when two points were equal and one was dropped: a
	// ring derived from this one by adding or removing a host could then
	// differ from a full build, so none is derived.
	collided bool
}

// New builds the ring of hosts with replicationFactor virtual nodes each
// (DefaultReplicationFactor when ≤ 0). Duplicate and empty host names are
// ignored.
func New(hosts []string, replicationFactor int) *Ring {
	return NewCached(hosts, replicationFactor, nil)
}

// NewCached is New taking the virtual nodes from cache (nil: compute
// them), which saves hashing every host again for each table.
func NewCached(hosts []string, replicationFactor int, cache *Cache) *Ring {
	if replicationFactor <= 0 {
		replicationFactor = DefaultReplicationFactor
	}
	uniq := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if h != "" {
			uniq = append(uniq, h)
		}
	}
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)

	// Points carry their host's index in the sorted host list, so ties
	// break by name without string compares, and the sort moves no
	// pointers.
	type point struct {
		p uint64
		h int32
	}
	pts := make([]point, 0, len(uniq)*replicationFactor)
	for hi, h := range uniq {
		var vn []uint64
		if cache != nil {
			vn = cache.VirtualNodes(h, replicationFactor)
		} else {
			vn = VirtualNodes(h, replicationFactor)
		}
		for _, p := range vn {
			pts = append(pts, point{p, int32(hi)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.p, b.p); c != 0 {
			return c
		}
		return cmp.Compare(a.h, b.h)
	})
	r := &Ring{
		points: make([]uint64, 0, len(pts)),
		owners: make([]int32, 0, len(pts)),
		hosts:  uniq,
		rf:     replicationFactor,
	}
	for i, pt := range pts {
		if i > 0 && pt.p == pts[i-1].p {
			r.collided = true
			continue // collision: the host sorting first keeps the point
		}
		r.points = append(r.points, pt.p)
		r.owners = append(r.owners, pt.h)
	}
	return r
}

// Get returns the host that owns key; ok is false when the ring is empty.
func (r *Ring) Get(key string) (host string, ok bool) {
	if r == nil || len(r.points) == 0 {
		return "", false
	}
	h := Hash(key)
	i, _ := slices.BinarySearch(r.points, h)
	if i == len(r.points) {
		i = 0
	}
	return r.hosts[r.owners[i]], true
}

// Hosts returns the ring's hosts, sorted. The slice must not be modified.
func (r *Ring) Hosts() []string {
	if r == nil {
		return nil
	}
	return r.hosts
}

// Len is the number of hosts.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.hosts)
}

// ReplicationFactor is the number of virtual nodes per host.
func (r *Ring) ReplicationFactor() int {
	if r == nil {
		return 0
	}
	return r.rf
}

// Equal reports whether r and o place every key on the same host: the same
// hosts with the same replication factor (an empty ring equals nil).
func (r *Ring) Equal(o *Ring) bool {
	if r.Len() == 0 || o.Len() == 0 {
		return r.Len() == o.Len()
	}
	return r.rf == o.rf && slices.Equal(r.hosts, o.hosts)
}

// Cache keeps hosts' virtual nodes, and whole rings, between ring builds:
// a sidecar rebuilds its rings on every table, mostly from the same hosts,
// and actor types often share one set of hosts. Safe for concurrent use.
type Cache struct {
	mu    sync.Mutex
	m     map[cacheKey][]uint64
	rings map[string]*Ring // by ringKey
	used  map[string]bool  // ring keys asked for since the last Retain
}

type cacheKey struct {
	host string
	rf   int
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{m: map[cacheKey][]uint64{}, rings: map[string]*Ring{}, used: map[string]bool{}}
}

// VirtualNodes is VirtualNodes, remembered.
func (c *Cache) VirtualNodes(host string, replicationFactor int) []uint64 {
	k := cacheKey{host, replicationFactor}
	c.mu.Lock()
	vn, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return vn
	}
	vn = VirtualNodes(host, replicationFactor)
	c.mu.Lock()
	c.m[k] = vn
	c.mu.Unlock()
	return vn
}

// Ring is New, remembered: the same hosts (in any order) and replication
// factor give the same *Ring until a Retain finds it unused.
func (c *Cache) Ring(hosts []string, replicationFactor int) *Ring {
	if replicationFactor <= 0 {
		replicationFactor = DefaultReplicationFactor
	}
	sorted := slices.Clone(hosts)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	key := strconv.Itoa(replicationFactor) + "\x00" + strings.Join(sorted, "\x00")
	c.mu.Lock()
	r, ok := c.rings[key]
	c.used[key] = true
	c.mu.Unlock()
	if ok {
		return r
	}
	r = c.derive(sorted, replicationFactor)
	if r == nil {
		r = NewCached(sorted, replicationFactor, c)
	}
	c.mu.Lock()
	c.rings[key] = r
	c.mu.Unlock()
	return r
}

// derive builds the ring of hosts from a cached ring that has one host
// more or one host less, in time linear in the ring's size instead of a
// sort: the usual change between two tables is one member joining or
// leaving. It returns nil when no such ring is cached, or when a hash
// collision would make the result differ from a full build.
func (c *Cache) derive(hosts []string, rf int) *Ring {
	c.mu.Lock()
	cands := make([]*Ring, 0, len(c.rings))
	for _, r := range c.rings {
		if r.rf == rf && !r.collided && (len(r.hosts) == len(hosts)+1 || len(r.hosts)+1 == len(hosts)) {
			cands = append(cands, r)
		}
	}
	c.mu.Unlock()
	for _, base := range cands {
		if len(base.hosts) < len(hosts) {
			if h, ok := oneMore(base.hosts, hosts); ok {
				return base.with(h, c.VirtualNodes(h, rf))
			}
		} else if h, ok := oneMore(hosts, base.hosts); ok {
			return base.without(h)
		}
	}
	return nil
}

// oneMore returns the host of big that small lacks, when big is small
// plus exactly that host (both sorted and unique).
func oneMore(small, big []string) (string, bool) {
	if len(big) != len(small)+1 {
		return "", false
	}
	i := 0
	for i < len(small) && small[i] == big[i] {
		i++
	}
	if !slices.Equal(small[i:], big[i+1:]) {
		return "", false
	}
	return big[i], true
}

// with returns r plus host (whose virtual nodes are vn), merging sorted
// points; nil when a point collides.
func (r *Ring) with(host string, vn []uint64) *Ring {
	add := slices.Clone(vn)
	slices.Sort(add)
	pos, _ := slices.BinarySearch(r.hosts, host)
	hi := int32(pos) // the new host's index; the hosts after it shift up
	n := &Ring{
		points: make([]uint64, 0, len(r.points)+len(add)),
		owners: make([]int32, 0, len(r.points)+len(add)),
		hosts:  slices.Insert(slices.Clone(r.hosts), pos, host),
		rf:     r.rf,
	}
	i, j := 0, 0
	for i < len(r.points) || j < len(add) {
		switch {
		case j == len(add) || (i < len(r.points) && r.points[i] < add[j]):
			o := r.owners[i]
			if o >= hi {
				o++
			}
			n.points = append(n.points, r.points[i])
			n.owners = append(n.owners, o)
			i++
		case i == len(r.points) || add[j] < r.points[i]:
			if j > 0 && add[j] == add[j-1] {
				return nil
			}
			n.points = append(n.points, add[j])
			n.owners = append(n.owners, hi)
			j++
		default: // equal points
			return nil
		}
	}
	return n
}

// without returns r less host (r has no collisions, so no point of
// another host was hidden behind one of host's).
func (r *Ring) without(host string) *Ring {
	pos, _ := slices.BinarySearch(r.hosts, host)
	hi := int32(pos) // the hosts after it shift down
	n := &Ring{
		points: make([]uint64, 0, len(r.points)),
		owners: make([]int32, 0, len(r.points)),
		hosts:  slices.Delete(slices.Clone(r.hosts), pos, pos+1),
		rf:     r.rf,
	}
	for i, o := range r.owners {
		switch {
		case o < hi:
			n.points = append(n.points, r.points[i])
			n.owners = append(n.owners, o)
		case o > hi:
			n.points = append(n.points, r.points[i])
			n.owners = append(n.owners, o-1)
		}
	}
	return n
}

// Retain forgets the virtual nodes of every host that keep does not name,
// and the rings not asked for since the previous Retain, so that the cache
// holds what the current table uses rather than everything ever seen.
func (c *Cache) Retain(keep func(host string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !keep(k.host) {
			delete(c.m, k)
		}
	}
	for k := range c.rings {
		if !c.used[k] {
			delete(c.rings, k)
		}
	}
	clear(c.used)
}

// Len is the number of hosts (per replication factor) cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Rings is the number of rings cached.
func (c *Cache) Rings() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rings)
}
