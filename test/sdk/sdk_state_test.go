package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const storeName = "statestore"

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expectCode fails unless err carries the gRPC status code want.
func expectCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, want)
	}
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got %v (%v), want %v", what, got, err, want)
	}
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// getState reads key and returns its value and etag.
func getState(t testing.TB, c client.Client, key string) ([]byte, string) {
	t.Helper()
	item, err := c.GetState(ctxT(t), storeName, key, nil)
	if err != nil {
		t.Fatalf("GetState(%q): %v", key, err)
	}
	return item.Value, item.Etag
}

func expectValue(t testing.TB, c client.Client, key string, want []byte) string {
	t.Helper()
	got, etag := getState(t, c, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("GetState(%q) = %q, want %q", key, trunc(got), trunc(want))
	}
	return etag
}

func expectMissing(t testing.TB, c client.Client, key string) {
	t.Helper()
	got, etag := getState(t, c, key)
	if len(got) != 0 || etag != "" {
		t.Fatalf("GetState(%q) = (%q, etag %q), want a missing key (empty value and etag)", key, trunc(got), etag)
	}
}

func trunc(b []byte) []byte {
	if len(b) > 64 {
		return append(b[:64:64], "..."...)
	}
	return b
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// TestSDKState runs the Go SDK state API against every configured store.
func TestSDKState(t *testing.T) {
	t.Parallel()
	for _, st := range stateStores {
		t.Run(st.Name, func(t *testing.T) {
			t.Parallel()
			st.requireService(t)
			s := startStoreSidecar(t, st, sidecarConfig{}, t.TempDir(), storeName, nil)
			c := s.sdkClient(t)
			testSDKState(t, st, s, c)
		})
	}
}

func testSDKState(t *testing.T, st stateStore, s *sidecar, c client.Client) {
	t.Run("SaveGetRoundTrip", func(t *testing.T) {
		values := map[string][]byte{
			"text":    []byte("hello, world"),
			"json":    []byte(`{ "b": 1,  "a": [1, 2, {"c": null}] }`),
			"string":  []byte(`"quoted"`),
			"binary":  {0x00, 0x01, 0xfe, 0xff, 0x80, '|', '|', 0x00},
			"utf8":    []byte("grüße, 世界 🚀"),
			"big":     randomBytes(512 << 10),
			"3MiB":    randomBytes(3 << 20), // under the default 4 MB gRPC limit
			"newline": []byte("a\r\nb\n"),
		}
		for name, v := range values {
			key := "rt-" + name
			must(t, "SaveState "+key, c.SaveState(ctxT(t), storeName, key, v, nil))
			etag := expectValue(t, c, key, v)
			if etag == "" {
				t.Errorf("GetState(%q): empty etag from a store with the ETAG feature", key)
			}
		}
		// Consistency hints are accepted.
		must(t, "SaveState eventual", c.SaveState(ctxT(t), storeName, "rt-eventual", []byte("e"), nil,
			client.WithConsistency(client.StateConsistencyEventual), client.WithConcurrency(client.StateConcurrencyLastWrite)))
		ev, err := c.GetStateWithConsistency(ctxT(t), storeName, "rt-eventual", nil, client.StateConsistencyEventual)
		must(t, "GetStateWithConsistency eventual", err)
		if string(ev.Value) != "e" {
			t.Errorf("GetStateWithConsistency = %q, want e", ev.Value)
		}
		// Keys are case-sensitive and may be long or non-ASCII.
		keys := map[string]string{"Case": "upper", "case": "lower", strings.Repeat("k", 1000): "long", "ключ-键-🔑": "unicode", "a|b": "single bar"}
		for k, v := range keys {
			must(t, "SaveState", c.SaveState(ctxT(t), storeName, k, []byte(v), nil))
		}
		for k, v := range keys {
			expectValue(t, c, k, []byte(v))
		}
		// Overwriting changes the value and the etag.
		_, e1 := getState(t, c, "rt-text")
		must(t, "SaveState overwrite", c.SaveState(ctxT(t), storeName, "rt-text", []byte("second"), nil))
		e2 := expectValue(t, c, "rt-text", []byte("second"))
		if e1 == e2 {
			t.Errorf("etag did not change on overwrite: %q", e1)
		}
	})

	t.Run("GetMissing", func(t *testing.T) {
		expectMissing(t, c, "never-saved-"+uniqueID())
	})

	t.Run("Delete", func(t *testing.T) {
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "del-1", []byte("v"), nil))
		must(t, "DeleteState", c.DeleteState(ctxT(t), storeName, "del-1", nil))
		expectMissing(t, c, "del-1")
		// Deleting a missing key is not an error in Dapr.
		must(t, "DeleteState of a missing key", c.DeleteState(ctxT(t), storeName, "never-saved-"+uniqueID(), nil))
	})

	t.Run("ETag", func(t *testing.T) {
		key := "etag-1"
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, key, []byte("v1"), nil))
		_, e1 := getState(t, c, key)
		must(t, "SaveStateWithETag (current etag)", c.SaveStateWithETag(ctxT(t), storeName, key, []byte("v2"), e1, nil))
		e2 := expectValue(t, c, key, []byte("v2"))
		if e2 == e1 {
			t.Fatalf("etag unchanged after a write: %q", e1)
		}
		err := c.SaveStateWithETag(ctxT(t), storeName, key, []byte("v3"), e1, nil)
		expectCode(t, "SaveStateWithETag (stale etag)", err, codes.Aborted)
		expectValue(t, c, key, []byte("v2"))

		err = c.DeleteStateWithETag(ctxT(t), storeName, key, &client.ETag{Value: e1}, nil, nil)
		expectCode(t, "DeleteStateWithETag (stale etag)", err, codes.Aborted)
		expectValue(t, c, key, []byte("v2"))
		must(t, "DeleteStateWithETag (current etag)", c.DeleteStateWithETag(ctxT(t), storeName, key, &client.ETag{Value: e2}, nil, nil))
		expectMissing(t, c, key)

		// An etag on a key that does not exist never succeeds: Aborted
		// (mismatch) or InvalidArgument (an etag the store cannot parse).
		err = c.SaveStateWithETag(ctxT(t), storeName, "etag-missing", []byte("v"), e2, nil)
		if code := status.Code(err); code != codes.Aborted && code != codes.InvalidArgument {
			t.Fatalf("SaveStateWithETag on a missing key: %v, want Aborted or InvalidArgument", err)
		}
		expectMissing(t, c, "etag-missing")
	})

	t.Run("FirstWrite", func(t *testing.T) {
		key := "fw-1"
		fw := client.WithConcurrency(client.StateConcurrencyFirstWrite)
		must(t, "first-write on a new key", c.SaveStateWithETag(ctxT(t), storeName, key, []byte("first"), "", nil, fw))
		err := c.SaveStateWithETag(ctxT(t), storeName, key, []byte("second"), "", nil, fw)
		expectCode(t, "first-write without etag on an existing key", err, codes.Aborted)
		e1 := expectValue(t, c, key, []byte("first"))
		must(t, "first-write with the current etag", c.SaveStateWithETag(ctxT(t), storeName, key, []byte("third"), e1, nil, fw))
		expectValue(t, c, key, []byte("third"))
		err = c.SaveStateWithETag(ctxT(t), storeName, key, []byte("fourth"), e1, nil, fw)
		expectCode(t, "first-write with a stale etag", err, codes.Aborted)
		// last-write without an etag always wins.
		lw := client.WithConcurrency(client.StateConcurrencyLastWrite)
		must(t, "last-write without etag", c.SaveStateWithETag(ctxT(t), storeName, key, []byte("fifth"), "", nil, lw))
		expectValue(t, c, key, []byte("fifth"))
	})

	t.Run("Bulk", func(t *testing.T) {
		items := []*client.SetStateItem{
			{Key: "bulk-a", Value: []byte("A")},
			{Key: "bulk-b", Value: []byte(`{"b":2}`)},
			{Key: "bulk-c", Value: []byte{0, 0xff}},
		}
		must(t, "SaveBulkState", c.SaveBulkState(ctxT(t), storeName, items...))
		keys := []string{"bulk-c", "bulk-missing", "bulk-a", "bulk-b"}
		got, err := c.GetBulkState(ctxT(t), storeName, keys, nil, 2)
		must(t, "GetBulkState", err)
		if len(got) != len(keys) {
			t.Fatalf("GetBulkState returned %d items, want %d (missing keys included): %+v", len(got), len(keys), got)
		}
		byKey := map[string]*client.BulkStateItem{}
		for _, it := range got {
			byKey[it.Key] = it
		}
		for _, want := range items {
			it := byKey[want.Key]
			if it == nil {
				t.Fatalf("GetBulkState: key %s missing from the response", want.Key)
			}
			if !bytes.Equal(it.Value, want.Value) || it.Error != "" {
				t.Errorf("GetBulkState %s = (%q, error %q), want %q", want.Key, it.Value, it.Error, want.Value)
			}
			_, etag := getState(t, c, want.Key)
			if it.Etag == "" || it.Etag != etag {
				t.Errorf("GetBulkState %s etag = %q, want the GetState etag %q", want.Key, it.Etag, etag)
			}
		}
		m := byKey["bulk-missing"]
		if m == nil {
			t.Fatalf("GetBulkState: the missing key is not in the response")
		}
		if len(m.Value) != 0 || m.Etag != "" || m.Error != "" {
			t.Errorf("GetBulkState missing key = %+v, want empty data, etag and error", m)
		}

		must(t, "DeleteBulkState", c.DeleteBulkState(ctxT(t), storeName, []string{"bulk-a", "bulk-b", "bulk-missing"}, nil))
		expectMissing(t, c, "bulk-a")
		expectMissing(t, c, "bulk-b")
		expectValue(t, c, "bulk-c", []byte{0, 0xff})
	})

	t.Run("Transaction", func(t *testing.T) {
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "tx-del", []byte("x"), nil))
		ops := []*client.StateOperation{
			{Type: client.StateOperationTypeUpsert, Item: &client.SetStateItem{Key: "tx-a", Value: []byte("1")}},
			{Type: client.StateOperationTypeUpsert, Item: &client.SetStateItem{Key: "tx-b", Value: []byte{0xff, 0}}},
			{Type: client.StateOperationTypeDelete, Item: &client.SetStateItem{Key: "tx-del"}},
		}
		must(t, "ExecuteStateTransaction", c.ExecuteStateTransaction(ctxT(t), storeName, nil, ops))
		expectValue(t, c, "tx-a", []byte("1"))
		expectValue(t, c, "tx-b", []byte{0xff, 0})
		expectMissing(t, c, "tx-del")
	})

	t.Run("TransactionOrder", func(t *testing.T) {
		// Operations apply in order: upsert then delete leaves nothing,
		// delete then upsert leaves the value, two upserts keep the last.
		up := func(k, v string) *client.StateOperation {
			return &client.StateOperation{Type: client.StateOperationTypeUpsert, Item: &client.SetStateItem{Key: k, Value: []byte(v)}}
		}
		del := func(k string) *client.StateOperation {
			return &client.StateOperation{Type: client.StateOperationTypeDelete, Item: &client.SetStateItem{Key: k}}
		}
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "order-2", []byte("old"), nil))
		must(t, "ExecuteStateTransaction", c.ExecuteStateTransaction(ctxT(t), storeName, nil, []*client.StateOperation{
			up("order-1", "x"), del("order-1"),
			del("order-2"), up("order-2", "new"),
			up("order-3", "first"), up("order-3", "last"),
		}))
		expectMissing(t, c, "order-1")
		expectValue(t, c, "order-2", []byte("new"))
		expectValue(t, c, "order-3", []byte("last"))
	})

	t.Run("TransactionAtomicity", func(t *testing.T) {
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "at-1", []byte("orig"), nil))
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "at-2", []byte("v1"), nil))
		_, stale := getState(t, c, "at-2")
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "at-2", []byte("v2"), nil))

		for _, second := range []client.OperationType{client.StateOperationTypeUpsert, client.StateOperationTypeDelete} {
			ops := []*client.StateOperation{
				{Type: client.StateOperationTypeUpsert, Item: &client.SetStateItem{Key: "at-1", Value: []byte("changed")}},
				{Type: client.StateOperationTypeUpsert, Item: &client.SetStateItem{Key: "at-new", Value: []byte("new")}},
				{Type: second, Item: &client.SetStateItem{Key: "at-2", Value: []byte("v3"), Etag: &client.ETag{Value: stale}}},
			}
			err := c.ExecuteStateTransaction(ctxT(t), storeName, nil, ops)
			expectCode(t, fmt.Sprintf("transaction whose %s has a stale etag", second), err, codes.Aborted)
			expectValue(t, c, "at-1", []byte("orig"))
			expectMissing(t, c, "at-new")
			expectValue(t, c, "at-2", []byte("v2"))
		}
	})

	t.Run("TTL", func(t *testing.T) {
		key := "ttl-1"
		must(t, "SaveState with ttlInSeconds", c.SaveState(ctxT(t), storeName, key, []byte("short-lived"), map[string]string{"ttlInSeconds": "1"}))
		item, err := c.GetState(ctxT(t), storeName, key, nil)
		must(t, "GetState", err)
		if string(item.Value) != "short-lived" {
			t.Fatalf("GetState right after the save = %q, want the value (it expires after 1s)", item.Value)
		}
		if exp, ok := item.Metadata["ttlExpireTime"]; !ok {
			t.Errorf("GetState metadata = %v, want ttlExpireTime", item.Metadata)
		} else if ts, err := time.Parse(time.RFC3339, exp); err != nil || time.Until(ts) > time.Minute {
			t.Errorf("ttlExpireTime %q is not an RFC 3339 time about a second from now (%v)", exp, err)
		}
		// A TTL in a transaction's upsert metadata works the same way.
		must(t, "ExecuteStateTransaction with ttlInSeconds", c.ExecuteStateTransaction(ctxT(t), storeName, nil, []*client.StateOperation{
			{Type: client.StateOperationTypeUpsert, Item: &client.SetStateItem{Key: "ttl-tx", Value: []byte("tx"), Metadata: map[string]string{"ttlInSeconds": "1"}}},
		}))
		expectValue(t, c, "ttl-tx", []byte("tx"))
		// A key without TTL is not affected.
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "ttl-none", []byte("stays"), nil))
		saved := time.Now()
		for _, k := range []string{key, "ttl-tx"} {
			eventually(t, 10*time.Second, k+" with ttlInSeconds=1 expires", func() bool {
				v, _ := getState(t, c, k)
				return len(v) == 0
			})
		}
		if d := time.Since(saved); d < 500*time.Millisecond {
			t.Errorf("keys with ttlInSeconds=1 disappeared after only %v", d)
		}
		expectValue(t, c, "ttl-none", []byte("stays"))

		// An expired key is gone for every operation, not only GetState.
		got, err := c.GetBulkState(ctxT(t), storeName, []string{key, "ttl-none"}, nil, 0)
		must(t, "GetBulkState", err)
		for _, it := range got {
			if it.Key == key && (len(it.Value) != 0 || it.Etag != "") {
				t.Errorf("GetBulkState returns the expired key: %+v", it)
			}
		}
		// Its old etag no longer matches...
		err = c.SaveStateWithETag(ctxT(t), storeName, key, []byte("revived"), item.Etag, nil)
		if code := status.Code(err); code != codes.Aborted && code != codes.InvalidArgument {
			t.Errorf("SaveStateWithETag with the etag of an expired key: %v, want Aborted", err)
		}
		// ...and first-write may create it again.
		must(t, "first-write on an expired key", c.SaveStateWithETag(ctxT(t), storeName, key, []byte("again"), "", nil,
			client.WithConcurrency(client.StateConcurrencyFirstWrite)))
		expectValue(t, c, key, []byte("again"))
		// ttlInSeconds=-1 means no expiry.
		must(t, "SaveState with ttlInSeconds=-1", c.SaveState(ctxT(t), storeName, "ttl-forever", []byte("f"), map[string]string{"ttlInSeconds": "-1"}))
		expectValue(t, c, "ttl-forever", []byte("f"))
	})

	t.Run("ConcurrentFirstWrite", func(t *testing.T) {
		// N writers race to create the same key with first-write: exactly
		// one wins, the others get Aborted.
		const writers = 16
		key := "race-" + uniqueID()
		errs := make(chan error, writers)
		for i := range writers {
			go func() {
				errs <- c.SaveStateWithETag(ctxT(t), storeName, key, []byte(strconv.Itoa(i)), "", nil,
					client.WithConcurrency(client.StateConcurrencyFirstWrite))
			}()
		}
		wins := 0
		for range writers {
			err := <-errs
			switch status.Code(err) {
			case codes.OK:
				wins++
			case codes.Aborted:
			default:
				t.Errorf("concurrent first-write: %v, want OK or Aborted", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d of %d concurrent first-writes of a new key succeeded, want exactly 1", wins, writers)
		}
	})

	t.Run("OptimisticCounter", func(t *testing.T) {
		// Read-modify-write with etags and retry on Aborted: no update is
		// lost.
		const workers, increments = 4, 5
		key := "counter-" + uniqueID()
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, key, []byte("0"), nil))
		done := make(chan error, workers)
		for range workers {
			go func() {
				for range increments {
					for attempt := 0; ; attempt++ {
						item, err := c.GetState(ctxT(t), storeName, key, nil)
						if err != nil {
							done <- err
							return
						}
						n, _ := strconv.Atoi(string(item.Value))
						err = c.SaveStateWithETag(ctxT(t), storeName, key, []byte(strconv.Itoa(n+1)), item.Etag, nil)
						if err == nil {
							break
						}
						if status.Code(err) != codes.Aborted || attempt > 200 {
							done <- err
							return
						}
					}
				}
				done <- nil
			}()
		}
		for range workers {
			must(t, "increment", <-done)
		}
		expectValue(t, c, key, []byte(strconv.Itoa(workers*increments)))
	})

	t.Run("BulkMany", func(t *testing.T) {
		const n = 200
		items := make([]*client.SetStateItem, n)
		keys := make([]string, n)
		for i := range items {
			keys[i] = fmt.Sprintf("many-%03d", i)
			items[i] = &client.SetStateItem{Key: keys[i], Value: []byte(strconv.Itoa(i))}
		}
		must(t, "SaveBulkState", c.SaveBulkState(ctxT(t), storeName, items...))
		got, err := c.GetBulkState(ctxT(t), storeName, keys, nil, 0)
		must(t, "GetBulkState", err)
		if len(got) != n {
			t.Fatalf("GetBulkState returned %d items, want %d", len(got), n)
		}
		seen := map[string]bool{}
		for _, it := range got {
			i, err := strconv.Atoi(strings.TrimPrefix(it.Key, "many-"))
			if err != nil || string(it.Value) != strconv.Itoa(i) || it.Etag == "" {
				t.Fatalf("GetBulkState item %+v", it)
			}
			seen[it.Key] = true
		}
		if len(seen) != n {
			t.Fatalf("GetBulkState returned %d distinct keys, want %d", len(seen), n)
		}
		must(t, "DeleteBulkState", c.DeleteBulkState(ctxT(t), storeName, keys, nil))
		got, err = c.GetBulkState(ctxT(t), storeName, keys[:10], nil, 0)
		must(t, "GetBulkState", err)
		for _, it := range got {
			if len(it.Value) != 0 {
				t.Fatalf("key %s still has %q after DeleteBulkState", it.Key, it.Value)
			}
		}
	})

	t.Run("DeleteBulkETag", func(t *testing.T) {
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "dbe-1", []byte("v1"), nil))
		_, stale := getState(t, c, "dbe-1")
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "dbe-1", []byte("v2"), nil))
		err := c.DeleteBulkStateItems(ctxT(t), storeName, []*client.DeleteStateItem{{Key: "dbe-1", Etag: &client.ETag{Value: stale}}})
		expectCode(t, "DeleteBulkStateItems with a stale etag", err, codes.Aborted)
		cur := expectValue(t, c, "dbe-1", []byte("v2"))
		must(t, "DeleteBulkStateItems with the current etag",
			c.DeleteBulkStateItems(ctxT(t), storeName, []*client.DeleteStateItem{{Key: "dbe-1", Etag: &client.ETag{Value: cur}}}))
		expectMissing(t, c, "dbe-1")
	})

	t.Run("TransactionInvalidOperation", func(t *testing.T) {
		must(t, "SaveState", c.SaveState(ctxT(t), storeName, "txop-1", []byte("orig"), nil))
		// The SDK sends OperationType(0) as "undefined"; use the raw client
		// to send an arbitrary operation type.
		req := &pb.ExecuteStateTransactionRequest{StoreName: storeName, Operations: []*pb.TransactionalStateOperation{
			{OperationType: "upsert", Request: &commonv1.StateItem{Key: "txop-1", Value: []byte("changed")}},
			{OperationType: "patch", Request: &commonv1.StateItem{Key: "txop-2", Value: []byte("x")}},
		}}
		_, err := c.GrpcClient().ExecuteStateTransaction(ctxT(t), req)
		if err == nil {
			t.Fatal("transaction with operation type patch succeeded")
		}
		expectValue(t, c, "txop-1", []byte("orig"))
		// daprd (v1.14 through v1.17, pkg/api/grpc/grpc.go
		// ExecuteStateTransaction) answers codes.Unimplemented with
		// "operation type patch not supported"; over HTTP it is 400
		// ERR_NOT_SUPPORTED_STATE_OPERATION.
		if status.Code(err) != codes.Unimplemented {
			knownBug(t, "grpc-tx-invalid-op-code", "ExecuteStateTransaction with operationType %q: got %v (%s), daprd answers Unimplemented",
				"patch", status.Code(err), status.Convert(err).Message())
		}
		if !strings.Contains(status.Convert(err).Message(), "patch") {
			t.Errorf("error %q does not name the operation type", status.Convert(err).Message())
		}
	})

	t.Run("IllegalKey", func(t *testing.T) {
		_, err := c.GetState(ctxT(t), storeName, "a||b", nil)
		expectCode(t, `GetState("a||b")`, err, codes.InvalidArgument)
		err = c.SaveState(ctxT(t), storeName, "a||b", []byte("v"), nil)
		expectCode(t, `SaveState("a||b")`, err, codes.InvalidArgument)
		err = c.DeleteState(ctxT(t), storeName, "a||b", nil)
		expectCode(t, `DeleteState("a||b")`, err, codes.InvalidArgument)
		// daprd returns its plain key error here (gRPC Unknown); Mecha's
		// InvalidArgument is what the single-key calls return.
		_, err = c.GetBulkState(ctxT(t), storeName, []string{"ok", "a||b"}, nil, 1)
		expectCode(t, `GetBulkState with "a||b"`, err, codes.InvalidArgument)
	})

	t.Run("UnknownStore", func(t *testing.T) {
		_, err := c.GetState(ctxT(t), "no-such-store", "k", nil)
		expectCode(t, "GetState on an unknown store", err, codes.InvalidArgument)
		if !strings.Contains(err.Error(), "no-such-store") {
			t.Errorf("error %q does not name the store", err)
		}
		err = c.SaveState(ctxT(t), "no-such-store", "k", []byte("v"), nil)
		expectCode(t, "SaveState on an unknown store", err, codes.InvalidArgument)
		err = c.DeleteState(ctxT(t), "no-such-store", "k", nil)
		expectCode(t, "DeleteState on an unknown store", err, codes.InvalidArgument)
		_, err = c.GetBulkState(ctxT(t), "no-such-store", []string{"k"}, nil, 1)
		expectCode(t, "GetBulkState on an unknown store", err, codes.InvalidArgument)
		err = c.ExecuteStateTransaction(ctxT(t), "no-such-store", nil, []*client.StateOperation{
			{Type: client.StateOperationTypeUpsert, Item: &client.SetStateItem{Key: "k", Value: []byte("v")}},
		})
		expectCode(t, "ExecuteStateTransaction on an unknown store", err, codes.InvalidArgument)
	})

	t.Run("Metadata", func(t *testing.T) {
		md, err := c.GetMetadata(ctxT(t))
		must(t, "GetMetadata", err)
		if md.ID != s.AppID {
			t.Errorf("GetMetadata ID = %q, want %q", md.ID, s.AppID)
		}
		var found bool
		for _, rc := range md.RegisteredComponents {
			if rc.Name != storeName {
				continue
			}
			found = true
			if rc.Type != st.Type || rc.Version != "v1" {
				t.Errorf("component %s: type %q version %q, want %q v1", rc.Name, rc.Type, rc.Version, st.Type)
			}
			for _, cap := range []string{"ETAG", "TRANSACTIONAL", "TTL", "ACTOR"} {
				if !slices.Contains(rc.Capabilities, cap) {
					t.Errorf("component %s capabilities %v lack %s", rc.Name, rc.Capabilities, cap)
				}
			}
		}
		if !found {
			t.Errorf("GetMetadata RegisteredComponents %+v lack %s", md.RegisteredComponents, storeName)
		}
	})
}
