package hashing_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	daprhashing "github.com/dapr/dapr/pkg/placement/hashing"

	"github.com/mecha-dev/mecha/internal/placement/hashing"
)

func hosts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.0.%d:50002", i+1)
	}
	return out
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("actor-%d", i)
	}
	return out
}

// The ring does not depend on the order hosts are given in, on
// duplicates, or on the cache.
func TestDeterministic(t *testing.T) {
	hs := hosts(7)
	rev := slices.Clone(hs)
	slices.Reverse(rev)
	a := hashing.New(hs, 50)
	b := hashing.New(append(rev, hs[2], hs[3]), 50)
	c := hashing.NewCached(hs, 50, hashing.NewCache())
	if !a.Equal(b) || !a.Equal(c) {
		t.Fatal("rings of the same hosts are not Equal")
	}
	for _, k := range keys(20000) {
		ha, _ := a.Get(k)
		hb, _ := b.Get(k)
		hc, _ := c.Get(k)
		if ha != hb || ha != hc {
			t.Fatalf("key %s: %s vs %s vs %s", k, ha, hb, hc)
		}
	}
	if got := a.Hosts(); !slices.Equal(got, hs) {
		t.Fatalf("Hosts() = %v", got)
	}
}

// Mecha's ring places every key where daprd's ring does, given the same
// hosts and replication factor: both can share one placement service.
func TestSameAsDapr(t *testing.T) {
	for _, rf := range []int{1, 10, 100} {
		hs := hosts(9)
		loadMap := map[string]*daprhashing.Host{}
		for _, h := range hs {
			loadMap[h] = daprhashing.NewHost(h, "app", 0, 50002)
		}
		dapr := daprhashing.NewFromExisting(loadMap, int64(rf), daprhashing.NewVirtualNodesCache())
		ours := hashing.New(hs, rf)
		for _, k := range keys(20000) {
			want, err := dapr.Get(k)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ours.Get(k)
			if !ok || got != want {
				t.Fatalf("rf %d key %s: ours %q, dapr %q", rf, k, got, want)
			}
		}
	}
}

// With 100 virtual nodes, no host gets far from its even share.
func TestDistribution(t *testing.T) {
	const n, nkeys = 8, 80000
	r := hashing.New(hosts(n), 100)
	count := map[string]int{}
	for _, k := range keys(nkeys) {
		h, ok := r.Get(k)
		if !ok {
			t.Fatal("no host")
		}
		count[h]++
	}
	if len(count) != n {
		t.Fatalf("%d hosts got keys, want %d", len(count), n)
	}
	even := float64(nkeys) / n
	for h, c := range count {
		dev := math.Abs(float64(c)-even) / even
		t.Logf("%s: %d keys (%.1f%% off even)", h, c, dev*100)
		if dev > 0.2 {
			t.Errorf("%s has %d keys, %.0f%% off the even %v", h, c, dev*100, even)
		}
	}
	// One virtual node per host spreads much worse: the virtual nodes are
	// what evens the load.
	r1 := hashing.New(hosts(n), 1)
	c1 := map[string]int{}
	for _, k := range keys(nkeys) {
		h, _ := r1.Get(k)
		c1[h]++
	}
	if maxShare(c1) <= maxShare(count) {
		t.Errorf("rf 1 spreads as evenly as rf 100: %v vs %v", maxShare(c1), maxShare(count))
	}
}

func maxShare(m map[string]int) int {
	best := 0
	for _, c := range m {
		best = max(best, c)
	}
	return best
}

// A host joining takes keys only for itself, about 1/(n+1) of them; a host
// leaving moves only its own keys.
func TestMinimalMovement(t *testing.T) {
	const nkeys = 50000
	hs := hosts(11)
	before := hashing.New(hs[:10], 100)
	after := hashing.New(hs, 100)
	moved := 0
	for _, k := range keys(nkeys) {
		b, _ := before.Get(k)
		a, _ := after.Get(k)
		if a != b {
			moved++
			if a != hs[10] {
				t.Fatalf("key %s moved from %s to %s, not to the new host", k, b, a)
			}
		}
	}
	frac := float64(moved) / nkeys
	t.Logf("join: %.2f%% of keys moved (ideal %.2f%%)", frac*100, 100.0/11)
	if frac < 0.04 || frac > 0.15 {
		t.Errorf("join moved %.1f%% of keys, want about 9%%", frac*100)
	}

	gone := hs[3]
	without := hashing.New(slices.Delete(slices.Clone(hs[:10]), 3, 4), 100)
	for _, k := range keys(nkeys) {
		b, _ := before.Get(k)
		a, _ := without.Get(k)
		if b != gone && a != b {
			t.Fatalf("key %s moved from %s to %s though %s left", k, b, a, gone)
		}
		if a == gone {
			t.Fatalf("key %s still on the removed host", k)
		}
	}
}

func TestEmptyAndEqual(t *testing.T) {
	var nilRing *hashing.Ring
	if _, ok := nilRing.Get("x"); ok {
		t.Fatal("nil ring found a host")
	}
	empty := hashing.New(nil, 0)
	if _, ok := empty.Get("x"); ok {
		t.Fatal("empty ring found a host")
	}
	if empty.ReplicationFactor() != hashing.DefaultReplicationFactor {
		t.Fatalf("rf %d", empty.ReplicationFactor())
	}
	if !empty.Equal(nilRing) {
		t.Fatal("empty ring != nil ring")
	}
	one := hashing.New([]string{"a:1"}, 10)
	if h, ok := one.Get("anything"); !ok || h != "a:1" {
		t.Fatalf("single host ring: %q %v", h, ok)
	}
	if one.Equal(hashing.New([]string{"a:1"}, 11)) || one.Equal(hashing.New([]string{"b:1"}, 10)) || one.Equal(empty) {
		t.Fatal("different rings compare Equal")
	}
}

func TestCacheRetain(t *testing.T) {
	c := hashing.NewCache()
	hashing.NewCached(hosts(5), 10, c)
	if c.Len() != 5 {
		t.Fatalf("cache holds %d hosts", c.Len())
	}
	keep := hosts(2)
	c.Retain(func(h string) bool { return slices.Contains(keep, h) })
	if c.Len() != 2 {
		t.Fatalf("after Retain the cache holds %d hosts", c.Len())
	}
	if got, want := c.VirtualNodes(keep[0], 10), hashing.VirtualNodes(keep[0], 10); !slices.Equal(got, want) {
		t.Fatal("cached virtual nodes differ")
	}
}

func BenchmarkGet(b *testing.B) {
	r := hashing.New(hosts(50), 100)
	ks := keys(1024)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r.Get(ks[i%len(ks)])
	}
}

func BenchmarkBuild50(b *testing.B) {
	hs := hosts(50)
	c := hashing.NewCache()
	for b.Loop() {
		hashing.NewCached(hs, 100, c)
	}
}

// Cache.Ring hands out one ring per host set and replication factor, equal
// to New's, and forgets the rings no build asked for.
func TestCacheRing(t *testing.T) {
	c := hashing.NewCache()
	hs := hosts(4)
	rev := slices.Clone(hs)
	slices.Reverse(rev)
	a := c.Ring(hs, 20)
	if b := c.Ring(rev, 20); a != b {
		t.Fatal("the same hosts gave two rings")
	}
	if !a.Equal(hashing.New(hs, 20)) {
		t.Fatal("cached ring differs from New")
	}
	for _, k := range keys(2000) {
		got, _ := a.Get(k)
		want, _ := hashing.New(hs, 20).Get(k)
		if got != want {
			t.Fatalf("key %s: cached %s, new %s", k, got, want)
		}
	}
	other := c.Ring(hs[:2], 20)
	if other == a || c.Rings() != 2 {
		t.Fatalf("%d rings cached", c.Rings())
	}
	c.Retain(func(string) bool { return true }) // both used since the start
	if c.Rings() != 2 {
		t.Fatalf("Retain dropped used rings: %d left", c.Rings())
	}
	c.Ring(hs, 20)
	c.Retain(func(string) bool { return true })
	if c.Rings() != 1 {
		t.Fatalf("the unused ring was kept: %d rings", c.Rings())
	}
	if c.Ring(hs, 20) != a {
		t.Fatal("the used ring was rebuilt")
	}
}

// Rings the cache derives from a neighbour (one host more or less) are
// the rings a full build gives, point for point, through a long run of
// joins and leaves.
func TestCacheDerivedRingsMatchFullBuilds(t *testing.T) {
	c := hashing.NewCache()
	all := hosts(30)
	cur := slices.Clone(all[:10])
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 200 {
		if len(cur) > 1 && (rng.IntN(2) == 0 || len(cur) == len(all)) {
			i := rng.IntN(len(cur))
			cur = slices.Delete(cur, i, i+1)
		} else {
			for {
				h := all[rng.IntN(len(all))]
				if !slices.Contains(cur, h) {
					cur = append(cur, h)
					break
				}
			}
		}
		got := c.Ring(cur, 50)
		want := hashing.New(cur, 50)
		gp, go_ := hashing.Points(got)
		wp, wo := hashing.Points(want)
		if !slices.Equal(gp, wp) || !slices.Equal(go_, wo) || !slices.Equal(got.Hosts(), want.Hosts()) {
			t.Fatalf("step %d (%d hosts): the cached ring differs from a full build", step, len(cur))
		}
		c.Retain(func(h string) bool { return slices.Contains(cur, h) })
	}
}

func BenchmarkCacheRingJoinLeave(b *testing.B) {
	c := hashing.NewCache()
	hs := hosts(51)
	c.Ring(hs[:50], 100)
	i := 0
	for b.Loop() {
		i++
		if i%2 == 1 {
			c.Ring(hs, 100)
		} else {
			c.Ring(hs[:50], 100)
		}
		c.Retain(func(string) bool { return true })
	}
}
