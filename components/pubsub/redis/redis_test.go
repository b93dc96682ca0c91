package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/pubsub/pubsubtest"
	"github.com/mecha-dev/mecha/components/pubsub/redis"
	"github.com/mecha-dev/mecha/internal/mechatest"
)

// Test settings: redelivery within about a second, so the suite's nack and
// outage cases take seconds, not minutes.
var testProps = map[string]string{
	"processingTimeout": "1500ms",
	"redeliverInterval": "200ms",
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newBroker returns an initialised broker on addr with consumer group
// group, closed at the end of the test; kv are extra properties.
func newBroker(tb testing.TB, addr, group string, kv ...string) *redis.Broker {
	tb.Helper()
	p := map[string]string{"redisHost": addr, "consumerID": group}
	for k, v := range testProps {
		p[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	b := redis.New(components.Deps{Logger: testLogger(tb)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Init(ctx, components.Metadata{Name: "pubsub", Type: "pubsub.redis", Properties: p}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

// rawClient is a plain client on the real Redis, for checks and cleanup.
func rawClient(tb testing.TB, addr string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	tb.Cleanup(func() { c.Close() })
	return c
}

var groups atomic.Int64

func uniqueGroup(prefix string) string {
	return fmt.Sprintf("%s-%x-%d", prefix, time.Now().UnixNano(), groups.Add(1))
}

func conformanceOptions(t *testing.T, kv ...string) pubsubtest.Options {
	addr := pubsubtest.ServiceEnv(t, "REDIS_ADDR")
	raw := rawClient(t, addr)
	px := mechatest.StartProxy(t, addr)
	return pubsubtest.Options{
		New: func(t *testing.T) pubsub.Broker {
			return newBroker(t, px.Addr, uniqueGroup("pubsubtest"), kv...)
		},
		NewWithGroup: func(t *testing.T, group string) pubsub.Broker { return newBroker(t, px.Addr, group, kv...) },
		// Redis is shared with other tests and cannot be restarted: an
		// outage of every connection to it (the proxy cut, then restored)
		// stands in for a restart.
		Restart: func(t *testing.T) {
			px.SetDown(true)
			time.Sleep(time.Second) // the outage: publishes and reads fail meanwhile
			px.SetDown(false)
		},
		RedeliveryTimeout: 3 * time.Second,
		DeleteTopic: func(topic string) error {
			return raw.Del(context.Background(), topic).Err()
		},
	}
}

func TestConformance(t *testing.T) {
	pubsubtest.Run(t, conformanceOptions(t))
}

// TestConformanceOrdered: with concurrency 1 one subscriber gets publish
// order (XREADGROUP returns entries in stream order) as long as handlers
// succeed.
func TestConformanceOrdered(t *testing.T) {
	o := conformanceOptions(t, "concurrency", "1")
	o.Ordered = true
	pubsubtest.Run(t, o)
}

// TestDaprLayout: a message is an entry with "data" and, with metadata,
// "metadata" as JSON, in the stream named as the topic; one published by
// daprd in that layout is delivered.
func TestDaprLayout(t *testing.T) {
	addr := pubsubtest.ServiceEnv(t, "REDIS_ADDR")
	raw := rawClient(t, addr)
	topic := uniqueGroup("pubsub-layout")
	t.Cleanup(func() { raw.Del(context.Background(), topic) })
	b := newBroker(t, addr, "app", "concurrency", "1") // one handler: stream order
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(`{"a":1}`), Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	entries, err := raw.XRange(ctx, topic, "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("XRANGE = %v, %v; want one entry", entries, err)
	}
	if v := entries[0].Values; v["data"] != `{"a":1}` || v["metadata"] != `{"k":"v"}` || len(v) != 2 {
		t.Fatalf("entry = %v, want data and metadata in Dapr's layout", v)
	}

	got := make(chan *pubsub.Message, 2)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(_ context.Context, m *pubsub.Message) error {
		got <- m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// As daprd writes it (data only).
	if err := raw.XAdd(ctx, &goredis.XAddArgs{Stream: topic, Values: map[string]any{"data": "from-daprd"}}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"a":1}`, "from-daprd"} { // a new group starts at 0: both
		select {
		case m := <-got:
			if string(m.Data) != want {
				t.Errorf("delivered %q, want %q", m.Data, want)
			}
		case <-ctx.Done():
			t.Fatalf("%q not delivered", want)
		}
	}
	// Acknowledged: nothing pending for the group.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := raw.XPending(ctx, topic, "app").Result()
		if err == nil && p.Count == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("XPENDING = %+v, %v; want nothing pending", p, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsumerRemovedOnClose: a sidecar that closes with nothing pending
// leaves no consumer behind; one with pending entries keeps its consumer,
// so the entries are not lost.
func TestConsumerRemovedOnClose(t *testing.T) {
	addr := pubsubtest.ServiceEnv(t, "REDIS_ADDR")
	raw := rawClient(t, addr)
	topic := uniqueGroup("pubsub-consumers")
	t.Cleanup(func() { raw.Del(context.Background(), topic) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	consumers := func() int {
		cs, err := raw.XInfoConsumers(ctx, topic, "app").Result()
		if err != nil {
			t.Fatalf("XINFO CONSUMERS: %v", err)
		}
		return len(cs)
	}
	run := func(fail bool) {
		b := redis.New(components.Deps{Logger: testLogger(t)})
		if err := b.Init(ctx, components.Metadata{Properties: map[string]string{"redisHost": addr, "consumerID": "app"}}); err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		called := make(chan struct{}, 1)
		if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(context.Context, *pubsub.Message) error {
			called <- struct{}{}
			if fail {
				return fmt.Errorf("nack")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		<-called
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run(false)
	if n := consumers(); n != 0 {
		t.Fatalf("%d consumers left after a clean Close, want 0", n)
	}
	run(true)
	if n := consumers(); n != 1 {
		t.Fatalf("%d consumers after closing with a pending entry, want 1 (keeping it)", n)
	}
}

// TestTrimming: maxLenApprox caps the stream.
func TestTrimming(t *testing.T) {
	addr := pubsubtest.ServiceEnv(t, "REDIS_ADDR")
	raw := rawClient(t, addr)
	topic := uniqueGroup("pubsub-trim")
	t.Cleanup(func() { raw.Del(context.Background(), topic) })
	b := newBroker(t, addr, "app", "maxLenApprox", "100")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 1000 {
		if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// MAXLEN ~ trims whole radix-tree nodes (100 entries by default).
	if n := raw.XLen(ctx, topic).Val(); n < 100 || n > 300 {
		t.Fatalf("XLEN = %d after 1000 publishes with maxLenApprox 100, want about 100", n)
	}
}

func TestInvalidMetadata(t *testing.T) {
	tests := map[string]struct {
		props map[string]string
		want  string
	}{
		"no consumer":        {map[string]string{"redisHost": "h"}, `"consumerID": is required`},
		"no host":            {map[string]string{"consumerID": "c"}, `"redisHost"`},
		"bad timeout":        {map[string]string{"redisHost": "h", "consumerID": "c", "processingTimeout": "soon"}, `"processingTimeout"`},
		"negative interval":  {map[string]string{"redisHost": "h", "consumerID": "c", "redeliverInterval": "-1"}, `"redeliverInterval"`},
		"zero concurrency":   {map[string]string{"redisHost": "h", "consumerID": "c", "concurrency": "0"}, `"concurrency"`},
		"zero queue depth":   {map[string]string{"redisHost": "h", "consumerID": "c", "queueDepth": "0"}, `"queueDepth"`},
		"negative maxLen":    {map[string]string{"redisHost": "h", "consumerID": "c", "maxLenApprox": "-5"}, `"maxLenApprox"`},
		"cluster refused":    {map[string]string{"redisHost": "h", "consumerID": "c", "redisType": "cluster"}, `"redisType"`},
		"bad ackOnError":     {map[string]string{"redisHost": "h", "consumerID": "c", "ackOnError": "maybe"}, `"ackOnError"`},
		"bad streamTTL unit": {map[string]string{"redisHost": "h", "consumerID": "c", "streamTTL": "30d"}, `"streamTTL"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			b := redis.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init = %v, want an error containing %s", err, tt.want)
			}
		})
	}
	b := redis.New(components.Deps{})
	if err := b.Close(); err != nil {
		t.Fatalf("Close before Init = %v", err)
	}
}

// BenchmarkBroker runs the shared benchmarks on the real Redis (no proxy).
func BenchmarkBroker(b *testing.B) {
	addr := pubsubtest.ServiceEnv(b, "REDIS_ADDR")
	raw := rawClient(b, addr)
	br := newBroker(b, addr, uniqueGroup("bench"))
	tb := &topicRecorder{Broker: br}
	b.Cleanup(func() {
		for _, tp := range tb.list() {
			raw.Del(context.Background(), tp)
		}
	})
	pubsubtest.Bench(b, tb)
}

// topicRecorder remembers the topics a benchmark uses, to delete them.
type topicRecorder struct {
	*redis.Broker
	mu     sync.Mutex
	topics map[string]bool
}

func (r *topicRecorder) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	r.mu.Lock()
	if r.topics == nil {
		r.topics = map[string]bool{}
	}
	r.topics[req.Topic] = true
	r.mu.Unlock()
	return r.Broker.Subscribe(ctx, req, h)
}

func (r *topicRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for tp := range r.topics {
		out = append(out, tp)
	}
	return out
}
