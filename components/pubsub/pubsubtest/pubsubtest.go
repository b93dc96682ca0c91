// Package pubsubtest is the conformance suite and the shared benchmarks that
// every pub/sub broker runs from its own tests:
//
//	func TestConformance(t *testing.T) {
//		pubsubtest.Run(t, pubsubtest.Options{
//			New:          func(t *testing.T) pubsub.Broker { return newBroker(t, uniqueGroup()) },
//			NewWithGroup: newBroker,
//			Restart:      restartBackend, // nil when there is no backend to restart
//		})
//	}
//
//	func BenchmarkBroker(b *testing.B) { pubsubtest.Bench(b, newBroker(b, "bench")) }
//
// It exists because the runtime (internal/blocks/pubsub) builds Dapr's
// delivery semantics on the same few promises from every broker: exact
// bytes and metadata, at-least-once delivery (across a backend restart
// too), redelivery after a nack with back-off rather than a hot loop, the
// messages of a consumer group shared among its members and every group
// getting all of them, and subscriptions and Close that stop what they
// started. Writing those promises down once, as tests, keeps brokers
// interchangeable.
//
// Every run uses fresh topic and group names, so the suite can share a
// backend with other tests; Options.DeleteTopic removes what it created.
// It imports nothing under internal/, as components must not.
package pubsubtest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/pubsub"
)

// Options describe the broker under test.
type Options struct {
	// New returns an initialised broker with a consumer group (consumerID)
	// of its own, unique to the call. It registers its own Close with
	// t.Cleanup (the suite may close it earlier; Close must be idempotent).
	// Required.
	New func(t *testing.T) pubsub.Broker
	// NewWithGroup returns an initialised broker whose consumerID is group,
	// as New does. Two brokers with the same group stand for two sidecars of
	// one app; all brokers built by New and NewWithGroup in one run must
	// reach the same backend (for an in-process broker: the same bus).
	// Required.
	NewWithGroup func(t *testing.T, group string) pubsub.Broker
	// Restart interrupts the backend and brings it back before it returns:
	// a real restart, or an outage of the connections to it (a proxy cut and
	// restored). The suite calls it from the test goroutine while another
	// goroutine keeps publishing, so that some publishes fall into the
	// outage. Nil skips the at-least-once-across-a-restart case, and says
	// so; only brokers without a backend (in-memory) should leave it nil.
	Restart func(t *testing.T)
	// Ordered means the broker promises publish order: a group with a
	// single subscriber gets a topic's messages in the order they were
	// published (by one publisher, one after the other), when every handler
	// call succeeds. Brokers build their instance in New accordingly (for
	// example with concurrency 1).
	Ordered bool
	// NoMetadata means the broker cannot carry publish metadata to
	// subscribers (MQTT 3 has no headers); the metadata checks are skipped.
	NoMetadata bool
	// LargeMessageSize is the size of the large-message case (default
	// 1 MiB). Lower it only for brokers with a hard limit, and say why.
	LargeMessageSize int
	// Timeout bounds every eventual condition: a publish, a delivery, a
	// goroutine count going back down (default 30s).
	Timeout time.Duration
	// RedeliveryTimeout is the longest a nacked message may take to come
	// back: the broker's back-off, or its processingTimeout plus its
	// redeliverInterval (default 10s). Cases that wait for redeliveries
	// add it to Timeout.
	RedeliveryTimeout time.Duration
	// Quiet is how long the suite watches for something that must not
	// happen, such as a delivery after unsubscribing (default 500ms).
	Quiet time.Duration
	// DeleteTopic, when set, is called at the end of the run for every
	// topic the suite used, to leave a shared backend as it was found.
	DeleteTopic func(topic string) error
}

// Run runs the whole suite. The cases it picks depend on the broker's
// Features and interfaces (which it checks agree) and on opts.
func Run(t *testing.T, opts Options) {
	t.Helper()
	if opts.New == nil || opts.NewWithGroup == nil {
		t.Fatal("pubsubtest: Options.New and Options.NewWithGroup are required")
	}
	if opts.LargeMessageSize <= 0 {
		opts.LargeMessageSize = 1 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.RedeliveryTimeout <= 0 {
		opts.RedeliveryTimeout = 10 * time.Second
	}
	if opts.Quiet <= 0 {
		opts.Quiet = 500 * time.Millisecond
	}
	s := &suite{opts: opts, run: fmt.Sprintf("%x", time.Now().UnixNano())}
	t.Cleanup(s.cleanup(t))

	probe := opts.New(t)
	features := probe.Features()
	_, bulk := probe.(pubsub.BulkPublisher)

	t.Run("features match interfaces", func(t *testing.T) {
		if bulk != pubsub.Has(features, pubsub.FeatureBulkPublish) {
			t.Errorf("implements BulkPublisher = %v but features are %v", bulk, features)
		}
	})
	t.Run("round trip", s.roundTrip)
	t.Run("published after subscribe", s.publishedAfterSubscribe)
	if opts.Ordered {
		t.Run("ordering", s.ordering)
	}
	t.Run("redelivery after nack", s.redelivery)
	t.Run("at least once across a restart", s.restart)
	t.Run("group members share messages", s.groupShares)
	t.Run("every group gets every message", s.groupsFanOut)
	t.Run("large message", s.large)
	if bulk {
		t.Run("bulk publish", s.bulkPublish)
	}
	if pubsub.Has(features, pubsub.FeatureMessageTTL) {
		t.Run("message ttl", s.ttl)
	}
	t.Run("unsubscribe", s.unsubscribe)
	t.Run("close stops everything", s.close)
}

// suite is the state of one Run.
type suite struct {
	opts Options
	run  string // unique per run

	seq    atomic.Int64
	mu     sync.Mutex
	topics []string
}

// topic returns a fresh topic name (letters, digits and '-' only, which
// every broker accepts) and remembers it for DeleteTopic.
func (s *suite) topic(name string) string {
	tp := fmt.Sprintf("pubsubtest-%s-%d-%s", s.run, s.seq.Add(1), name)
	s.mu.Lock()
	s.topics = append(s.topics, tp)
	s.mu.Unlock()
	return tp
}

// group returns a fresh consumer group name.
func (s *suite) group(name string) string {
	return fmt.Sprintf("pubsubtest-%s-%d-%s", s.run, s.seq.Add(1), name)
}

func (s *suite) cleanup(t *testing.T) func() {
	return func() {
		if s.opts.DeleteTopic == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, tp := range s.topics {
			if err := s.opts.DeleteTopic(tp); err != nil {
				t.Errorf("DeleteTopic(%q): %v", tp, err)
			}
		}
	}
}

// ctx returns a context that ends after the suite's Timeout or with the test.
func (s *suite) ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// subscribe subscribes h to topic until the returned cancel is called or the
// test ends.
func subscribe(t *testing.T, b pubsub.Broker, topic string, h pubsub.Handler) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, h); err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return cancel
}

func (s *suite) publish(t *testing.T, b pubsub.Broker, topic string, data []byte, md map[string]string) {
	t.Helper()
	err := b.Publish(s.ctx(t), &pubsub.PublishRequest{Topic: topic, Data: data, ContentType: "application/octet-stream", Metadata: md})
	if err != nil {
		t.Fatalf("Publish(%q, %s): %v", topic, trunc(data), err)
	}
}

// eventually polls cond until it holds, failing the test after timeout with
// what and the state cond last described.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %v: %s", what, timeout, state)
		}
		<-tick.C
	}
}

// never watches cond for d and fails the test as soon as it holds.
func never(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if bad, state := cond(); bad {
			t.Fatalf("%s: %s", what, state)
		}
		<-tick.C
	}
	if bad, state := cond(); bad {
		t.Fatalf("%s: %s", what, state)
	}
}

// delivery is one handler call as a recorder saw it.
type delivery struct {
	msg     pubsub.Message // a deep copy
	at      time.Time
	attempt int // 1 for the first delivery of this payload
	acked   bool
}

// recorder is a handler that records every call. Messages are told apart
// by their payload, so every message of a case has a distinct one.
type recorder struct {
	// nack, when set, decides whether a call fails: attempt counts the
	// calls for this payload, starting at 1.
	nack func(id string, attempt int) bool

	mu       sync.Mutex
	calls    []delivery
	attempts map[string]int
	acks     map[string]int
}

func newRecorder() *recorder {
	return &recorder{attempts: map[string]int{}, acks: map[string]int{}}
}

var errNack = fmt.Errorf("pubsubtest: deliberate nack")

func (r *recorder) handle(_ context.Context, m *pubsub.Message) error {
	id := string(m.Data)
	r.mu.Lock()
	r.attempts[id]++
	n := r.attempts[id]
	nack := r.nack != nil && r.nack(id, n)
	if !nack {
		r.acks[id]++
	}
	r.calls = append(r.calls, delivery{
		msg:     pubsub.Message{Topic: m.Topic, Data: bytes.Clone(m.Data), Metadata: maps.Clone(m.Metadata)},
		at:      time.Now(),
		attempt: n,
		acked:   !nack,
	})
	r.mu.Unlock()
	if nack {
		return errNack
	}
	return nil
}

// acked returns how many distinct payloads were acknowledged and how many
// acknowledgements there were in all.
func (r *recorder) acked() (distinct, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.acks {
		total += n
	}
	return len(r.acks), total
}

func (r *recorder) ackCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acks[id]
}

func (r *recorder) attemptCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

func (r *recorder) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// snapshot returns a copy of the calls so far.
func (r *recorder) snapshot() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// missing lists the ids not acknowledged yet, for failure messages.
func (r *recorder) missing(ids []string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var miss []string
	for _, id := range ids {
		if r.acks[id] == 0 {
			miss = append(miss, id)
		}
	}
	if len(miss) > 10 {
		return fmt.Sprintf("%d of %d missing, first %q", len(miss), len(ids), miss[:10])
	}
	return fmt.Sprintf("%d of %d missing: %q", len(miss), len(ids), miss)
}

// waitAll waits until every id has been acknowledged at least once.
func (r *recorder) waitAll(t *testing.T, timeout time.Duration, what string, ids []string) {
	t.Helper()
	eventually(t, timeout, what, func() (bool, string) {
		r.mu.Lock()
		n := 0
		for _, id := range ids {
			if r.acks[id] > 0 {
				n++
			}
		}
		r.mu.Unlock()
		if n == len(ids) {
			return true, ""
		}
		return false, r.missing(ids)
	})
}

// ids returns n payloads "prefix-0000" ... in publish order.
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

func trunc(b []byte) string {
	if len(b) > 48 {
		return fmt.Sprintf("%q... (%d bytes)", b[:48], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func describeMetadata(md map[string]string) string {
	keys := slices.Sorted(maps.Keys(md))
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%q ", k, md[k])
	}
	return strings.TrimSpace(sb.String())
}
