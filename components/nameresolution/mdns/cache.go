package mdns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components/nameresolution"
)

const (
	// settleFor is how long a Resolve that found its first answers waits
	// for more from the same browse: answers of one network arrive
	// together, and returning them all spreads the first calls too.
	settleFor = 25 * time.Millisecond
	// requeryGap limits how often callers joining a browse ask again.
	requeryGap = 100 * time.Millisecond
)

// app is what the resolver knows of one app id.
type app struct {
	service string           // "<app id>.local."
	entries map[string]entry // by instance name
	used    time.Time        // last Resolve
	flight  *flight          // the running browse, if any
}

type entry struct {
	addr    string
	ns      string
	nsKnown bool
	expires time.Time
}

// flight is a running browse of one app's service; the Resolve calls that
// miss the cache meanwhile join it instead of starting their own.
type flight struct {
	q *querier
	// deadline (guarded by Resolver.mu) moves later when a caller joins,
	// so that every caller gets a whole browseTimeout after its question.
	deadline time.Time
	// wake (guarded by Resolver.mu) is closed, and replaced, whenever an
	// answer changed the app's entries.
	wake chan struct{}
	done chan struct{}
	err  error // why the browse failed; set before done is closed
}

// Resolve returns the cached addresses of the app's sidecars in the
// namespace, or browses for them.
func (r *Resolver) Resolve(ctx context.Context, req nameresolution.ResolveRequest) ([]string, error) {
	if !validLabel(req.ID) {
		return nil, fmt.Errorf("mdns: app id %q cannot be an mDNS service name (one DNS label: no dots, at most 63 bytes)", req.ID)
	}
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	r.mu.Lock()
	if err := r.usableLocked(); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	// App ids are case-sensitive, as in the other resolvers, and so are
	// hashicorp/mdns responders: ask for the name as given.
	a := r.apps[req.ID]
	if a == nil {
		a = &app{service: req.ID + ".local.", entries: map[string]entry{}}
		r.apps[req.ID] = a
	}
	a.used = r.now()
	if addrs := a.live(ns, a.used); len(addrs) > 0 {
		r.mu.Unlock()
		return addrs, nil
	}
	f, started, err := r.browseLocked(a)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	gap := requeryGap
	if started {
		gap = 0
	}
	if err := f.q.send(gap); err != nil {
		return nil, err
	}
	r.log.Debug("app not in the mDNS cache; browsing", "app_id", req.ID, "namespace", ns, "new_browse", started)
	return r.await(ctx, a, f, req.ID, ns)
}

// await waits for the flight to find sidecars of the app in ns.
func (r *Resolver) await(ctx context.Context, a *app, f *flight, id, ns string) ([]string, error) {
	var settle <-chan time.Time
	settled := false
	for {
		r.mu.Lock()
		addrs := a.live(ns, r.now())
		wake, closed := f.wake, r.closed
		r.mu.Unlock()
		finished := isDone(f.done)
		switch {
		case closed:
			return nil, fmt.Errorf("mdns: resolver closed while resolving %q", id)
		case len(addrs) > 0 && (settled || finished):
			return addrs, nil
		case finished && f.err != nil:
			return nil, fmt.Errorf("mdns: browsing for app %q: %w", id, f.err)
		case finished:
			return nil, fmt.Errorf("%w: no sidecar of app %q in namespace %q answered on mDNS (interface %s) within %v",
				nameresolution.ErrNotFound, id, ns, r.iface.Name, r.cfg.BrowseTimeout)
		}
		if len(addrs) > 0 && settle == nil {
			t := time.NewTimer(min(settleFor, r.cfg.BrowseTimeout/4))
			defer t.Stop()
			settle = t.C
		}
		select {
		case <-wake:
		case <-f.done:
		case <-settle:
			settled = true
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// browseLocked joins the app's running browse, moving its end to a whole
// browseTimeout from now, or starts one. Called with mu held.
func (r *Resolver) browseLocked(a *app) (f *flight, started bool, err error) {
	end := time.Now().Add(r.cfg.BrowseTimeout)
	if f := a.flight; f != nil {
		if end.After(f.deadline) {
			f.deadline = end
		}
		return f, false, nil
	}
	q, err := newQuerier(r.iface, r.src, a.service)
	if err != nil {
		return nil, false, err
	}
	f = &flight{q: q, deadline: end, wake: make(chan struct{}), done: make(chan struct{})}
	a.flight = f
	r.wg.Add(1) // mu is held and the resolver is not closed: Close waits for it
	go r.fly(a, f)
	return f, true, nil
}

// fly reads the flight's answers into the cache until its deadline or
// Close.
func (r *Resolver) fly(a *app, f *flight) {
	defer r.wg.Done()
	stop := context.AfterFunc(r.run, f.q.close)
	defer stop()
	deadline := func() time.Time {
		r.mu.Lock()
		defer r.mu.Unlock()
		return f.deadline
	}
	err := f.q.read(a.service, deadline, func(s sighting) { r.record(a, f, s) })
	f.q.close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.flight == f {
		a.flight = nil
	}
	if err != nil && r.run.Err() == nil {
		r.log.Warn("mdns browse failed", "service", a.service, "error", err)
		f.err = err
	}
	close(f.done)
}

// record puts an answer in the cache and wakes the flight's callers.
func (r *Resolver) record(a *app, f *flight, s sighting) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.gone {
		delete(a.entries, s.instance)
	} else {
		ttl := r.cfg.AddressTTL
		if s.ttl > 0 && s.ttl < ttl {
			ttl = s.ttl
		}
		a.entries[s.instance] = entry{addr: s.addr, ns: s.ns, nsKnown: s.nsKnown, expires: r.now().Add(ttl)}
	}
	close(f.wake)
	f.wake = make(chan struct{})
}

// live drops the expired entries and returns the sorted, distinct
// addresses of those in ns (or in no namespace). Called with mu held.
func (a *app) live(ns string, now time.Time) []string {
	var out []string
	for k, e := range a.entries {
		if !now.Before(e.expires) {
			delete(a.entries, k)
			continue
		}
		if !e.nsKnown || e.ns == ns {
			out = append(out, e.addr)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// forget drops an instance from the cache (the own one, once withdrawn).
func (r *Resolver) forget(instance string) {
	if instance == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.apps {
		delete(a.entries, instance)
	}
}

// refresher browses the recently resolved apps again every
// refreshInterval, so that cached addresses stay fresh and new instances
// are found, and forgets apps nobody asked for within addressTTL.
func (r *Resolver) refresher() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-r.run.Done():
			return
		case <-t.C:
			r.refresh()
		}
	}
}

func (r *Resolver) refresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	now := r.now()
	for key, a := range r.apps {
		a.live("", now) // expire
		idle := now.Sub(a.used) > r.cfg.AddressTTL
		if idle && len(a.entries) == 0 && a.flight == nil {
			delete(r.apps, key)
			continue
		}
		if idle || a.flight != nil {
			continue
		}
		f, _, err := r.browseLocked(a)
		if err == nil {
			err = f.q.send(0)
		}
		if err != nil {
			r.log.Warn("mdns refresh failed", "service", a.service, "error", err)
		}
	}
}

func (r *Resolver) usableLocked() error {
	switch {
	case r.closed:
		return fmt.Errorf("mdns: resolver is closed")
	case !r.inited:
		return fmt.Errorf("mdns: resolver is not initialised")
	}
	return nil
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func lower(s string) string { return strings.ToLower(s) }
