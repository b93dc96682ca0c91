package inmemory_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/pubsub/inmemory"
	"github.com/mecha-dev/mecha/components/pubsub/pubsubtest"
)

var groups atomic.Int64

// newBroker returns an initialised broker on the shared bus, closed at the
// end of the test. kv are extra metadata properties.
func newBroker(tb testing.TB, bus, group string, kv ...string) *inmemory.Broker {
	tb.Helper()
	p := map[string]string{"consumerID": group, "bus": bus}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	b := inmemory.New(components.Deps{Logger: slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := b.Init(context.Background(), components.Metadata{Name: "pubsub", Type: "pubsub.in-memory", Properties: p}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

func options(bus string, kv ...string) pubsubtest.Options {
	return pubsubtest.Options{
		New: func(t *testing.T) pubsub.Broker {
			return newBroker(t, bus, fmt.Sprintf("app-%d", groups.Add(1)), kv...)
		},
		NewWithGroup: func(t *testing.T, group string) pubsub.Broker { return newBroker(t, bus, group, kv...) },
		// No Restart: nothing outlives the process, so there is no backend
		// to restart.
		RedeliveryTimeout: 2 * time.Second,
	}
}

func TestConformance(t *testing.T) {
	pubsubtest.Run(t, options(t.Name()))
}

// TestConformanceOrdered runs the suite with concurrency 1, where the
// broker promises publish order.
func TestConformanceOrdered(t *testing.T) {
	o := options(t.Name(), "concurrency", "1")
	o.Ordered = true
	pubsubtest.Run(t, o)
}

// TestOrderedRedelivery: with concurrency 1 a nacked message is retried
// before any later one is delivered.
func TestOrderedRedelivery(t *testing.T) {
	b := newBroker(t, "", "g", "concurrency", "1", "backOffInitialInterval", "5ms")
	var got []string
	fails := 0
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, func(_ context.Context, m *pubsub.Message) error {
		got = append(got, string(m.Data)) // one call at a time: concurrency 1
		if string(m.Data) == "1" && fails < 3 {
			fails++
			return fmt.Errorf("nack")
		}
		if string(m.Data) == "4" {
			close(done)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("not all delivered: %q", got)
	}
	if want := "0 1 1 1 1 2 3 4"; strings.Join(got, " ") != want {
		t.Errorf("deliveries = %q, want %q", strings.Join(got, " "), want)
	}
}

// TestPrivateBus: instances without a bus do not see each other, as two
// daprd in-memory components do not.
func TestPrivateBus(t *testing.T) {
	a, b := newBroker(t, "", "g"), newBroker(t, "", "g")
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, func(context.Context, *pubsub.Message) error { n.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a delivery from a would come within this window
	if got := n.Load(); got != 1 {
		t.Fatalf("b's subscriber got %d messages, want 1 (its own only)", got)
	}
}

// TestMaxRetries: a message nacked more than backOffMaxRetries times is
// dropped.
func TestMaxRetries(t *testing.T) {
	b := newBroker(t, "", "g", "backOffMaxRetries", "2", "backOffInitialInterval", "1ms")
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t"}, func(context.Context, *pubsub.Message) error {
		calls.Add(1)
		return fmt.Errorf("nack")
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: "t", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // more redeliveries would come within this window
	if got := calls.Load(); got != 3 {
		t.Fatalf("handler called %d times, want 3 (1 + 2 retries)", got)
	}
}

func TestInvalidMetadata(t *testing.T) {
	for name, kv := range map[string][]string{
		"concurrency":  {"concurrency", "0"},
		"backoff":      {"backOffInitialInterval", "soon"},
		"max < init":   {"backOffInitialInterval", "1s", "backOffMaxInterval", "10ms"},
		"max retries":  {"backOffMaxRetries", "-2"},
		"not a number": {"concurrency", "many"},
	} {
		t.Run(name, func(t *testing.T) {
			p := map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				p[kv[i]] = kv[i+1]
			}
			b := inmemory.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: p})
			if err == nil || !strings.Contains(err.Error(), kv[0]) {
				t.Fatalf("Init = %v, want an error naming %s", err, kv[0])
			}
		})
	}
	b := inmemory.New(components.Deps{})
	if err := b.Close(); err != nil {
		t.Fatalf("Close before Init = %v", err)
	}
	if err := b.Publish(context.Background(), &pubsub.PublishRequest{Topic: "t"}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

func BenchmarkBroker(b *testing.B) {
	pubsubtest.Bench(b, newBroker(b, "", "bench"))
}
