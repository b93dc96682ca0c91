package statetest

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/state"
)

// Bench runs the shared state benchmarks (single-key set, get, and a
// parallel set+get mix with 256-byte values) against an initialised store.
func Bench(b *testing.B, s state.Store) {
	prefix := fmt.Sprintf("statebench-%d||", time.Now().UnixNano())
	value := make([]byte, 256)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	ctx := context.Background()
	b.Cleanup(func() {
		for i := range 1000 {
			_ = s.Delete(ctx, &state.DeleteRequest{Key: prefix + strconv.Itoa(i)})
			_ = s.Delete(ctx, &state.DeleteRequest{Key: prefix + "p" + strconv.Itoa(i)})
		}
		_ = s.Delete(ctx, &state.DeleteRequest{Key: prefix + "hot"})
	})
	b.Run("set", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := s.Set(ctx, &state.SetRequest{Key: prefix + strconv.Itoa(i%1000), Value: value}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("get", func(b *testing.B) {
		if err := s.Set(ctx, &state.SetRequest{Key: prefix + "hot", Value: value}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			resp, err := s.Get(ctx, &state.GetRequest{Key: prefix + "hot"})
			if err != nil || len(resp.Data) != len(value) {
				b.Fatalf("get: %v (%d bytes)", err, len(resp.Data))
			}
		}
	})
	b.Run("parallel set+get", func(b *testing.B) {
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := prefix + "p" + strconv.FormatInt(n.Add(1)%1000, 10)
				if err := s.Set(ctx, &state.SetRequest{Key: k, Value: value}); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Get(ctx, &state.GetRequest{Key: k}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
