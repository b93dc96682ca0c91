package ring_test

import (
	"fmt"
	"slices"
	"testing"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mecha-dev/mecha/internal/placement/hashing"
	"github.com/mecha-dev/mecha/internal/placement/ring"
)

// tables builds PlacementTables: actor type → host names (app id = the
// host's first letter group).
func tables(version string, rf int64, types map[string][]string) *placementv1.PlacementTables {
	t := &placementv1.PlacementTables{Version: version, ReplicationFactor: rf, Entries: map[string]*placementv1.PlacementTable{}}
	for typ, hs := range types {
		e := &placementv1.PlacementTable{LoadMap: map[string]*placementv1.Host{}}
		for _, h := range hs {
			e.LoadMap[h] = &placementv1.Host{Name: h, Id: "app-" + h, Port: 50002}
		}
		t.Entries[typ] = e
	}
	return t
}

// A table that went over the wire (marshalled, unmarshalled) rebuilds
// the same rings as the hosts' names alone, per type.
func TestBuildLookup(t *testing.T) {
	in := tables("7", 40, map[string][]string{
		"Counter": {"a:1", "b:1", "c:1"},
		"Cart":    {"b:1"},
	})
	wire, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var got placementv1.PlacementTables
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	tb := ring.Build(&got)
	if tb.Version() != 7 || tb.ReplicationFactor() != 40 {
		t.Fatalf("version %d rf %d", tb.Version(), tb.ReplicationFactor())
	}
	if !slices.Equal(tb.Types(), []string{"Cart", "Counter"}) {
		t.Fatalf("types %v", tb.Types())
	}
	ref := hashing.New([]string{"c:1", "a:1", "b:1"}, 40)
	spread := map[string]int{}
	for i := range 3000 {
		id := fmt.Sprintf("id-%d", i)
		h, ok := tb.Lookup("Counter", id)
		want, _ := ref.Get(id)
		if !ok || h != want {
			t.Fatalf("Lookup(Counter,%s) = %q,%v want %q", id, h, ok, want)
		}
		spread[h]++
		if h, ok := tb.Lookup("Cart", id); !ok || h != "b:1" {
			t.Fatalf("Lookup(Cart,%s) = %q", id, h)
		}
		host, ok := tb.LookupHost("Counter", id)
		if !ok || host.AppID != "app-"+want || host.Port != 50002 || host.Name != want {
			t.Fatalf("LookupHost = %+v", host)
		}
	}
	if len(spread) != 3 {
		t.Fatalf("Counter actors on %d hosts", len(spread))
	}
	if _, ok := tb.Lookup("Unknown", "x"); ok {
		t.Fatal("found a host for an unknown type")
	}
	if !tb.Hosted("Cart", "b:1") || tb.Hosted("Cart", "a:1") {
		t.Fatal("Hosted is wrong")
	}
	if got := tb.Hosts("Counter"); !slices.Equal(got, []string{"a:1", "b:1", "c:1"}) {
		t.Fatalf("Hosts %v", got)
	}
	if v := ring.BuildVersion(&got, 9).Version(); v != 9 {
		t.Fatalf("BuildVersion: %d", v)
	}
}

func TestDefaultsAndNil(t *testing.T) {
	tb := ring.Build(tables("", 0, map[string][]string{"A": {"x:1"}, "Empty": {}}))
	if tb.ReplicationFactor() != hashing.DefaultReplicationFactor || tb.Version() != 0 {
		t.Fatalf("rf %d version %d", tb.ReplicationFactor(), tb.Version())
	}
	if !slices.Equal(tb.Types(), []string{"A"}) {
		t.Fatalf("a type without hosts is listed: %v", tb.Types())
	}
	var none *ring.Tables
	if _, ok := none.Lookup("A", "1"); ok || none.Version() != 0 || none.Types() != nil {
		t.Fatal("nil tables answer")
	}
	if _, ok := ring.Build(nil).Lookup("A", "1"); ok {
		t.Fatal("tables of nil found a host")
	}
}

func TestChanged(t *testing.T) {
	a := ring.Build(tables("1", 10, map[string][]string{"A": {"x:1"}, "B": {"x:1", "y:1"}, "C": {"y:1"}}))
	b := ring.Build(tables("2", 10, map[string][]string{"A": {"x:1"}, "B": {"x:1", "z:1"}, "D": {"z:1"}}))
	if got := b.Changed(a); !slices.Equal(got, []string{"B", "C", "D"}) {
		t.Fatalf("Changed = %v", got)
	}
	if got := a.Changed(a); len(got) != 0 {
		t.Fatalf("same tables changed %v", got)
	}
	if got := a.Changed(nil); !slices.Equal(got, []string{"A", "B", "C"}) {
		t.Fatalf("Changed(nil) = %v", got)
	}
	c := ring.Build(tables("3", 11, map[string][]string{"A": {"x:1"}}))
	if got := c.Changed(ring.Build(tables("1", 10, map[string][]string{"A": {"x:1"}}))); !slices.Equal(got, []string{"A"}) {
		t.Fatalf("a replication factor change is not a change: %v", got)
	}
}

func TestBuildCachedTrims(t *testing.T) {
	c := hashing.NewCache()
	ring.BuildCached(tables("1", 10, map[string][]string{"A": {"x:1", "y:1"}}), 1, c)
	ring.BuildCached(tables("2", 10, map[string][]string{"A": {"y:1"}}), 2, c)
	if c.Len() != 1 {
		t.Fatalf("cache holds %d hosts after x left", c.Len())
	}
}
