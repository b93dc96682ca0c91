// Package nameresolutiontest is the conformance suite every name resolution
// component passes, called from each implementation's own test:
//
//	nameresolutiontest.Run(t, nameresolutiontest.Options{New: ..., Metadata: ...})
//
// Each resolver New returns plays one sidecar; all of them share the same
// backing registry (a file, a multicast group, a cluster), so the suite can
// check what one announces the others resolve. App ids are unique per run.
//
// Not every resolver keeps a registry: a DNS-based one (nameresolution.kubernetes)
// derives the address from the request and cannot announce, withdraw or
// expire anything. Such a resolver declares it with Options.Derive, and the
// suite checks that contract instead, reporting every registry subtest as
// skipped with the capability it lacks, never passing it silently.
package nameresolutiontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
)

// Options describe the implementation under test.
type Options struct {
	// New returns a fresh, uninitialised resolver.
	New func(t testing.TB) nameresolution.Resolver
	// Metadata initialises every resolver; it should make announcements
	// expire quickly (the expiry test waits for it).
	Metadata components.Metadata
	// Crash makes a registered resolver stop as a killed process would:
	// no more heartbeats, no withdrawal. Nil skips the expiry test.
	Crash func(nameresolution.Resolver)
	// Expiry bounds how long a crashed or closed instance may stay
	// resolvable (default 10s).
	Expiry time.Duration
	// Derive, when set, declares a resolver without a registry: Register
	// and Close announce and withdraw nothing, and Resolve answers every
	// app id with the addresses Derive returns for the request (in that
	// order), never ErrNotFound. The registry subtests are then skipped,
	// each saying so, and the Derived subtests run in their place.
	Derive func(nameresolution.ResolveRequest) []string
}

// Run runs the suite.
func Run(t *testing.T, o Options) {
	if o.Expiry == 0 {
		o.Expiry = 10 * time.Second
	}
	s := &suite{o: o, run: unique()}
	t.Run("ResolveRegistered", s.registry(s.resolveRegistered))
	t.Run("UnknownIsNotFound", s.registry(s.unknown))
	t.Run("NamespacesAreSeparate", s.registry(s.namespaces))
	t.Run("RegisterAgainUpdates", s.registry(s.reRegister))
	t.Run("CloseWithdraws", s.registry(s.closeWithdraws))
	t.Run("DeregisterWithdrawsButResolves", s.registry(s.deregister))
	t.Run("ConcurrentResolve", s.concurrent)
	switch {
	case o.Derive != nil:
		t.Run("CrashedExpire", s.registry(nil))
	case o.Crash != nil:
		t.Run("CrashedExpire", s.crashed)
	default:
		t.Run("CrashedExpire", func(t *testing.T) {
			t.Skip("Options.Crash is nil: the implementation cannot simulate a killed sidecar")
		})
	}
	t.Run("List", s.registry(s.list))
	t.Run("Derived", s.derived)
}

// registry runs a subtest that needs a registry, or skips it, naming the
// capability, when the resolver declares it has none.
func (s *suite) registry(f func(*testing.T)) func(*testing.T) {
	return func(t *testing.T) {
		if s.o.Derive != nil {
			t.Skip("Options.Derive is set: the resolver keeps no registry, so there is nothing to announce, withdraw or expire")
		}
		f(t)
	}
}

type suite struct {
	o    Options
	run  string
	port int
}

func unique() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// start creates and initialises a resolver that is closed at the end of the
// test unless the test closes it itself.
func (s *suite) start(t testing.TB) nameresolution.Resolver {
	t.Helper()
	r := s.o.New(t)
	if err := r.Init(ctx(t), s.o.Metadata); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func (s *suite) instance(app, ns string) nameresolution.Instance {
	s.port++
	port := 40000 + s.port
	return nameresolution.Instance{
		InstanceID: fmt.Sprintf("%s-%s-%d", app, s.run, port), AppID: app, Namespace: ns,
		Address: fmt.Sprintf("127.0.0.1:%d", port), HTTPPort: port + 1000, GRPCPort: port + 2000, InternalPort: port,
		AppPort: port + 3000, AppProtocol: "http", PID: os.Getpid(), AppPID: 4242, Command: "app --flag",
		StartedAt: time.Now().Truncate(time.Millisecond),
	}
}

func (s *suite) app(name string) string { return name + "-" + s.run }

func register(t testing.TB, r nameresolution.Resolver, in nameresolution.Instance) {
	t.Helper()
	if err := r.Register(ctx(t), in); err != nil {
		t.Fatalf("Register(%s): %v", in.AppID, err)
	}
}

func resolve(t testing.TB, r nameresolution.Resolver, app, ns string) ([]string, error) {
	t.Helper()
	got, err := r.Resolve(ctx(t), nameresolution.ResolveRequest{ID: app, Namespace: ns})
	slices.Sort(got)
	return got, err
}

func sorted(addrs ...string) []string {
	out := slices.Clone(addrs)
	slices.Sort(out)
	return out
}

// eventually polls f until it returns nil or the expiry passes.
func (s *suite) eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(s.o.Expiry)
	delay := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, s.o.Expiry, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 200*time.Millisecond)
	}
}

func (s *suite) resolveRegistered(t *testing.T) {
	a, b := s.app("alpha"), s.app("beta")
	a1, a2, b1 := s.instance(a, "default"), s.instance(a, "default"), s.instance(b, "default")
	ra1, ra2, rb1, client := s.start(t), s.start(t), s.start(t), s.start(t)
	register(t, ra1, a1)
	register(t, ra2, a2)
	register(t, rb1, b1)
	for _, r := range []nameresolution.Resolver{client, ra1, rb1} {
		s.eventually(t, "resolve alpha", func() error {
			got, err := resolve(t, r, a, "default")
			if err != nil || !slices.Equal(got, sorted(a1.Address, a2.Address)) {
				return fmt.Errorf("Resolve(alpha) = %v, %v; want %v", got, err, sorted(a1.Address, a2.Address))
			}
			return nil
		})
		got, err := resolve(t, r, b, "default")
		if err != nil || !slices.Equal(got, []string{b1.Address}) {
			t.Fatalf("Resolve(beta) = %v, %v; want [%s]", got, err, b1.Address)
		}
	}
}

func (s *suite) unknown(t *testing.T) {
	r := s.start(t)
	got, err := resolve(t, r, s.app("nobody"), "default")
	if !errors.Is(err, nameresolution.ErrNotFound) {
		t.Fatalf("Resolve(unknown) = %v, %v; want an error wrapping ErrNotFound", got, err)
	}
}

func (s *suite) namespaces(t *testing.T) {
	a := s.app("ns")
	prod, dev := s.instance(a, "production"), s.instance(a, "dev")
	r1, r2 := s.start(t), s.start(t)
	register(t, r1, prod)
	register(t, r2, dev)
	s.eventually(t, "resolve in production", func() error {
		got, err := resolve(t, r1, a, "production")
		if err != nil || !slices.Equal(got, []string{prod.Address}) {
			return fmt.Errorf("Resolve(production) = %v, %v; want [%s]", got, err, prod.Address)
		}
		return nil
	})
	got, err := resolve(t, r1, a, "dev")
	if err != nil || !slices.Equal(got, []string{dev.Address}) {
		t.Fatalf("Resolve(dev) = %v, %v; want [%s]", got, err, dev.Address)
	}
	if got, err := resolve(t, r1, a, "staging"); !errors.Is(err, nameresolution.ErrNotFound) {
		t.Fatalf("Resolve(staging) = %v, %v; want ErrNotFound", got, err)
	}
}

func (s *suite) reRegister(t *testing.T) {
	a := s.app("moving")
	in := s.instance(a, "default")
	r := s.start(t)
	register(t, r, in)
	in.Address = "127.0.0.1:1"
	register(t, r, in)
	s.eventually(t, "resolve the new address", func() error {
		got, err := resolve(t, r, a, "default")
		if err != nil || !slices.Equal(got, []string{in.Address}) {
			return fmt.Errorf("Resolve = %v, %v; want only the new address [%s]", got, err, in.Address)
		}
		return nil
	})
}

func (s *suite) closeWithdraws(t *testing.T) {
	a := s.app("closing")
	i1, i2 := s.instance(a, "default"), s.instance(a, "default")
	r1, r2, client := s.start(t), s.start(t), s.start(t)
	register(t, r1, i1)
	register(t, r2, i2)
	s.eventually(t, "both registered", func() error {
		got, err := resolve(t, client, a, "default")
		if len(got) != 2 {
			return fmt.Errorf("Resolve = %v, %v; want 2 addresses", got, err)
		}
		return nil
	})
	if err := r2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.eventually(t, "closed instance withdrawn", func() error {
		got, err := resolve(t, client, a, "default")
		if err != nil || !slices.Equal(got, []string{i1.Address}) {
			return fmt.Errorf("Resolve = %v, %v; want [%s]", got, err, i1.Address)
		}
		return nil
	})
	if err := r1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.eventually(t, "all withdrawn", func() error {
		got, err := resolve(t, client, a, "default")
		if !errors.Is(err, nameresolution.ErrNotFound) {
			return fmt.Errorf("Resolve = %v, %v; want ErrNotFound", got, err)
		}
		return nil
	})
	if err := r1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func (s *suite) deregister(t *testing.T) {
	r := s.start(t)
	d, ok := r.(nameresolution.Deregisterer)
	if !ok {
		t.Skip("resolver does not implement Deregisterer")
	}
	a, other := s.app("leaving"), s.app("staying")
	in, o := s.instance(a, "default"), s.instance(other, "default")
	register(t, r, in)
	register(t, s.start(t), o)
	if err := d.Deregister(ctx(t)); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	s.eventually(t, "deregistered instance withdrawn", func() error {
		if got, err := resolve(t, r, a, "default"); !errors.Is(err, nameresolution.ErrNotFound) {
			return fmt.Errorf("Resolve(leaving) = %v, %v; want ErrNotFound", got, err)
		}
		return nil
	})
	// It still resolves others, and stays withdrawn past a few heartbeats.
	if got, err := resolve(t, r, other, "default"); err != nil || !slices.Equal(got, []string{o.Address}) {
		t.Fatalf("Resolve(staying) after Deregister = %v, %v", got, err)
	}
	if err := d.Deregister(ctx(t)); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
}

func (s *suite) concurrent(t *testing.T) {
	a := s.app("busy")
	in := s.instance(a, "default")
	r := s.start(t)
	register(t, r, in)
	want := []string{in.Address}
	if s.o.Derive != nil {
		want = s.o.Derive(nameresolution.ResolveRequest{ID: a, Namespace: "default"})
	}
	readers := []nameresolution.Resolver{s.start(t), s.start(t)}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Go(func() {
			for range 10 {
				got, err := readers[i%2].Resolve(ctx(t), nameresolution.ResolveRequest{ID: a, Namespace: "default"})
				if err != nil || !slices.Equal(got, want) {
					errs <- fmt.Errorf("Resolve = %v, %v; want %v", got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func (s *suite) crashed(t *testing.T) {
	a := s.app("crash")
	live, dead := s.instance(a, "default"), s.instance(a, "default")
	rl, rd, client := s.start(t), s.start(t), s.start(t)
	register(t, rl, live)
	register(t, rd, dead)
	s.eventually(t, "both registered", func() error {
		got, err := resolve(t, client, a, "default")
		if len(got) != 2 {
			return fmt.Errorf("Resolve = %v, %v; want 2 addresses", got, err)
		}
		return nil
	})
	s.o.Crash(rd)
	start := time.Now()
	s.eventually(t, "crashed instance expires", func() error {
		got, err := resolve(t, client, a, "default")
		if err != nil || !slices.Equal(got, []string{live.Address}) {
			return fmt.Errorf("Resolve = %v, %v; want only the live [%s]", got, err, live.Address)
		}
		return nil
	})
	t.Logf("crashed instance expired after %v", time.Since(start).Round(time.Millisecond))
	// The live one keeps its heartbeat past several expiry periods.
	got, err := resolve(t, client, a, "default")
	if err != nil || !slices.Equal(got, []string{live.Address}) {
		t.Fatalf("live instance after expiry: Resolve = %v, %v", got, err)
	}
}

func (s *suite) list(t *testing.T) {
	r := s.start(t)
	l, ok := r.(nameresolution.Lister)
	if !ok {
		t.Skip("resolver does not implement Lister")
	}
	a := s.app("listed")
	in := s.instance(a, "default")
	register(t, r, in)
	var found *nameresolution.Instance
	s.eventually(t, "listed", func() error {
		all, err := l.List(ctx(t))
		if err != nil {
			return err
		}
		for i := range all {
			if all[i].InstanceID == in.InstanceID {
				found = &all[i]
				return nil
			}
		}
		return fmt.Errorf("instance %s not in List (%d entries)", in.InstanceID, len(all))
	})
	got := *found
	if got.LastSeen.IsZero() {
		t.Errorf("LastSeen is zero")
	}
	got.LastSeen = time.Time{}
	if !got.StartedAt.Equal(in.StartedAt) {
		t.Errorf("StartedAt = %v, want %v", got.StartedAt, in.StartedAt)
	}
	got.StartedAt = in.StartedAt
	if got != in {
		t.Errorf("List entry = %+v\nwant %+v", got, in)
	}
}

// derived checks a resolver without a registry: Resolve is a function of
// the request alone, whatever was registered and before any Register, and
// Register, Deregister and Close succeed (Close more than once).
func (s *suite) derived(t *testing.T) {
	if s.o.Derive == nil {
		t.Skip("Options.Derive is nil: the resolver keeps a registry (the registry subtests cover it)")
	}
	r := s.start(t)
	a := s.app("derived")
	reqs := []nameresolution.ResolveRequest{
		{ID: a, Namespace: "default"},
		{ID: a, Namespace: "production"},
		{ID: s.app("other"), Namespace: "default"},
	}
	check := func(when string) {
		t.Helper()
		for _, req := range reqs {
			want := s.o.Derive(req)
			if len(want) == 0 {
				t.Fatalf("Options.Derive(%+v) returned no address", req)
			}
			got, err := r.Resolve(ctx(t), req)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("%s: Resolve(%+v) = %v, %v; want %v", when, req, got, err, want)
			}
		}
	}
	check("before Register")
	in := s.instance(a, "default")
	in.Address = "127.0.0.1:1"
	register(t, r, in)
	check("after Register")
	if d, ok := r.(nameresolution.Deregisterer); ok {
		if err := d.Deregister(ctx(t)); err != nil {
			t.Fatalf("Deregister: %v", err)
		}
		check("after Deregister")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
