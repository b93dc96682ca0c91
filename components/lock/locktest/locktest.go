// Package locktest is the conformance suite every lock store runs from its
// own tests:
//
//	func TestConformance(t *testing.T) {
//		locktest.Run(t, func(t *testing.T) lock.Store { return newInitialisedStore(t) })
//	}
//
// It checks the semantics documented in package lock: mutual exclusion under
// contention, expiry, owner-checked unlock with Dapr's statuses, no
// re-entrancy, and arbitrary (unicode) resource ids. Each run uses fresh
// resource ids and releases what it took, so it can share a backend with
// other tests.
package locktest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/lock"
)

// NewFunc returns an initialised store; it should register its own cleanup
// (t.Cleanup) to close it.
type NewFunc func(t *testing.T) lock.Store

// Racers is how many owners race for one resource in the mutual exclusion
// test.
const Racers = 50

// held is a long expiry for locks that a test releases itself.
const held = time.Minute

// Run runs the whole suite against a store built by newStore.
func Run(t *testing.T, newStore NewFunc) {
	t.Helper()
	s := newStore(t)
	r := &run{s: s, prefix: fmt.Sprintf("locktest-%d-", time.Now().UnixNano())}
	t.Cleanup(r.releaseAll)

	t.Run("lock and unlock", r.testLockUnlock)
	t.Run("not re-entrant", r.testNotReentrant)
	t.Run("unlock missing", r.testUnlockMissing)
	t.Run("wrong owner", r.testWrongOwner)
	t.Run("independent resources", r.testIndependent)
	t.Run("unicode ids", r.testUnicode)
	t.Run("mutual exclusion", r.testMutualExclusion)
	t.Run("expiry", r.testExpiry)
	t.Run("canceled context", r.testCanceled)
}

type run struct {
	s      lock.Store
	prefix string

	mu    sync.Mutex
	taken map[[2]string]bool // resource, owner
}

// id returns a resource id unique to this run.
func (r *run) id(name string) string { return r.prefix + name }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func (r *run) remember(res, owner string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.taken == nil {
		r.taken = map[[2]string]bool{}
	}
	if ok {
		r.taken[[2]string{res, owner}] = true
	} else {
		delete(r.taken, [2]string{res, owner})
	}
}

// releaseAll unlocks what the suite took and did not release, so that a
// shared backend is left as it was found.
func (r *run) releaseAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for k := range r.taken {
		_, _ = r.s.Unlock(c, lock.UnlockRequest{ResourceID: k[0], LockOwner: k[1]})
	}
}

func (r *run) tryLock(t *testing.T, res, owner string, expiry time.Duration) bool {
	t.Helper()
	ok, err := r.s.TryLock(ctx(t), lock.TryLockRequest{ResourceID: res, LockOwner: owner, Expiry: expiry})
	if err != nil {
		t.Fatalf("TryLock(%q, %q, %v): %v", res, owner, expiry, err)
	}
	if ok {
		r.remember(res, owner, true)
	}
	return ok
}

func (r *run) mustLock(t *testing.T, res, owner string, expiry time.Duration, want bool) {
	t.Helper()
	if got := r.tryLock(t, res, owner, expiry); got != want {
		t.Fatalf("TryLock(%q, %q) = %v, want %v", res, owner, got, want)
	}
}

func (r *run) unlock(t *testing.T, res, owner string) lock.UnlockStatus {
	t.Helper()
	st, err := r.s.Unlock(ctx(t), lock.UnlockRequest{ResourceID: res, LockOwner: owner})
	if err != nil {
		t.Fatalf("Unlock(%q, %q): %v (status %v)", res, owner, err, st)
	}
	if st == lock.Success {
		r.remember(res, owner, false)
	}
	return st
}

func (r *run) mustUnlock(t *testing.T, res, owner string, want lock.UnlockStatus) {
	t.Helper()
	if got := r.unlock(t, res, owner); got != want {
		t.Fatalf("Unlock(%q, %q) = %v, want %v", res, owner, got, want)
	}
}

func (r *run) testLockUnlock(t *testing.T) {
	res := r.id("basic")
	r.mustLock(t, res, "owner-a", held, true)
	r.mustLock(t, res, "owner-b", held, false)
	r.mustUnlock(t, res, "owner-a", lock.Success)
	// Released: a second unlock finds nothing, and another owner gets it.
	r.mustUnlock(t, res, "owner-a", lock.LockDoesNotExist)
	r.mustLock(t, res, "owner-b", held, true)
	r.mustLock(t, res, "owner-a", held, false)
	r.mustUnlock(t, res, "owner-b", lock.Success)
}

func (r *run) testNotReentrant(t *testing.T) {
	res := r.id("reentrant")
	r.mustLock(t, res, "owner-a", held, true)
	r.mustLock(t, res, "owner-a", held, false)
	// The failed re-lock did not disturb the lock: one unlock frees it.
	r.mustUnlock(t, res, "owner-a", lock.Success)
	r.mustUnlock(t, res, "owner-a", lock.LockDoesNotExist)
}

func (r *run) testUnlockMissing(t *testing.T) {
	r.mustUnlock(t, r.id("never-locked"), "owner-a", lock.LockDoesNotExist)
}

func (r *run) testWrongOwner(t *testing.T) {
	res := r.id("wrong-owner")
	r.mustLock(t, res, "owner-a", held, true)
	r.mustUnlock(t, res, "owner-b", lock.LockBelongsToOthers)
	// The lock stays with its owner.
	r.mustLock(t, res, "owner-b", held, false)
	r.mustUnlock(t, res, "owner-a", lock.Success)
	r.mustLock(t, res, "owner-b", held, true)
	r.mustUnlock(t, res, "owner-b", lock.Success)
}

func (r *run) testIndependent(t *testing.T) {
	a, b := r.id("independent-a"), r.id("independent-b")
	r.mustLock(t, a, "owner-a", held, true)
	r.mustLock(t, b, "owner-b", held, true)
	r.mustUnlock(t, b, "owner-a", lock.LockBelongsToOthers)
	r.mustUnlock(t, a, "owner-a", lock.Success)
	r.mustLock(t, b, "owner-c", held, false)
	r.mustUnlock(t, b, "owner-b", lock.Success)
	// Ids that differ only in case or by a prefix are different resources.
	r.mustLock(t, r.id("Case"), "owner-a", held, true)
	r.mustLock(t, r.id("case"), "owner-b", held, true)
	r.mustLock(t, r.id("case-longer"), "owner-c", held, true)
	r.mustUnlock(t, r.id("Case"), "owner-a", lock.Success)
	r.mustUnlock(t, r.id("case"), "owner-b", lock.Success)
	r.mustUnlock(t, r.id("case-longer"), "owner-c", lock.Success)
}

func (r *run) testUnicode(t *testing.T) {
	ids := []string{
		"ключ-🔒-鍵",
		"with spaces/and/slashes?x=1&y=2",
		"lock||app||nested",
		`quote'double"back\slash`,
		"percent%20and%zz",
		"tab\tnewline\n",
	}
	for i, name := range ids {
		res := r.id(name)
		owner := fmt.Sprintf("владелец-%d-👤", i)
		r.mustLock(t, res, owner, held, true)
		r.mustLock(t, res, "other", held, false)
		r.mustUnlock(t, res, "other", lock.LockBelongsToOthers)
		r.mustUnlock(t, res, owner, lock.Success)
		r.mustUnlock(t, res, owner, lock.LockDoesNotExist)
	}
}

func (r *run) testMutualExclusion(t *testing.T) {
	res := r.id("race")
	var (
		wins   atomic.Int32
		winner atomic.Value
		wg     sync.WaitGroup
		start  = make(chan struct{})
		errs   = make(chan error, Racers)
	)
	c := ctx(t)
	for i := range Racers {
		owner := fmt.Sprintf("racer-%02d", i)
		wg.Go(func() {
			<-start
			ok, err := r.s.TryLock(c, lock.TryLockRequest{ResourceID: res, LockOwner: owner, Expiry: held})
			if err != nil {
				errs <- fmt.Errorf("TryLock(%s): %w", owner, err)
				return
			}
			if ok {
				wins.Add(1)
				winner.Store(owner)
				r.remember(res, owner, true)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d of %d racing owners got the lock, want exactly 1", n, Racers)
	}
	w := winner.Load().(string)
	// Everyone else still fails while the winner holds it.
	for i := range Racers {
		if owner := fmt.Sprintf("racer-%02d", i); owner != w {
			r.mustLock(t, res, owner, held, false)
			if i%10 == 0 {
				r.mustUnlock(t, res, owner, lock.LockBelongsToOthers)
			}
		}
	}
	r.mustUnlock(t, res, w, lock.Success)

	// Once free, another race has exactly one winner again.
	wins.Store(0)
	var wg2 sync.WaitGroup
	for i := range Racers {
		owner := fmt.Sprintf("second-%02d", i)
		wg2.Go(func() {
			ok, err := r.s.TryLock(c, lock.TryLockRequest{ResourceID: res, LockOwner: owner, Expiry: held})
			if err == nil && ok {
				wins.Add(1)
				winner.Store(owner)
				r.remember(res, owner, true)
			}
		})
	}
	wg2.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("second race: %d owners got the lock, want exactly 1", n)
	}
	r.mustUnlock(t, res, winner.Load().(string), lock.Success)
}

// testExpiry takes locks with a 1s expiry and polls until they are free;
// there is no way to look at a lock without taking it.
func (r *run) testExpiry(t *testing.T) {
	res, probe := r.id("expiry"), r.id("expiry-probe")
	start := time.Now()
	r.mustLock(t, res, "owner-a", time.Second, true)
	r.mustLock(t, probe, "owner-a", time.Second, true)
	r.mustLock(t, res, "owner-b", time.Second, false)

	// probe was locked after res with the same expiry: once another owner
	// can take probe, res has expired too.
	deadline := start.Add(10 * time.Second)
	for !r.tryLock(t, probe, "owner-b", held) {
		if time.Now().After(deadline) {
			t.Fatalf("a lock with a 1s expiry was still held after %v", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("a lock with a 1s expiry was released after %v", el)
	}
	// An expired lock no longer exists for its former owner.
	r.mustUnlock(t, res, "owner-a", lock.LockDoesNotExist)
	// Another owner takes it; the former owner cannot release it.
	r.mustLock(t, res, "owner-b", held, true)
	r.mustUnlock(t, probe, "owner-a", lock.LockBelongsToOthers)
	r.mustUnlock(t, res, "owner-a", lock.LockBelongsToOthers)
	r.mustUnlock(t, res, "owner-b", lock.Success)
	r.mustUnlock(t, probe, "owner-b", lock.Success)

	// The same owner may take its own lock again once it has expired.
	again := r.id("expiry-again")
	r.mustLock(t, again, "owner-a", time.Second, true)
	deadline = time.Now().Add(10 * time.Second)
	for !r.tryLock(t, again, "owner-a", held) {
		if time.Now().After(deadline) {
			t.Fatal("the owner could not take its own lock again after it expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.mustUnlock(t, again, "owner-a", lock.Success)
}

func (r *run) testCanceled(t *testing.T) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	res := r.id("canceled")
	ok, err := r.s.TryLock(c, lock.TryLockRequest{ResourceID: res, LockOwner: "owner-a", Expiry: held})
	if err == nil {
		if ok {
			r.remember(res, "owner-a", true)
		}
		t.Fatalf("TryLock with a canceled context = %v, nil; want an error", ok)
	}
	if st, err := r.s.Unlock(c, lock.UnlockRequest{ResourceID: res, LockOwner: "owner-a"}); err == nil {
		t.Fatalf("Unlock with a canceled context = %v, nil; want an error", st)
	}
	// The store still works afterwards.
	r.mustLock(t, res, "owner-a", held, true)
	r.mustUnlock(t, res, "owner-a", lock.Success)
}

// ServiceEnv returns the environment variable name (a service address such
// as REDIS_ADDR or PG_DSN). When it is unset the test is skipped, or fails
// when MECHA_REQUIRE_SERVICES=1 (CI), where a missing service must not pass
// silently.
func ServiceEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s is not set but MECHA_REQUIRE_SERVICES=1 (source /tmp/dapr-services/services.env)", name)
		}
		t.Skipf("%s is not set; start services with shared/services/start-services.sh", name)
	}
	return v
}
