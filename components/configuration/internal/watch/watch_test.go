package watch

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/configuration"
)

func TestLifecycle(t *testing.T) {
	set := NewSet(slog.New(slog.DiscardHandler))
	var calls atomic.Int32
	handler := func(ctx context.Context, e *configuration.UpdateEvent) error {
		calls.Add(1)
		return nil
	}
	sub, err := set.Add(context.Background(), configuration.SubscribeRequest{Keys: []string{"b", "a", "b"}}, handler)
	if err != nil {
		t.Fatal(err)
	}
	if got := sub.Keys(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Keys = %v, want [a b]", got)
	}
	if !sub.Watches("a") || sub.Watches("c") {
		t.Fatal("Watches is wrong")
	}
	ran := make(chan struct{})
	sub.Go(func(ctx context.Context) {
		close(ran)
		<-ctx.Done()
	})
	<-ran
	if !sub.Deliver(map[string]*configuration.Item{"a": {Value: "1"}}) || calls.Load() != 1 {
		t.Fatal("Deliver did not call the handler")
	}
	if err := set.Stop(sub.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Done():
	default:
		t.Fatal("Stop returned before the subscription was done")
	}
	if sub.Deliver(nil) || calls.Load() != 1 {
		t.Fatal("Deliver after Stop called the handler")
	}
	started := false
	sub.Go(func(context.Context) { started = true })
	if started {
		t.Fatal("Go after Stop ran")
	}
	if err := set.Stop(sub.ID); !errors.Is(err, configuration.ErrSubscriptionNotFound) {
		t.Fatalf("second Stop = %v", err)
	}
	if set.Len() != 0 {
		t.Fatalf("Len = %d after Stop", set.Len())
	}
}

func TestParentContextEnds(t *testing.T) {
	set := NewSet(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := set.Add(ctx, configuration.SubscribeRequest{}, func(context.Context, *configuration.UpdateEvent) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !sub.Watches("anything") {
		t.Fatal("a subscription without keys watches every key")
	}
	cancel()
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("subscription did not end with its context")
	}
	if set.Len() != 0 {
		t.Fatal("ended subscription still listed")
	}
}

// TestStopWaitsForHandler checks that Stop returns only after a running
// handler has returned, and that the handler's context is cancelled.
func TestStopWaitsForHandler(t *testing.T) {
	set := NewSet(slog.New(slog.DiscardHandler))
	inHandler := make(chan struct{})
	var returned atomic.Bool
	sub, err := set.Add(context.Background(), configuration.SubscribeRequest{}, func(ctx context.Context, _ *configuration.UpdateEvent) error {
		close(inHandler)
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond)
		returned.Store(true)
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	go sub.Deliver(nil)
	<-inHandler
	if err := set.Stop(sub.ID); err != nil {
		t.Fatal(err)
	}
	if !returned.Load() {
		t.Fatal("Stop returned while the handler was running")
	}
}

func TestClose(t *testing.T) {
	set := NewSet(slog.New(slog.DiscardHandler))
	noop := func(context.Context, *configuration.UpdateEvent) error { return nil }
	var subs []*Sub
	for range 3 {
		sub, err := set.Add(context.Background(), configuration.SubscribeRequest{}, noop)
		if err != nil {
			t.Fatal(err)
		}
		sub.Go(func(ctx context.Context) { <-ctx.Done() })
		subs = append(subs, sub)
	}
	set.Close()
	for _, sub := range subs {
		select {
		case <-sub.Done():
		default:
			t.Fatal("Close returned before every subscription was done")
		}
	}
	if _, err := set.Add(context.Background(), configuration.SubscribeRequest{}, noop); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close = %v", err)
	}
	if _, err := set.Add(context.Background(), configuration.SubscribeRequest{}, nil); err == nil {
		t.Fatal("Add with a nil handler succeeded")
	}
}
