package configurationtest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/configuration"
)

// recorder is an UpdateHandler that keeps the events naming at least one
// key of this run (a shared backend carries other tests' changes too).
type recorder struct {
	prefix string
	id     string

	mu      sync.Mutex
	events  []*configuration.UpdateEvent
	read    int           // events consumed by next
	changed chan struct{} // closed and replaced on every event

	inFlight, maxInFlight atomic.Int32
}

func newRecorder(prefix string) *recorder {
	return &recorder{prefix: prefix, changed: make(chan struct{})}
}

func (r *recorder) handle(_ context.Context, e *configuration.UpdateEvent) error {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.maxInFlight.Load()
		if n <= m || r.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	ours := false
	for k := range e.Items {
		if strings.HasPrefix(k, r.prefix) {
			ours = true
		}
	}
	if !ours {
		return nil
	}
	// Keep a copy: the store may reuse its maps.
	cp := &configuration.UpdateEvent{ID: e.ID, Items: make(map[string]*configuration.Item, len(e.Items))}
	for k, it := range e.Items {
		if it != nil {
			c := *it
			it = &c
		}
		cp.Items[k] = it
	}
	// Widen the window in which a second, concurrent call would be seen.
	time.Sleep(time.Millisecond)
	r.mu.Lock()
	r.events = append(r.events, cp)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) maxConcurrent() int32 { return r.maxInFlight.Load() }

// waitCount waits up to d for at least n events and returns the count.
func (r *recorder) waitCount(n int, d time.Duration) int {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		r.mu.Lock()
		got, ch := len(r.events), r.changed
		r.mu.Unlock()
		if got >= n {
			return got
		}
		select {
		case <-ch:
		case <-timer.C:
			return got
		}
	}
}

// next returns the next unread event, failing after d.
func (r *recorder) next(t *testing.T, d time.Duration) *configuration.UpdateEvent {
	t.Helper()
	r.mu.Lock()
	want := r.read + 1
	r.mu.Unlock()
	if r.waitCount(want, d) < want {
		t.Fatalf("subscription %s: no update within %v", r.id, d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events[r.read]
	r.read++
	return e
}

// nextWith returns the next unread event naming key, skipping others.
func (r *recorder) nextWith(t *testing.T, d time.Duration, key string) *configuration.UpdateEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		e := r.next(t, time.Until(deadline))
		if _, ok := e.Items[key]; ok {
			return e
		}
	}
}
