package invoke

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/nameresolution"
)

type fakeResolver struct {
	addrs []string
	err   error
	calls atomic.Int32
}

func (f *fakeResolver) Resolve(context.Context, nameresolution.ResolveRequest) ([]string, error) {
	f.calls.Add(1)
	return f.addrs, f.err
}

func TestBalancerRoundRobinAndCache(t *testing.T) {
	r := &fakeResolver{addrs: []string{"a:1", "b:1", "c:1"}}
	b := newBalancer(r, time.Minute)
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	key := nameresolution.ResolveRequest{ID: "app", Namespace: "default"}
	got := map[string]int{}
	for range 30 {
		a, fresh, err := b.pick(context.Background(), key, nil)
		if err != nil || !fresh {
			t.Fatal(a, fresh, err)
		}
		got[a]++
	}
	if got["a:1"] != 10 || got["b:1"] != 10 || got["c:1"] != 10 {
		t.Fatalf("distribution %v, want 10 each", got)
	}
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("resolved %d times, want 1 (cached)", n)
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := b.pick(context.Background(), key, nil); err != nil || r.calls.Load() != 2 {
		t.Fatalf("after the TTL: %v, %d resolutions", err, r.calls.Load())
	}
}

func TestBalancerAvoidsDown(t *testing.T) {
	r := &fakeResolver{addrs: []string{"a:1", "b:1"}}
	b := newBalancer(r, time.Minute)
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	key := nameresolution.ResolveRequest{ID: "app", Namespace: "default"}
	b.markDown("a:1", "app", "default")
	for range 5 {
		if a, _, _ := b.pick(context.Background(), key, nil); a != "b:1" {
			t.Fatalf("picked %s while a:1 is down", a)
		}
	}
	// Tried addresses come last; when all were tried, fresh is false.
	if a, fresh, _ := b.pick(context.Background(), key, []string{"b:1"}); a != "a:1" || !fresh {
		t.Fatalf("avoiding b:1: %s %v", a, fresh)
	}
	if _, fresh, _ := b.pick(context.Background(), key, []string{"a:1", "b:1"}); fresh {
		t.Fatal("all tried but fresh")
	}
	now = now.Add(downFor + time.Second)
	seen := map[string]bool{}
	for range 4 {
		a, _, _ := b.pick(context.Background(), key, nil)
		seen[a] = true
	}
	if !seen["a:1"] {
		t.Fatal("a:1 still avoided after downFor")
	}
}

func TestBalancerErrors(t *testing.T) {
	key := nameresolution.ResolveRequest{ID: "app"}
	b := newBalancer(&fakeResolver{err: fmt.Errorf("%w: nope", nameresolution.ErrNotFound)}, time.Minute)
	if _, _, err := b.pick(context.Background(), key, nil); !errors.Is(err, nameresolution.ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	b = newBalancer(&fakeResolver{}, time.Minute)
	if _, _, err := b.pick(context.Background(), key, nil); !errors.Is(err, nameresolution.ErrNotFound) {
		t.Fatalf("empty answer: got %v", err)
	}
}

func BenchmarkBalancerPick(b *testing.B) {
	bal := newBalancer(&fakeResolver{addrs: []string{"a:1", "b:1"}}, time.Hour)
	key := nameresolution.ResolveRequest{ID: "app", Namespace: "default"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := bal.pick(context.Background(), key, nil); err != nil {
			b.Fatal(err)
		}
	}
}
