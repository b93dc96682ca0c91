// Package configurationtest is the conformance suite every configuration
// store runs from its own tests:
//
//	func TestConformance(t *testing.T) {
//		configurationtest.Run(t, func(t *testing.T) (configuration.Store, configurationtest.Writer) {
//			return newInitialisedStore(t), writerForTheSameBackend(t)
//		}, configurationtest.Options{})
//	}
//
// Configuration stores are read-only through their contract: items are
// written by other programs. The suite therefore needs a Writer that puts
// items straight into the backend the way an operator would (a Redis SET, an
// SQL upsert). Without one, only the checks that need no data run.
//
// Every run uses fresh keys, so it can share a backend with other tests, and
// the Writer is expected to clean up what it wrote.
package configurationtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/configuration"
)

// Writer changes items in the store's backend behind its back. Each Set must
// give the item a version different from its previous one (the writer may
// pick it, or leave it to the backend).
type Writer interface {
	Set(ctx context.Context, key, value string) error
	Delete(ctx context.Context, key string) error
}

// NewFunc returns an initialised store and a writer for its backend (nil
// when there is none). It should register cleanups (t.Cleanup) that close
// the store and remove what the writer wrote; Close may then be called
// twice.
type NewFunc func(t *testing.T) (configuration.Store, Writer)

// Options tune the suite to a store.
type Options struct {
	// SubscribeMetadata is sent with every subscription (for example
	// pgNotifyChannel).
	SubscribeMetadata map[string]string
	// Timeout bounds how long a change may take to reach a subscriber
	// (default 10s).
	Timeout time.Duration
}

// Run runs the whole suite.
func Run(t *testing.T, newStore NewFunc, opts Options) {
	t.Helper()
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	s, w := newStore(t)
	c := &suite{s: s, w: w, opts: opts, prefix: fmt.Sprintf("cfgtest-%d-", time.Now().UnixNano())}

	t.Run("get missing keys", c.testGetMissing)
	t.Run("unsubscribe unknown id", c.testUnsubscribeUnknown)
	t.Run("subscribe without changes", c.testQuietSubscription)
	if w == nil {
		t.Log("no Writer: skipping the checks that need data")
		return
	}
	t.Run("get by keys", c.testGetByKeys)
	t.Run("get all", c.testGetAll)
	t.Run("versions change on update", c.testVersions)
	t.Run("subscribe to keys", c.testSubscribeKeys)
	t.Run("subscribe to all keys", c.testSubscribeAll)
	t.Run("delete is notified", c.testDelete)
	t.Run("updates arrive in order", c.testOrder)
	t.Run("unsubscribe stops updates", c.testUnsubscribe)
	t.Run("context ends subscription", c.testContextEnds)
	t.Run("close ends subscriptions", func(t *testing.T) { c.testClose(t, newStore) })
}

type suite struct {
	s      configuration.Store
	w      Writer
	opts   Options
	prefix string
}

func (c *suite) key(name string) string { return c.prefix + name }

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (c *suite) set(t *testing.T, key, value string) {
	t.Helper()
	if err := c.w.Set(ctx(t), key, value); err != nil {
		t.Fatalf("Writer.Set(%q, %q): %v", key, value, err)
	}
}

func (c *suite) del(t *testing.T, key string) {
	t.Helper()
	if err := c.w.Delete(ctx(t), key); err != nil {
		t.Fatalf("Writer.Delete(%q): %v", key, err)
	}
}

func (c *suite) get(t *testing.T, keys ...string) map[string]*configuration.Item {
	t.Helper()
	items, err := c.s.Get(ctx(t), configuration.GetRequest{Keys: keys})
	if err != nil {
		t.Fatalf("Get(%q): %v", keys, err)
	}
	return items
}

// subscribe subscribes with a recorder and unsubscribes at the end of the
// test (tolerating an id that already ended).
func (c *suite) subscribe(t *testing.T, keys ...string) (string, *recorder) {
	t.Helper()
	return c.subscribeCtx(t, context.Background(), keys...)
}

func (c *suite) subscribeCtx(t *testing.T, subCtx context.Context, keys ...string) (string, *recorder) {
	t.Helper()
	rec := newRecorder(c.prefix)
	id, err := c.s.Subscribe(subCtx, configuration.SubscribeRequest{Keys: keys, Metadata: c.opts.SubscribeMetadata}, rec.handle)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", keys, err)
	}
	if id == "" {
		t.Fatalf("Subscribe(%q) returned an empty id", keys)
	}
	rec.id = id
	t.Cleanup(func() {
		if err := c.s.Unsubscribe(context.Background(), id); err != nil && !errors.Is(err, configuration.ErrSubscriptionNotFound) {
			t.Errorf("Unsubscribe(%s) at cleanup: %v", id, err)
		}
	})
	return id, rec
}

func (c *suite) testGetMissing(t *testing.T) {
	items := c.get(t, c.key("missing-1"), c.key("missing-2"))
	if len(items) != 0 {
		t.Fatalf("Get(missing keys) = %v, want no items", describe(items))
	}
}

func (c *suite) testUnsubscribeUnknown(t *testing.T) {
	err := c.s.Unsubscribe(ctx(t), "no-such-subscription")
	if !errors.Is(err, configuration.ErrSubscriptionNotFound) {
		t.Fatalf("Unsubscribe(unknown id) = %v, want an error wrapping ErrSubscriptionNotFound", err)
	}
}

func (c *suite) testQuietSubscription(t *testing.T) {
	id1, _ := c.subscribe(t, c.key("quiet"))
	id2, _ := c.subscribe(t)
	if id1 == id2 {
		t.Fatalf("two subscriptions share the id %q", id1)
	}
	for _, id := range []string{id1, id2} {
		if err := c.s.Unsubscribe(ctx(t), id); err != nil {
			t.Fatalf("Unsubscribe(%s): %v", id, err)
		}
		if err := c.s.Unsubscribe(ctx(t), id); !errors.Is(err, configuration.ErrSubscriptionNotFound) {
			t.Fatalf("second Unsubscribe(%s) = %v, want ErrSubscriptionNotFound", id, err)
		}
	}
}

func (c *suite) testGetByKeys(t *testing.T) {
	a, b, other := c.key("get-a"), c.key("get-b"), c.key("get-other")
	c.set(t, a, "alpha")
	c.set(t, b, "beta ünïcode")
	c.set(t, other, "not asked for")
	items := c.get(t, a, b, c.key("get-missing"))
	if len(items) != 2 {
		t.Fatalf("Get(a, b, missing) = %v, want exactly a and b", describe(items))
	}
	wantItem(t, items, a, "alpha")
	wantItem(t, items, b, "beta ünïcode")
	for k, it := range items {
		if it.Version == "" {
			t.Errorf("Get(%s).Version is empty; a writer-supplied or store-assigned version is expected", k)
		}
	}
}

func (c *suite) testGetAll(t *testing.T) {
	a, b := c.key("all-a"), c.key("all-b")
	c.set(t, a, "1")
	c.set(t, b, "2")
	items := c.get(t)
	wantItem(t, items, a, "1")
	wantItem(t, items, b, "2")
	items, err := c.s.Get(ctx(t), configuration.GetRequest{Keys: []string{}})
	if err != nil {
		t.Fatalf("Get(empty key list): %v", err)
	}
	wantItem(t, items, a, "1")
}

func (c *suite) testVersions(t *testing.T) {
	k := c.key("versioned")
	c.set(t, k, "v1")
	first := wantItem(t, c.get(t, k), k, "v1")
	c.set(t, k, "v2")
	second := wantItem(t, c.get(t, k), k, "v2")
	if first.Version == second.Version {
		t.Fatalf("version %q did not change when the value changed", first.Version)
	}
}

func (c *suite) testSubscribeKeys(t *testing.T) {
	a, b, other := c.key("sub-a"), c.key("sub-b"), c.key("sub-other")
	id, rec := c.subscribe(t, a, b)
	c.set(t, a, "A1")
	ev := rec.next(t, c.opts.Timeout)
	if ev.ID != id {
		t.Errorf("event id %q, want the subscription id %q", ev.ID, id)
	}
	wantItem(t, ev.Items, a, "A1")
	if len(ev.Items) != 1 {
		t.Errorf("event items %v, want only %s", describe(ev.Items), a)
	}
	// A change to an unwatched key must not be reported: write it first,
	// then a watched one, and expect the watched one next.
	c.set(t, other, "ignored")
	c.set(t, b, "B1")
	ev = rec.next(t, c.opts.Timeout)
	if _, bad := ev.Items[other]; bad {
		t.Fatalf("subscription to %s and %s received %s", a, b, other)
	}
	wantItem(t, ev.Items, b, "B1")
}

func (c *suite) testSubscribeAll(t *testing.T) {
	k := c.key("sub-all")
	_, rec := c.subscribe(t)
	c.set(t, k, "everything")
	ev := rec.nextWith(t, c.opts.Timeout, k)
	wantItem(t, ev.Items, k, "everything")
}

func (c *suite) testDelete(t *testing.T) {
	k := c.key("deleted")
	c.set(t, k, "here")
	_, rec := c.subscribe(t, k)
	c.del(t, k)
	ev := rec.next(t, c.opts.Timeout)
	it, ok := ev.Items[k]
	if !ok {
		t.Fatalf("delete event %v does not name %s", describe(ev.Items), k)
	}
	if it != nil && it.Value != "" {
		t.Fatalf("delete event item %s = %+v, want an empty value", k, *it)
	}
	if items := c.get(t, k); len(items) != 0 {
		t.Fatalf("Get after delete = %v, want nothing", describe(items))
	}
}

func (c *suite) testOrder(t *testing.T) {
	k := c.key("ordered")
	_, rec := c.subscribe(t, k)
	const n = 5
	for i := 1; i <= n; i++ {
		c.set(t, k, fmt.Sprintf("v%d", i))
	}
	// Stores that poll may coalesce intermediate values, but what arrives
	// must be in write order and end with the last write.
	last := 0
	for last < n {
		ev := rec.next(t, c.opts.Timeout)
		it := ev.Items[k]
		if it == nil {
			t.Fatalf("event %v lacks %s", describe(ev.Items), k)
		}
		var i int
		if _, err := fmt.Sscanf(it.Value, "v%d", &i); err != nil {
			t.Fatalf("unexpected value %q", it.Value)
		}
		if i < last {
			t.Fatalf("value v%d arrived after v%d", i, last)
		}
		last = i
	}
	if max := rec.maxConcurrent(); max > 1 {
		t.Fatalf("the handler ran %d times concurrently for one subscription", max)
	}
}

func (c *suite) testUnsubscribe(t *testing.T) {
	k := c.key("unsub")
	id, rec := c.subscribe(t, k)
	_, sentinel := c.subscribe(t, k)
	c.set(t, k, "before")
	rec.next(t, c.opts.Timeout)
	sentinel.next(t, c.opts.Timeout)
	if err := c.s.Unsubscribe(ctx(t), id); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	seen := rec.count()
	c.set(t, k, "after")
	sentinel.next(t, c.opts.Timeout) // the change has been observed
	if got := rec.count(); got != seen {
		t.Fatalf("the handler was called %d more time(s) after Unsubscribe returned", got-seen)
	}
	if err := c.s.Unsubscribe(ctx(t), id); !errors.Is(err, configuration.ErrSubscriptionNotFound) {
		t.Fatalf("second Unsubscribe = %v, want ErrSubscriptionNotFound", err)
	}
}

func (c *suite) testContextEnds(t *testing.T) {
	k := c.key("ctx")
	subCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, rec := c.subscribeCtx(t, subCtx, k)
	_, sentinel := c.subscribe(t, k)
	c.set(t, k, "before")
	rec.next(t, c.opts.Timeout)
	sentinel.next(t, c.opts.Timeout)
	cancel()
	// The subscription ends asynchronously; once it has, writes are not
	// reported. Wait until a write reaches the sentinel but not rec.
	deadline := time.Now().Add(c.opts.Timeout)
	for i := 0; ; i++ {
		seen := rec.count()
		c.set(t, k, fmt.Sprintf("after-%d", i))
		sentinel.next(t, c.opts.Timeout)
		if rec.waitCount(seen+1, 100*time.Millisecond) == seen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("updates still arrive after the subscription's context ended")
		}
	}
}

func (c *suite) testClose(t *testing.T, newStore NewFunc) {
	k := c.key("close")
	_, sentinel := c.subscribe(t, k)
	before := runtime.NumGoroutine()
	s2, _ := newStore(t)
	rec := newRecorder(c.prefix)
	if _, err := s2.Subscribe(context.Background(), configuration.SubscribeRequest{Keys: []string{k}, Metadata: c.opts.SubscribeMetadata}, rec.handle); err != nil {
		t.Fatalf("Subscribe on a second store: %v", err)
	}
	if _, err := s2.Subscribe(context.Background(), configuration.SubscribeRequest{Metadata: c.opts.SubscribeMetadata}, rec.handle); err != nil {
		t.Fatalf("Subscribe(all) on a second store: %v", err)
	}
	c.set(t, k, "before close")
	sentinel.next(t, c.opts.Timeout)
	rec.waitCount(2, c.opts.Timeout)
	if err := s2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	seen := rec.count()
	c.set(t, k, "after close")
	sentinel.next(t, c.opts.Timeout)
	if got := rec.count(); got != seen {
		t.Fatalf("the handler was called %d more time(s) after Close returned", got-seen)
	}
	if _, err := s2.Subscribe(context.Background(), configuration.SubscribeRequest{Keys: []string{k}, Metadata: c.opts.SubscribeMetadata}, rec.handle); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	if err := s2.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Every goroutine the second store started has ended.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before the store was created:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantItem(t *testing.T, items map[string]*configuration.Item, key, value string) *configuration.Item {
	t.Helper()
	it, ok := items[key]
	if !ok || it == nil {
		t.Fatalf("items %v lack %s", describe(items), key)
	}
	if it.Value != value {
		t.Fatalf("item %s = %q, want %q", key, it.Value, value)
	}
	return it
}

func describe(items map[string]*configuration.Item) string {
	out := "{"
	for k, it := range items {
		if it == nil {
			out += fmt.Sprintf(" %s:nil", k)
			continue
		}
		out += fmt.Sprintf(" %s:%q@%q", k, it.Value, it.Version)
	}
	return out + " }"
}
