package bindingstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/bindings"
)

// InputOptions describe an input binding to the suite.
type InputOptions struct {
	// Trigger makes the binding produce an event carrying data (for
	// example by publishing to the binding's topic). Nil for bindings that
	// produce events on their own (cron); their event data is not checked.
	Trigger func(t *testing.T, data []byte)
	// Redelivers is set when an event whose handler failed is delivered
	// again.
	Redelivers bool
	// Timeout bounds each wait for an event (default 15s).
	Timeout time.Duration
}

// NewInputFunc returns an initialised input binding; it should register
// its own cleanup (t.Cleanup) to close it.
type NewInputFunc func(t *testing.T) bindings.Input

// RunInput runs the input suite. Each subtest uses a fresh instance.
func RunInput(t *testing.T, newInput NewInputFunc, opts InputOptions) {
	t.Helper()
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	t.Run("delivers events", func(t *testing.T) {
		r := startReader(t, newInput(t), nil)
		if opts.Trigger == nil {
			r.wait(t, opts.Timeout, "two events", func(evs []event) bool { return len(evs) >= 2 })
			for _, e := range r.all() {
				if e.Metadata == nil {
					t.Errorf("event metadata is nil")
				}
			}
			return
		}
		r.warmUp(t, opts)
		want := payloads(t, "deliver", 3)
		for _, p := range want {
			opts.Trigger(t, p)
		}
		for _, p := range want {
			r.wait(t, opts.Timeout, fmt.Sprintf("event %q", p), countOf(p, 1))
		}
	})
	t.Run("after a handler error", func(t *testing.T) {
		// The first event (or, with a Trigger, the first delivery of the
		// payload p) is rejected once.
		p := payloads(t, "reject", 1)[0]
		var mu sync.Mutex
		rejected := false
		fail := func(e *bindings.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if rejected || (opts.Trigger != nil && string(e.Data) != string(p)) {
				return nil
			}
			rejected = true
			return errors.New("bindingstest: the app rejects this event")
		}
		r := startReader(t, newInput(t), fail)
		if opts.Trigger == nil {
			r.wait(t, opts.Timeout, "an event after the rejected one", func(evs []event) bool { return len(evs) >= 2 })
			return
		}
		r.warmUp(t, opts)
		opts.Trigger(t, p)
		if opts.Redelivers {
			r.wait(t, opts.Timeout, fmt.Sprintf("redelivery of the rejected event %q", p), countOf(p, 2))
			return
		}
		r.wait(t, opts.Timeout, fmt.Sprintf("the rejected event %q", p), countOf(p, 1))
		next := payloads(t, "after-reject", 1)[0]
		opts.Trigger(t, next)
		r.wait(t, opts.Timeout, fmt.Sprintf("event %q after the rejected one", next), countOf(next, 1))
	})
	t.Run("cancelling ctx stops Read", func(t *testing.T) {
		r := startReader(t, newInput(t), nil)
		r.cancel()
		r.stopped(t, opts.Timeout)
	})
	t.Run("Close stops Read", func(t *testing.T) {
		in := newInput(t)
		r := startReader(t, in, nil)
		if opts.Trigger != nil {
			r.warmUp(t, opts)
		}
		for i := range 2 {
			if err := in.Close(); err != nil {
				t.Fatalf("Close #%d: %v", i+1, err)
			}
		}
		r.stopped(t, opts.Timeout)
	})
	t.Run("Read after Close", func(t *testing.T) {
		in := newInput(t)
		if err := in.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		r := startReader(t, in, nil)
		r.stopped(t, opts.Timeout) // an error or nil, but promptly
	})
}

// event is a delivered event.
type event struct {
	Data     []byte
	Metadata map[string]string
}

// reader runs Read in a goroutine and records the events.
type reader struct {
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	events  []event
	changed chan struct{} // closed and replaced on every event
}

func startReader(t *testing.T, in bindings.Input, fail func(*bindings.Event) error) *reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{cancel: cancel, done: make(chan error, 1), changed: make(chan struct{})}
	handler := func(_ context.Context, e *bindings.Event) ([]byte, error) {
		r.mu.Lock()
		r.events = append(r.events, event{Data: append([]byte(nil), e.Data...), Metadata: e.Metadata})
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		if fail != nil {
			return nil, fail(e)
		}
		return nil, nil
	}
	go func() { r.done <- in.Read(ctx, handler) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("Read did not return within 30s of its context being cancelled")
		}
	})
	return r
}

func (r *reader) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// wait blocks until cond holds for the events so far, failing the test
// after timeout or when Read returns early.
func (r *reader) wait(t *testing.T, timeout time.Duration, what string, cond func([]event) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, changed := cond(r.events), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case err := <-r.done:
			r.done <- err
			t.Fatalf("waiting for %s: Read returned early: %v", what, err)
		case <-deadline.C:
			t.Fatalf("no %s within %v (got %d events)", what, timeout, len(r.all()))
		}
	}
}

// warmUp triggers events until one arrives, so that the binding is known to
// be subscribed before the real events are sent (a broker drops messages
// published before the subscription exists).
func (r *reader) warmUp(t *testing.T, opts InputOptions) {
	t.Helper()
	deadline := time.Now().Add(opts.Timeout)
	for i := 0; ; i++ {
		r.mu.Lock()
		n, changed := len(r.events), r.changed
		r.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event arrived within %v of triggering warm-up events", opts.Timeout)
		}
		opts.Trigger(t, fmt.Appendf(nil, "bindingstest-warmup-%d-%d", time.Now().UnixNano(), i))
		retry := time.NewTimer(500 * time.Millisecond)
		select {
		case <-changed:
		case <-retry.C:
		}
		retry.Stop()
	}
}

// stopped fails unless Read returns within timeout.
func (r *reader) stopped(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
	case <-time.After(timeout):
		t.Fatalf("Read did not return within %v", timeout)
	}
}

// payloads returns n unique event payloads.
func payloads(t *testing.T, kind string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "bindingstest-%s-%d-%d {\"n\":%d}", kind, time.Now().UnixNano(), i, i)
	}
	return out
}

// countOf holds once payload p was delivered at least n times.
func countOf(p []byte, n int) func([]event) bool {
	return func(evs []event) bool {
		c := 0
		for _, e := range evs {
			if string(e.Data) == string(p) {
				c++
			}
		}
		return c >= n
	}
}
