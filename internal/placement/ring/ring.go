// Package ring turns the placement tables a sidecar receives (Dapr's
// PlacementTables) into consistent-hashing rings, one per actor type, and
// answers "which host owns this actor?" locally.
//
// The tables carry, per actor type, the hosts of that type (load_map,
// keyed by host name) and the table's replication factor; they carry no
// virtual nodes. Build recomputes the virtual nodes from the host names
// with internal/placement/hashing, so every sidecar given the same tables
// builds the same rings as the placement service and as every other
// sidecar (daprd included).
package ring

import (
	"maps"
	"slices"
	"strconv"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"

	"github.com/mecha-dev/mecha/internal/placement/hashing"
)

// Host is one host of an actor type, as the table names it.
type Host struct {
	// Name is the host's address, host:port of its internal gRPC server:
	// where calls for the actors it owns are sent.
	Name string
	// AppID is the app behind that sidecar.
	AppID string
	// Port is the internal gRPC port (also in Name).
	Port int64
}

// Tables is one version of the placement tables, ready for lookups. It is
// immutable and safe for concurrent use; a nil *Tables finds nothing.
type Tables struct {
	version uint64
	rf      int
	rings   map[string]*hashing.Ring
	hosts   map[string]map[string]Host // actor type → name → host
}

// Build builds the rings of tables, at the version tables names (its
// deprecated string version field; see BuildVersion).
func Build(tables *placementv1.PlacementTables) *Tables {
	//nolint:staticcheck // the field is deprecated for PlacementOrder.version but still sent.
	v, _ := strconv.ParseUint(tables.GetVersion(), 10, 64)
	return BuildCached(tables, v, nil)
}

// BuildVersion builds the rings of tables at version (the version of the
// PlacementOrder that carried them).
func BuildVersion(tables *placementv1.PlacementTables, version uint64) *Tables {
	return BuildCached(tables, version, nil)
}

// BuildCached is BuildVersion reusing the virtual nodes and rings in
// cache (nil: none): a type whose hosts did not change since the last
// build, or that has the same hosts as another type, costs no ring build.
// The cache is then trimmed to what these tables use. Builds sharing a
// cache must not run concurrently (one client's tables, in order).
func BuildCached(tables *placementv1.PlacementTables, version uint64, cache *hashing.Cache) *Tables {
	rf := int(tables.GetReplicationFactor())
	if rf <= 0 {
		rf = hashing.DefaultReplicationFactor
	}
	t := &Tables{
		version: version,
		rf:      rf,
		rings:   make(map[string]*hashing.Ring, len(tables.GetEntries())),
		hosts:   make(map[string]map[string]Host, len(tables.GetEntries())),
	}
	all := map[string]bool{}
	for typ, entry := range tables.GetEntries() {
		hosts := make(map[string]Host, len(entry.GetLoadMap()))
		names := make([]string, 0, len(entry.GetLoadMap()))
		for key, h := range entry.GetLoadMap() {
			name := h.GetName()
			if name == "" {
				name = key
			}
			if name == "" {
				continue
			}
			hosts[name] = Host{Name: name, AppID: h.GetId(), Port: h.GetPort()}
			names = append(names, name)
			all[name] = true
		}
		if len(names) == 0 {
			continue
		}
		if cache != nil {
			t.rings[typ] = cache.Ring(names, rf)
		} else {
			t.rings[typ] = hashing.New(names, rf)
		}
		t.hosts[typ] = hosts
	}
	if cache != nil {
		cache.Retain(func(h string) bool { return all[h] })
	}
	return t
}

// Lookup returns the host (host:port of its internal gRPC server) that owns
// actor actorID of actorType; ok is false when no host serves actorType.
func (t *Tables) Lookup(actorType, actorID string) (host string, ok bool) {
	if t == nil {
		return "", false
	}
	return t.rings[actorType].Get(actorID)
}

// LookupHost is Lookup returning the host's table entry (with its app id).
func (t *Tables) LookupHost(actorType, actorID string) (Host, bool) {
	name, ok := t.Lookup(actorType, actorID)
	if !ok {
		return Host{}, false
	}
	return t.hosts[actorType][name], true
}

// Version is the table version.
func (t *Tables) Version() uint64 {
	if t == nil {
		return 0
	}
	return t.version
}

// ReplicationFactor is the number of virtual nodes per host.
func (t *Tables) ReplicationFactor() int {
	if t == nil {
		return 0
	}
	return t.rf
}

// Types returns the actor types some host serves, sorted.
func (t *Tables) Types() []string {
	if t == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(t.rings))
}

// Hosts returns the names of actorType's hosts, sorted.
func (t *Tables) Hosts(actorType string) []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.rings[actorType].Hosts())
}

// Hosted reports whether host serves actorType in these tables.
func (t *Tables) Hosted(actorType, host string) bool {
	if t == nil {
		return false
	}
	_, ok := t.hosts[actorType][host]
	return ok
}

// Changed returns the actor types whose placement differs between prev
// and t (a type added, removed, or served by other hosts), sorted: the
// types whose active actors a sidecar must re-check after an update.
func (t *Tables) Changed(prev *Tables) []string {
	var out []string
	seen := map[string]bool{}
	for _, typ := range append(t.Types(), prev.Types()...) {
		if seen[typ] {
			continue
		}
		seen[typ] = true
		var a, b *hashing.Ring
		if t != nil {
			a = t.rings[typ]
		}
		if prev != nil {
			b = prev.rings[typ]
		}
		if !a.Equal(b) {
			out = append(out, typ)
		}
	}
	slices.Sort(out)
	return out
}
