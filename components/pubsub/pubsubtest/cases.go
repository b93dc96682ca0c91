package pubsubtest

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/pubsub"
)

// roundTrip: payloads (JSON, binary with NULs, empty) arrive byte for byte
// with their metadata and topic, and a subscription to another topic gets
// none of them.
func (s *suite) roundTrip(t *testing.T) {
	b := s.opts.New(t)
	topic, other := s.topic("roundtrip"), s.topic("roundtrip-other")
	r, ro := newRecorder(), newRecorder()
	subscribe(t, b, topic, r.handle)
	subscribe(t, b, other, ro.handle)

	cases := []struct {
		data []byte
		md   map[string]string
	}{
		{[]byte(`{"id":1,"text":"héllo wörld ✓","nested":{"a":[1,2,3]}}`), map[string]string{
			"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			"x-custom":    "ünïcode value, with = and ;",
		}},
		{[]byte{0x00, 0xff, 0xfe, '\n', 0x00, '"', '\\', 0x01}, nil},
		{[]byte{}, map[string]string{"only": "metadata"}},
	}
	var want []string
	for _, c := range cases {
		s.publish(t, b, topic, c.data, c.md)
		want = append(want, string(c.data))
	}
	r.waitAll(t, s.opts.Timeout, "delivery of every published payload", want)

	got := map[string]delivery{}
	for _, d := range r.snapshot() {
		got[string(d.msg.Data)] = d
	}
	for _, c := range cases {
		d := got[string(c.data)]
		if d.msg.Topic != topic {
			t.Errorf("message %s: Topic = %q, want %q", trunc(c.data), d.msg.Topic, topic)
		}
		if !bytes.Equal(d.msg.Data, c.data) {
			t.Errorf("message data = %s, want %s", trunc(d.msg.Data), trunc(c.data))
		}
		if s.opts.NoMetadata {
			continue
		}
		for k, v := range c.md {
			if d.msg.Metadata[k] != v {
				t.Errorf("message %s: metadata %q = %q, want %q (got %s)", trunc(c.data), k, d.msg.Metadata[k], v, describeMetadata(d.msg.Metadata))
			}
		}
	}
	never(t, s.opts.Quiet, "a subscription to another topic got messages", func() (bool, string) {
		n := ro.callCount()
		return n > 0, fmt.Sprintf("%d deliveries on %s", n, other)
	})
}

// publishedAfterSubscribe: every message published, by concurrent
// publishers, right after Subscribe returns is delivered.
func (s *suite) publishedAfterSubscribe(t *testing.T) {
	b := s.opts.New(t)
	topic := s.topic("after-subscribe")
	r := newRecorder()
	subscribe(t, b, topic, r.handle)

	all := ids("after", 100)
	var wg sync.WaitGroup
	errs := make(chan error, len(all))
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(all); i += 4 {
				if err := b.Publish(s.ctx(t), &pubsub.PublishRequest{Topic: topic, Data: []byte(all[i])}); err != nil {
					errs <- fmt.Errorf("Publish(%s): %w", all[i], err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r.waitAll(t, s.opts.Timeout, "delivery of 100 messages published concurrently after Subscribe", all)
	if distinct, total := r.acked(); total != distinct {
		t.Logf("%d duplicate deliveries (allowed: at least once)", total-distinct)
	}
}

// ordering: a single subscriber sees the publish order.
func (s *suite) ordering(t *testing.T) {
	b := s.opts.New(t)
	topic := s.topic("ordering")
	r := newRecorder()
	subscribe(t, b, topic, r.handle)
	all := ids("ordered", 200)
	for _, id := range all {
		s.publish(t, b, topic, []byte(id), nil)
	}
	r.waitAll(t, s.opts.Timeout, "delivery of 200 ordered messages", all)
	calls := r.snapshot()
	for i, d := range calls {
		if i >= len(all) || string(d.msg.Data) != all[i] {
			t.Fatalf("delivery %d is %q, want %q: order not kept", i, d.msg.Data, all[min(i, len(all)-1)])
		}
	}
}

// redelivery: a message whose handler fails three times comes back until it
// succeeds, with a back-off between attempts (not a hot loop), and is not
// delivered again once acknowledged; a message published with it is
// delivered once.
func (s *suite) redelivery(t *testing.T) {
	b := s.opts.New(t)
	topic := s.topic("redelivery")
	const failures = 3
	r := newRecorder()
	r.nack = func(id string, attempt int) bool { return id == "nack-me" && attempt <= failures }
	subscribe(t, b, topic, r.handle)
	s.publish(t, b, topic, []byte("nack-me"), nil)
	s.publish(t, b, topic, []byte("fine"), nil)

	timeout := s.opts.Timeout + (failures+1)*s.opts.RedeliveryTimeout
	r.waitAll(t, timeout, "a message nacked 3 times delivered again until it succeeds", []string{"nack-me", "fine"})
	never(t, s.opts.Quiet, "an acknowledged message came back", func() (bool, string) {
		n, f := r.attemptCount("nack-me"), r.attemptCount("fine")
		return n != failures+1 || f != 1, fmt.Sprintf("nacked message delivered %d times (want %d), the other %d times (want 1)", n, failures+1, f)
	})

	var times []time.Time
	for _, d := range r.snapshot() {
		if string(d.msg.Data) == "nack-me" {
			times = append(times, d.at)
		}
	}
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]).Round(time.Millisecond))
	}
	t.Logf("gaps between the attempts of the nacked message: %v", gaps)
	const minGap = 10 * time.Millisecond
	for i, g := range gaps {
		if g < minGap {
			t.Errorf("attempt %d came %v after the one before: want a back-off of at least %v, not a hot loop", i+2, g, minGap)
		}
	}
}

// restart: N messages are published while the backend is restarted (or cut
// off) half way; every publish that the broker accepted — the publisher
// retries the ones it refuses — is delivered at least once.
func (s *suite) restart(t *testing.T) {
	if s.opts.Restart == nil {
		t.Skip("Options.Restart is nil: the broker has no backend to restart, so at-least-once across a restart is not tested")
	}
	pub, sub := s.opts.New(t), s.opts.New(t)
	topic := s.topic("restart")
	r := newRecorder()
	subscribe(t, sub, topic, r.handle)

	const n = 400
	all := ids("restart", n)
	half, restarting := make(chan struct{}), make(chan struct{})
	var retried atomic.Int64
	done := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(s.opts.Timeout + s.opts.RedeliveryTimeout)
		for i, id := range all {
			if i == n/2 {
				close(half)
				<-restarting
			}
			wait := 10 * time.Millisecond
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := pub.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(id)})
				cancel()
				if err == nil {
					break
				}
				retried.Add(1)
				if time.Now().After(deadline) {
					done <- fmt.Errorf("publishing %s still failed at the deadline: %w", id, err)
					return
				}
				time.Sleep(wait) // the publisher's own back-off, as an app's would be
				wait = min(2*wait, 250*time.Millisecond)
			}
		}
		done <- nil
	}()
	<-half
	close(restarting)
	start := time.Now()
	s.opts.Restart(t)
	t.Logf("Restart took %v", time.Since(start).Round(time.Millisecond))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d publish attempts failed during the restart and were retried", retried.Load())
	r.waitAll(t, s.opts.Timeout+2*s.opts.RedeliveryTimeout, "at-least-once delivery across a restart", all)
	distinct, total := r.acked()
	t.Logf("%d messages delivered, %d duplicates (allowed: at least once)", distinct, total-distinct)
}

// groupShares: two members of one consumer group (two sidecars of one app)
// share a topic's messages: each is handled by exactly one of them, and
// both handle some.
func (s *suite) groupShares(t *testing.T) {
	group := s.group("shared")
	b1, b2 := s.opts.NewWithGroup(t, group), s.opts.NewWithGroup(t, group)
	pub := s.opts.New(t)
	topic := s.topic("group-share")
	r1, r2 := newRecorder(), newRecorder()
	subscribe(t, b1, topic, r1.handle)
	subscribe(t, b2, topic, r2.handle)

	const n = 200
	all := ids("shared", n)
	for _, id := range all {
		s.publish(t, pub, topic, []byte(id), nil)
	}
	eventually(t, s.opts.Timeout, "the group handling every message", func() (bool, string) {
		d1, t1 := r1.acked()
		d2, t2 := r2.acked()
		return t1+t2 >= n, fmt.Sprintf("member 1 handled %d (%d distinct), member 2 handled %d (%d distinct) of %d", t1, d1, t2, d2, n)
	})
	never(t, s.opts.Quiet, "more handler calls than messages in one group", func() (bool, string) {
		_, t1 := r1.acked()
		_, t2 := r2.acked()
		return t1+t2 > n, fmt.Sprintf("%d + %d calls for %d messages", t1, t2, n)
	})
	var both, neither []string
	for _, id := range all {
		c1, c2 := r1.ackCount(id), r2.ackCount(id)
		switch {
		case c1+c2 == 0:
			neither = append(neither, id)
		case c1+c2 > 1:
			both = append(both, id)
		}
	}
	if len(both) > 0 || len(neither) > 0 {
		t.Errorf("handled more than once in the group: %d %q; never handled: %d %q", len(both), head(both), len(neither), head(neither))
	}
	_, t1 := r1.acked()
	_, t2 := r2.acked()
	t.Logf("member 1 handled %d, member 2 handled %d", t1, t2)
	if t1 == 0 || t2 == 0 {
		t.Errorf("one member handled every message (%d and %d): the group does not share", t1, t2)
	}
}

func head(ids []string) []string { return ids[:min(len(ids), 5)] }

// groupsFanOut: two consumer groups (two apps) each get every message,
// once.
func (s *suite) groupsFanOut(t *testing.T) {
	ba, bb := s.opts.NewWithGroup(t, s.group("app-a")), s.opts.NewWithGroup(t, s.group("app-b"))
	pub := s.opts.New(t)
	topic := s.topic("fan-out")
	ra, rb := newRecorder(), newRecorder()
	subscribe(t, ba, topic, ra.handle)
	subscribe(t, bb, topic, rb.handle)
	all := ids("fan", 100)
	for _, id := range all {
		s.publish(t, pub, topic, []byte(id), nil)
	}
	ra.waitAll(t, s.opts.Timeout, "group a getting every message", all)
	rb.waitAll(t, s.opts.Timeout, "group b getting every message", all)
	never(t, s.opts.Quiet, "a group got a message twice", func() (bool, string) {
		_, ta := ra.acked()
		_, tb := rb.acked()
		return ta != len(all) || tb != len(all), fmt.Sprintf("group a %d, group b %d deliveries of %d messages", ta, tb, len(all))
	})
}

// large: a LargeMessageSize payload arrives intact, and the topic keeps
// flowing after it.
func (s *suite) large(t *testing.T) {
	b := s.opts.New(t)
	topic := s.topic("large")
	r := newRecorder()
	subscribe(t, b, topic, r.handle)
	big := make([]byte, s.opts.LargeMessageSize)
	for i := range big {
		big[i] = byte(i*31 + i>>8)
	}
	s.publish(t, b, topic, big, map[string]string{"size": strconv.Itoa(len(big))})
	s.publish(t, b, topic, []byte("after-large"), nil)
	r.waitAll(t, s.opts.Timeout, "delivery of a large message and the next one", []string{string(big), "after-large"})
	for _, d := range r.snapshot() {
		if len(d.msg.Data) > 100 && !bytes.Equal(d.msg.Data, big) {
			t.Fatalf("large message came back with %d bytes, different from the %d sent", len(d.msg.Data), len(big))
		}
	}
}

// bulkPublish: a batch of 100 arrives whole, each entry with the batch
// metadata and its own (its own winning); an empty batch is fine; a batch
// published with a cancelled ctx fails as a whole or entry by entry.
func (s *suite) bulkPublish(t *testing.T) {
	b := s.opts.New(t)
	bp := b.(pubsub.BulkPublisher)
	topic := s.topic("bulk")
	r := newRecorder()
	subscribe(t, b, topic, r.handle)

	all := ids("bulk", 100)
	req := &pubsub.BulkPublishRequest{Topic: topic, Metadata: map[string]string{"batch": "yes", "entry": "overridden"}}
	for i, id := range all {
		req.Entries = append(req.Entries, pubsub.BulkEntry{
			EntryID: "e" + strconv.Itoa(i), Data: []byte(id), ContentType: "text/plain",
			Metadata: map[string]string{"entry": strconv.Itoa(i)},
		})
	}
	resp, err := bp.BulkPublish(s.ctx(t), req)
	if err != nil {
		t.Fatalf("BulkPublish: %v", err)
	}
	if len(resp.FailedEntries) > 0 {
		t.Fatalf("BulkPublish failed entries: %v", resp.FailedEntries)
	}
	r.waitAll(t, s.opts.Timeout, "delivery of every bulk-published entry", all)
	if !s.opts.NoMetadata {
		for _, d := range r.snapshot() {
			i := strings.TrimLeft(strings.TrimPrefix(string(d.msg.Data), "bulk-"), "0")
			if i == "" {
				i = "0"
			}
			if d.msg.Metadata["batch"] != "yes" || d.msg.Metadata["entry"] != i {
				t.Fatalf("entry %s has metadata %s, want batch=yes and entry=%s", d.msg.Data, describeMetadata(d.msg.Metadata), i)
			}
		}
	}

	if resp, err := bp.BulkPublish(s.ctx(t), &pubsub.BulkPublishRequest{Topic: topic}); err != nil || len(resp.FailedEntries) > 0 {
		t.Errorf("BulkPublish of no entries = %v, %v; want no error and no failures", resp, err)
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	req.Entries = req.Entries[:5]
	resp, err = bp.BulkPublish(cancelled, req)
	if err != nil {
		return // failed as a whole: fine
	}
	failed := map[string]bool{}
	for _, f := range resp.FailedEntries {
		if f.Error == nil {
			t.Errorf("failed entry %q has a nil Error", f.EntryID)
		}
		failed[f.EntryID] = true
	}
	for _, e := range req.Entries {
		if !failed[e.EntryID] {
			t.Errorf("BulkPublish with a cancelled ctx: entry %q neither failed nor reported (failed: %v)", e.EntryID, resp.FailedEntries)
		}
	}
	if len(failed) != len(req.Entries) {
		t.Errorf("BulkPublish reported %d failed entries for a batch of %d: %v", len(failed), len(req.Entries), resp.FailedEntries)
	}
}

// ttl: with MESSAGE_TTL, a message whose ttlInSeconds passes while it is
// being nacked stops coming back, and one with a long TTL is delivered.
func (s *suite) ttl(t *testing.T) {
	b := s.opts.New(t)
	topic := s.topic("ttl")
	r := newRecorder()
	r.nack = func(id string, _ int) bool { return id == "expiring" }
	subscribe(t, b, topic, r.handle)
	published := time.Now()
	s.publish(t, b, topic, []byte("expiring"), map[string]string{"ttlInSeconds": "1"})
	s.publish(t, b, topic, []byte("long-lived"), map[string]string{"ttlInSeconds": "3600"})
	r.waitAll(t, s.opts.Timeout, "delivery of a message with a long TTL", []string{"long-lived"})
	eventually(t, s.opts.Timeout, "a first attempt of the expiring message", func() (bool, string) {
		return r.attemptCount("expiring") > 0, "no attempt yet"
	})
	expiry := published.Add(time.Second)
	const slack = 250 * time.Millisecond
	never(t, time.Until(expiry)+2*time.Second, "an expired message was delivered", func() (bool, string) {
		for _, d := range r.snapshot() {
			if string(d.msg.Data) == "expiring" && d.at.After(expiry.Add(slack)) {
				return true, fmt.Sprintf("attempt %d came %v after its TTL ended", d.attempt, d.at.Sub(expiry).Round(time.Millisecond))
			}
		}
		return false, ""
	})
}

// unsubscribe: once the subscription's ctx is cancelled no handler call
// starts, and subscribing again works.
func (s *suite) unsubscribe(t *testing.T) {
	b := s.opts.New(t)
	topic := s.topic("unsubscribe")
	r := newRecorder()
	cancel := subscribe(t, b, topic, r.handle)
	s.publish(t, b, topic, []byte("before"), nil)
	r.waitAll(t, s.opts.Timeout, "delivery before unsubscribing", []string{"before"})
	cancel()
	calls := r.callCount()
	for i := range 5 {
		s.publish(t, b, topic, []byte("after-"+strconv.Itoa(i)), nil)
	}
	never(t, s.opts.Quiet, "a handler was called after its subscription ended", func() (bool, string) {
		n := r.callCount()
		return n != calls, fmt.Sprintf("%d calls after cancelling, last %q", n-calls, lastData(r))
	})

	again := newRecorder()
	subscribe(t, b, topic, again.handle)
	s.publish(t, b, topic, []byte("again"), nil)
	again.waitAll(t, s.opts.Timeout, "delivery to a new subscription after unsubscribing", []string{"again"})
}

func lastData(r *recorder) string {
	calls := r.snapshot()
	if len(calls) == 0 {
		return ""
	}
	return string(calls[len(calls)-1].msg.Data)
}

// close: Close returns while a handler is blocked (its ctx ends), stops
// every goroutine the broker started (the count goes back to what it was
// before New), is idempotent, and makes Publish and Subscribe fail.
func (s *suite) close(t *testing.T) {
	baseline := runtime.NumGoroutine()
	b := s.opts.New(t)
	busy, idle, dropped := s.topic("close-busy"), s.topic("close-idle"), s.topic("close-dropped")
	r := newRecorder()
	subscribe(t, b, idle, r.handle)
	subscribe(t, b, dropped, r.handle)() // subscribe, then unsubscribe at once
	entered, ctxEnded := make(chan struct{}), make(chan struct{})
	var once sync.Once
	subscribe(t, b, busy, func(ctx context.Context, _ *pubsub.Message) error {
		once.Do(func() {
			close(entered)
			<-ctx.Done()
			close(ctxEnded)
		})
		return ctx.Err()
	})
	s.publish(t, b, idle, []byte("idle"), nil)
	s.publish(t, b, busy, []byte("busy"), nil)
	r.waitAll(t, s.opts.Timeout, "delivery before Close", []string{"idle"})
	select {
	case <-entered:
	case <-time.After(s.opts.Timeout):
		t.Fatal("the blocking handler was never called")
	}

	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(s.opts.Timeout):
		t.Fatal("Close did not return while a handler was running: the handler's ctx must end on Close")
	}
	select {
	case <-ctxEnded:
	default:
		t.Error("Close returned before the running handler returned")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v, want nil (idempotent)", err)
	}
	if err := b.Publish(s.ctx(t), &pubsub.PublishRequest{Topic: idle, Data: []byte("x")}); err == nil {
		t.Error("Publish after Close succeeded, want an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: idle}, r.handle); err == nil {
		t.Error("Subscribe after Close succeeded, want an error")
	}

	deadline := time.Now().Add(s.opts.Timeout)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Fatalf("%d goroutines after Close, %d before New: leaked goroutines\n%s", runtime.NumGoroutine(), baseline, buf.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the count, which has no event to wait on
	}
}
