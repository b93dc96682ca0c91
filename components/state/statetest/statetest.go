// Package statetest is the conformance suite every state store runs from its
// own tests:
//
//	func TestConformance(t *testing.T) {
//		statetest.Run(t, func(t *testing.T) state.Store { return newInitialisedStore(t) })
//	}
//
// The suite chooses its subtests from the store's declared features and
// checks that the declaration matches the interfaces it implements. Each run
// uses fresh keys, so it can share a backend with other tests.
package statetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/state"
)

// NewFunc returns an initialised store; it should register its own cleanup
// (t.Cleanup) to close it.
type NewFunc func(t *testing.T) state.Store

// Run runs the whole suite against stores built by newStore.
func Run(t *testing.T, newStore NewFunc) {
	t.Helper()
	s := newStore(t)
	features := s.Features()
	prefix := fmt.Sprintf("statetest-%d||", time.Now().UnixNano())
	var mu sync.Mutex
	used := map[string]bool{}
	key := func(name string) string {
		mu.Lock()
		defer mu.Unlock()
		used[prefix+name] = true
		return prefix + name
	}
	// Leave a shared backend as it was found.
	t.Cleanup(func() {
		for k := range used {
			_ = s.Delete(context.Background(), &state.DeleteRequest{Key: k})
		}
	})

	t.Run("features match interfaces", func(t *testing.T) {
		_, tx := s.(state.Transactional)
		if tx != state.Has(features, state.FeatureTransactional) {
			t.Errorf("implements Transactional = %v but features %v", tx, features)
		}
		if state.Has(features, state.FeatureActor) {
			t.Errorf("a store must not declare %s; the runtime adds it", state.FeatureActor)
		}
	})
	t.Run("crud", func(t *testing.T) { testCRUD(t, s, key) })
	t.Run("values", func(t *testing.T) { testValues(t, s, key) })
	t.Run("unicode keys", func(t *testing.T) { testUnicodeKeys(t, s, key) })
	t.Run("bulk get", func(t *testing.T) { testBulkGet(t, s, key) })
	if state.Has(features, state.FeatureETag) {
		t.Run("etag", func(t *testing.T) { testETag(t, s, key) })
		t.Run("first write", func(t *testing.T) { testFirstWrite(t, s, key) })
		t.Run("concurrent writers", func(t *testing.T) { testConcurrentWriters(t, s, key) })
	}
	if state.Has(features, state.FeatureTransactional) {
		t.Run("transactions", func(t *testing.T) { testTransactions(t, s.(state.Transactional), s, key) })
		if state.Has(features, state.FeatureETag) {
			t.Run("transaction atomicity", func(t *testing.T) { testTransactionAtomicity(t, s.(state.Transactional), s, key) })
		}
	}
	if state.Has(features, state.FeatureTTL) {
		t.Run("ttl", func(t *testing.T) { testTTL(t, s, key) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// get reads key and fails the test on error.
func get(t *testing.T, s state.Store, key string) *state.GetResponse {
	t.Helper()
	resp, err := s.Get(ctx(t), &state.GetRequest{Key: key})
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if resp == nil {
		t.Fatalf("Get(%q) returned a nil response", key)
	}
	return resp
}

func set(t *testing.T, s state.Store, key string, value []byte) {
	t.Helper()
	if err := s.Set(ctx(t), &state.SetRequest{Key: key, Value: value}); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantValue(t *testing.T, s state.Store, key string, want []byte) *state.GetResponse {
	t.Helper()
	resp := get(t, s, key)
	if want == nil {
		if resp.Data != nil {
			t.Fatalf("Get(%q) = %q, want missing (nil)", key, resp.Data)
		}
		return resp
	}
	if !bytes.Equal(resp.Data, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, trunc(resp.Data), trunc(want))
	}
	return resp
}

func trunc(b []byte) []byte {
	if len(b) > 64 {
		return append(append([]byte(nil), b[:64]...), "..."...)
	}
	return b
}

func testCRUD(t *testing.T, s state.Store, key func(string) string) {
	k := key("crud")
	wantValue(t, s, k, nil)
	set(t, s, k, []byte(`{"n":1}`))
	wantValue(t, s, k, []byte(`{"n":1}`))
	set(t, s, k, []byte(`"second"`))
	wantValue(t, s, k, []byte(`"second"`))
	if err := s.Delete(ctx(t), &state.DeleteRequest{Key: k}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantValue(t, s, k, nil)
	if err := s.Delete(ctx(t), &state.DeleteRequest{Key: k}); err != nil {
		t.Fatalf("Delete of a missing key without etag = %v, want nil", err)
	}
	// An empty value is a value, not a missing key.
	set(t, s, key("empty"), []byte{})
	if resp := get(t, s, key("empty")); resp.Data == nil || len(resp.Data) != 0 {
		t.Fatalf("Get(empty value) = %v (nil=%v), want empty non-nil", resp.Data, resp.Data == nil)
	}
}

func testValues(t *testing.T, s state.Store, key func(string) string) {
	cases := map[string][]byte{
		"binary":  {0x00, 0xff, 0xfe, 0x01, '"', '\\', 0x00},
		"unicode": []byte(`"héllo wörld ✓ 🔑"`),
		"json":    []byte(`{"a":[1,2,3],"b":{"c":null},"d":"x\"y"}`),
		"text":    []byte("plain text, not json"),
	}
	large := make([]byte, 2<<20)
	for i := range large {
		large[i] = byte(i * 7)
	}
	cases["large 2MiB"] = large
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			k := key("value-" + name)
			set(t, s, k, v)
			wantValue(t, s, k, v)
		})
	}
}

func testUnicodeKeys(t *testing.T, s state.Store, key func(string) string) {
	for _, k := range []string{"ключ", "鍵/with/slashes", "emoji-🔑", "spaces and 'quotes' \"double\"", "percent%20and?query#frag", "a||b||c"} {
		full := key(k)
		v := []byte(strconv.Quote(k))
		set(t, s, full, v)
		wantValue(t, s, full, v)
	}
}

func testBulkGet(t *testing.T, s state.Store, key func(string) string) {
	bg, ok := s.(state.BulkGetter)
	if !ok {
		t.Skip("store has no native bulk get; the runtime falls back to Get")
	}
	set(t, s, key("bulk-a"), []byte("A"))
	set(t, s, key("bulk-b"), []byte("B"))
	keys := []string{key("bulk-b"), key("bulk-missing"), key("bulk-a")}
	items, err := bg.BulkGet(ctx(t), keys, state.GetOptions{})
	if err != nil {
		t.Fatalf("BulkGet: %v", err)
	}
	got := map[string]state.BulkItem{}
	for _, it := range items {
		got[it.Key] = it
	}
	if len(got) != 3 {
		t.Fatalf("BulkGet returned %d distinct keys (%v), want 3", len(got), items)
	}
	if string(got[key("bulk-a")].Data) != "A" || string(got[key("bulk-b")].Data) != "B" {
		t.Errorf("BulkGet values = %q, %q; want A, B", got[key("bulk-a")].Data, got[key("bulk-b")].Data)
	}
	if d := got[key("bulk-missing")].Data; d != nil {
		t.Errorf("BulkGet missing key data = %q, want nil", d)
	}
	if state.Has(s.Features(), state.FeatureETag) && got[key("bulk-a")].ETag == "" {
		t.Errorf("BulkGet gave no etag for an existing key")
	}
}

func isMismatch(err error) bool { return errors.Is(err, state.ErrETagMismatch) }

func testETag(t *testing.T, s state.Store, key func(string) string) {
	k := key("etag")
	set(t, s, k, []byte("v1"))
	e1 := get(t, s, k).ETag
	if e1 == "" {
		t.Fatal("Get returned no etag for an existing key")
	}
	// A write with the right etag succeeds and changes the etag.
	if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("v2"), ETag: &e1}); err != nil {
		t.Fatalf("Set with current etag: %v", err)
	}
	e2 := wantValue(t, s, k, []byte("v2")).ETag
	if e2 == e1 {
		t.Fatalf("etag did not change after a write: %q", e2)
	}
	// The stale etag is refused and the value is unchanged.
	if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("v3"), ETag: &e1}); !isMismatch(err) {
		t.Fatalf("Set with stale etag = %v, want ErrETagMismatch", err)
	}
	wantValue(t, s, k, []byte("v2"))
	if err := s.Delete(ctx(t), &state.DeleteRequest{Key: k, ETag: &e1}); !isMismatch(err) {
		t.Fatalf("Delete with stale etag = %v, want ErrETagMismatch", err)
	}
	wantValue(t, s, k, []byte("v2"))
	// A malformed etag is refused, as invalid or as a mismatch.
	bad := "not-an-etag-%%"
	if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("v4"), ETag: &bad}); !isMismatch(err) && !errors.Is(err, state.ErrETagInvalid) {
		t.Fatalf("Set with malformed etag = %v, want ErrETagInvalid or ErrETagMismatch", err)
	}
	// Delete with the current etag works.
	if err := s.Delete(ctx(t), &state.DeleteRequest{Key: k, ETag: &e2}); err != nil {
		t.Fatalf("Delete with current etag: %v", err)
	}
	wantValue(t, s, k, nil)
	// An etag on a missing key is a mismatch, for writes and deletes.
	if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("v5"), ETag: &e2}); !isMismatch(err) {
		t.Fatalf("Set with etag on a missing key = %v, want ErrETagMismatch", err)
	}
	wantValue(t, s, k, nil)
	if err := s.Delete(ctx(t), &state.DeleteRequest{Key: k, ETag: &e2}); !isMismatch(err) {
		t.Fatalf("Delete with etag on a missing key = %v, want ErrETagMismatch", err)
	}
}

func testFirstWrite(t *testing.T, s state.Store, key func(string) string) {
	k := key("first-write")
	fw := state.WriteOptions{Concurrency: state.FirstWrite}
	if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("first"), Options: fw}); err != nil {
		t.Fatalf("first-write on a new key: %v", err)
	}
	if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("second"), Options: fw}); !isMismatch(err) {
		t.Fatalf("first-write without etag on an existing key = %v, want ErrETagMismatch", err)
	}
	e := wantValue(t, s, k, []byte("first")).ETag
	if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("third"), ETag: &e, Options: fw}); err != nil {
		t.Fatalf("first-write with the current etag: %v", err)
	}
	wantValue(t, s, k, []byte("third"))
	// last-write without an etag always wins.
	set(t, s, k, []byte("fourth"))
	wantValue(t, s, k, []byte("fourth"))
}

// testConcurrentWriters runs optimistic read-modify-write loops from several
// goroutines on one counter; with correct ETags no increment is lost.
func testConcurrentWriters(t *testing.T, s state.Store, key func(string) string) {
	k := key("counter")
	set(t, s, k, []byte("0"))
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for done := 0; done < each; {
				resp, err := s.Get(context.Background(), &state.GetRequest{Key: k})
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(resp.Data))
				if err != nil {
					errs <- fmt.Errorf("counter value %q: %w", resp.Data, err)
					return
				}
				etag := resp.ETag
				err = s.Set(context.Background(), &state.SetRequest{Key: k, Value: []byte(strconv.Itoa(n + 1)), ETag: &etag})
				switch {
				case err == nil:
					done++
				case isMismatch(err):
					// lost the race; read again
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantValue(t, s, k, []byte(strconv.Itoa(workers*each)))
}

func testTransactions(t *testing.T, tx state.Transactional, s state.Store, key func(string) string) {
	a, b, c := key("tx-a"), key("tx-b"), key("tx-c")
	set(t, s, c, []byte("to delete"))
	err := tx.Multi(ctx(t), &state.TransactionRequest{Operations: []state.Operation{
		{Set: &state.SetRequest{Key: a, Value: []byte("A")}},
		{Set: &state.SetRequest{Key: b, Value: []byte("B")}},
		{Delete: &state.DeleteRequest{Key: c}},
		{Set: &state.SetRequest{Key: b, Value: []byte("B2")}},
	}})
	if err != nil {
		t.Fatalf("Multi: %v", err)
	}
	wantValue(t, s, a, []byte("A"))
	wantValue(t, s, b, []byte("B2"))
	wantValue(t, s, c, nil)
	// An empty transaction is fine.
	if err := tx.Multi(ctx(t), &state.TransactionRequest{}); err != nil {
		t.Fatalf("empty Multi: %v", err)
	}
}

func testTransactionAtomicity(t *testing.T, tx state.Transactional, s state.Store, key func(string) string) {
	a, b, c := key("atomic-a"), key("atomic-b"), key("atomic-c")
	set(t, s, a, []byte("a0"))
	set(t, s, b, []byte("b0"))
	stale := get(t, s, b).ETag
	set(t, s, b, []byte("b1")) // makes `stale` stale
	err := tx.Multi(ctx(t), &state.TransactionRequest{Operations: []state.Operation{
		{Set: &state.SetRequest{Key: a, Value: []byte("a1")}},
		{Delete: &state.DeleteRequest{Key: a + "-never-existed"}},
		{Set: &state.SetRequest{Key: c, Value: []byte("c1")}},
		{Set: &state.SetRequest{Key: b, Value: []byte("b2"), ETag: &stale}},
	}})
	if !isMismatch(err) {
		t.Fatalf("Multi with a stale etag = %v, want ErrETagMismatch", err)
	}
	wantValue(t, s, a, []byte("a0"))
	wantValue(t, s, b, []byte("b1"))
	wantValue(t, s, c, nil)

	// A stale etag on a delete aborts too.
	err = tx.Multi(ctx(t), &state.TransactionRequest{Operations: []state.Operation{
		{Delete: &state.DeleteRequest{Key: a}},
		{Delete: &state.DeleteRequest{Key: b, ETag: &stale}},
	}})
	if !isMismatch(err) {
		t.Fatalf("Multi with a stale delete etag = %v, want ErrETagMismatch", err)
	}
	wantValue(t, s, a, []byte("a0"))

	// Etags read before the transaction work inside it.
	cur := get(t, s, b).ETag
	err = tx.Multi(ctx(t), &state.TransactionRequest{Operations: []state.Operation{
		{Set: &state.SetRequest{Key: b, Value: []byte("b3"), ETag: &cur}},
		{Delete: &state.DeleteRequest{Key: a}},
	}})
	if err != nil {
		t.Fatalf("Multi with current etag: %v", err)
	}
	wantValue(t, s, b, []byte("b3"))
	wantValue(t, s, a, nil)
}

func testTTL(t *testing.T, s state.Store, key func(string) string) {
	short, long, cleared := key("ttl-short"), key("ttl-long"), key("ttl-cleared")
	start := time.Now()
	for _, k := range []string{short, cleared} {
		if err := s.Set(ctx(t), &state.SetRequest{Key: k, Value: []byte("x"), TTL: time.Second}); err != nil {
			t.Fatalf("Set with TTL: %v", err)
		}
	}
	if err := s.Set(ctx(t), &state.SetRequest{Key: long, Value: []byte("y"), TTL: time.Hour}); err != nil {
		t.Fatalf("Set with TTL: %v", err)
	}
	// Rewriting without a TTL makes the key permanent again.
	set(t, s, cleared, []byte("z"))

	resp := get(t, s, long)
	if resp.ExpireTime == nil {
		t.Fatal("Get of a key with a TTL has no ExpireTime")
	}
	if d := resp.ExpireTime.Sub(start); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("ExpireTime is %v after the write, want about 1h", d)
	}
	if resp := get(t, s, cleared); resp.ExpireTime != nil {
		t.Errorf("key rewritten without TTL still expires at %v", resp.ExpireTime)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := get(t, s, short)
		if resp.Data == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key with a 1s TTL still readable after %v", time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("key with a 1s TTL vanished after only %v", el)
	}
	wantValue(t, s, long, []byte("y"))
	wantValue(t, s, cleared, []byte("z"))
}
