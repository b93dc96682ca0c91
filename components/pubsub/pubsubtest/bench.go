package pubsubtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/pubsub"
)

// Bench runs the shared pub/sub benchmarks against an initialised broker,
// with 256-byte messages, each topic having one subscriber that
// acknowledges everything (so the broker does all of its work):
//
//   - publish: one publisher, one message at a time (msgs/s);
//   - publish parallel: GOMAXPROCS publishers (msgs/s);
//   - publish to handler: b.N messages published back to back, timed until
//     the handler has seen them all (delivered msgs/s);
//   - latency: one message in flight at a time, publish to handler
//     (p50-us, p99-us).
//
// Every benchmark uses a fresh topic named "pubsubbench-<unique>-<name>".
func Bench(b *testing.B, br pubsub.Broker) {
	run := fmt.Sprintf("pubsubbench-%x", time.Now().UnixNano())
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	ctx := context.Background()

	// sink subscribes a handler that counts deliveries to topic.
	sink := func(b *testing.B, topic string, h pubsub.Handler) {
		sctx, cancel := context.WithCancel(ctx)
		b.Cleanup(cancel)
		if err := br.Subscribe(sctx, pubsub.SubscribeRequest{Topic: topic}, h); err != nil {
			b.Fatalf("Subscribe: %v", err)
		}
	}
	count := func(n *atomic.Int64) pubsub.Handler {
		return func(context.Context, *pubsub.Message) error { n.Add(1); return nil }
	}
	wait := func(b *testing.B, n *atomic.Int64, want int64) {
		deadline := time.Now().Add(2 * time.Minute)
		for n.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d messages delivered after 2m", n.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	b.Run("publish", func(b *testing.B) {
		topic := run + "-publish"
		var got atomic.Int64
		sink(b, topic, count(&got))
		b.ReportAllocs()
		for b.Loop() {
			if err := br.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: payload}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})

	b.Run("publish parallel", func(b *testing.B) {
		topic := run + "-parallel"
		var got atomic.Int64
		sink(b, topic, count(&got))
		b.ReportAllocs()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := br.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})

	b.Run("publish to handler", func(b *testing.B) {
		topic := run + "-e2e"
		var got atomic.Int64
		sink(b, topic, count(&got))
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			if err := br.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: payload}); err != nil {
				b.Fatal(err)
			}
			n++
		}
		wait(b, &got, int64(n))
		b.StopTimer()
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	})

	b.Run("latency", func(b *testing.B) {
		topic := run + "-latency"
		arrived := make(chan time.Duration, 1)
		sink(b, topic, func(_ context.Context, m *pubsub.Message) error {
			if len(m.Data) >= 8 {
				sent := int64(binary.BigEndian.Uint64(m.Data))
				select {
				case arrived <- time.Duration(time.Now().UnixNano() - sent):
				default:
				}
			}
			return nil
		})
		msg := slices.Clone(payload)
		var lat []time.Duration
		for b.Loop() {
			binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
			if err := br.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: msg}); err != nil {
				b.Fatal(err)
			}
			select {
			case d := <-arrived:
				lat = append(lat, d)
			case <-time.After(30 * time.Second):
				b.Fatal("a message was not delivered within 30s")
			}
		}
		slices.Sort(lat)
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-us")
		}
	})
}
