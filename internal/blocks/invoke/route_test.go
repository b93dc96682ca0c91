package invoke

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/components/nameresolution"
)

func TestTarget(t *testing.T) {
	b := New(Options{AppID: "me", Namespace: "default"})
	for _, tc := range []struct {
		in, id, ns string
		local      bool
		err        string
	}{
		{in: "me", id: "me", ns: "default", local: true},
		{in: "me.default", id: "me", ns: "default", local: true},
		{in: "me.prod", id: "me", ns: "prod"},
		{in: "other", id: "other", ns: "default"},
		{in: "", err: "app id is empty"},
		{in: "a.b.c", err: "invalid app id a.b.c"},
		{in: ".ns", err: "invalid app id .ns"},
	} {
		id, ns, local, err := b.Target(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Target(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || id != tc.id || ns != tc.ns || local != tc.local {
			t.Errorf("Target(%q) = %q, %q, %v, %v; want %q, %q, %v", tc.in, id, ns, local, err, tc.id, tc.ns, tc.local)
		}
	}
}

func TestDial(t *testing.T) {
	unreachable := fmt.Errorf("connection refused: %w", ErrUnreachable)
	t.Run("moves on from unreachable instances", func(t *testing.T) {
		r := &fakeResolver{addrs: []string{"a:1", "b:1", "c:1"}}
		b := New(Options{AppID: "me", Resolver: r})
		var tried []string
		err := b.Dial(context.Background(), "app", "default", func(addr string) error {
			tried = append(tried, addr)
			if len(tried) < 3 {
				return unreachable
			}
			return nil
		})
		if err != nil || len(tried) != 3 || len(slices.Compact(slices.Sorted(slices.Values(tried)))) != 3 {
			t.Fatalf("Dial = %v after trying %v, want success on the third distinct instance", err, tried)
		}
		// The two that failed are avoided while the other is up.
		for range 4 {
			if err := b.Dial(context.Background(), "app", "default", func(addr string) error {
				if addr != tried[2] {
					return fmt.Errorf("picked %s, which was unreachable", addr)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("other errors are final", func(t *testing.T) {
		b := New(Options{AppID: "me", Resolver: &fakeResolver{addrs: []string{"a:1", "b:1"}}})
		calls := 0
		appErr := errors.New("refused by the callee")
		err := b.Dial(context.Background(), "app", "default", func(string) error { calls++; return appErr })
		if !errors.Is(err, appErr) || calls != 1 {
			t.Fatalf("Dial = %v after %d calls, want the error after 1", err, calls)
		}
	})
	t.Run("gives up after Attempts", func(t *testing.T) {
		b := New(Options{AppID: "me", Resolver: &fakeResolver{addrs: []string{"a:1"}}, Attempts: 2, Backoff: 1})
		calls := 0
		err := b.Dial(context.Background(), "app", "default", func(string) error { calls++; return unreachable })
		if !errors.Is(err, ErrUnreachable) || calls != 2 || !strings.Contains(err.Error(), "a:1 (attempt 2 of 2)") {
			t.Fatalf("Dial = %v after %d calls, want the unreachable error after 2", err, calls)
		}
	})
	t.Run("resolution errors", func(t *testing.T) {
		b := New(Options{AppID: "me", Resolver: &fakeResolver{err: nameresolution.ErrNotFound}})
		err := b.Dial(context.Background(), "app", "default", func(string) error { t.Fatal("try called"); return nil })
		if !errors.Is(err, nameresolution.ErrNotFound) {
			t.Fatalf("Dial = %v, want ErrNotFound", err)
		}
		b = New(Options{AppID: "me", ResolverErr: errors.New("registry file is read-only")})
		err = b.Dial(context.Background(), "app", "default", func(string) error { t.Fatal("try called"); return nil })
		if err == nil || !strings.Contains(err.Error(), "name resolution is not available: registry file is read-only") {
			t.Fatalf("Dial without a resolver = %v", err)
		}
	})
}
