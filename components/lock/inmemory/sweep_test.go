package inmemory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/lock"
)

// TestExpiredEntriesAreSwept checks that locks nobody touches again do not
// pile up: the map stays bounded by the locks actually held.
func TestExpiredEntriesAreSwept(t *testing.T) {
	s := New(components.Deps{}).(*Store)
	clock := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return clock }
	ctx := context.Background()

	// Ten long-held locks stay; thousands of short ones expire unreleased.
	for i := range 10 {
		if ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: fmt.Sprintf("held-%d", i), LockOwner: "o", Expiry: time.Hour}); !ok || err != nil {
			t.Fatalf("TryLock(held-%d) = %v, %v", i, ok, err)
		}
	}
	for i := range 5000 {
		if ok, err := s.TryLock(ctx, lock.TryLockRequest{ResourceID: fmt.Sprintf("short-%d", i), LockOwner: "o", Expiry: time.Second}); !ok || err != nil {
			t.Fatalf("TryLock(short-%d) = %v, %v", i, ok, err)
		}
		clock = clock.Add(10 * time.Millisecond)
	}
	// Each sweep keeps at most the last ~100 unexpired short locks.
	if n := len(s.locks); n > 4*minSweep+200 {
		t.Fatalf("%d entries in the map after 5000 expired locks, want them swept", n)
	}
	for i := range 10 {
		if _, ok := s.locks[fmt.Sprintf("held-%d", i)]; !ok {
			t.Fatalf("held-%d was swept while still held", i)
		}
	}
	// An expired entry that was never swept still reads as free.
	clock = clock.Add(time.Hour)
	if st, err := s.Unlock(ctx, lock.UnlockRequest{ResourceID: "held-0", LockOwner: "o"}); st != lock.LockDoesNotExist || err != nil {
		t.Fatalf("Unlock(expired) = %v, %v; want LockDoesNotExist", st, err)
	}
	if ok, _ := s.TryLock(ctx, lock.TryLockRequest{ResourceID: "held-1", LockOwner: "other", Expiry: time.Second}); !ok {
		t.Fatal("TryLock of an expired lock by another owner = false")
	}
}
