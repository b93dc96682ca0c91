package state_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/mecha-dev/mecha/components"
	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/inmemory"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/state"
)

// plainStore hides the in-memory store's optional interfaces, to exercise the
// block's fallbacks.
type plainStore struct{ s cstate.Store }

func (p plainStore) Init(ctx context.Context, md components.Metadata) error { return p.s.Init(ctx, md) }
func (p plainStore) Features() []cstate.Feature                             { return []cstate.Feature{cstate.FeatureETag} }
func (p plainStore) Get(ctx context.Context, r *cstate.GetRequest) (*cstate.GetResponse, error) {
	return p.s.Get(ctx, r)
}
func (p plainStore) Set(ctx context.Context, r *cstate.SetRequest) error { return p.s.Set(ctx, r) }
func (p plainStore) Delete(ctx context.Context, r *cstate.DeleteRequest) error {
	return p.s.Delete(ctx, r)
}
func (p plainStore) Close() error { return p.s.Close() }

func newMem(t *testing.T) cstate.Store {
	s := inmemory.New(components.Deps{})
	if err := s.Init(context.Background(), components.Metadata{}); err != nil {
		t.Fatal(err)
	}
	return s
}

func md(kv ...string) components.Metadata {
	m := components.Metadata{Type: "state.test", Properties: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Properties[kv[i]] = kv[i+1]
	}
	return m
}

func wantKind(t *testing.T, err error, k apierr.Kind) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Kind != k {
		t.Fatalf("error = %v, want kind %s (%d/%s)", err, k.Code, k.HTTP, k.GRPC)
	}
}

func TestKeyPrefixStrategies(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		strategy, want string
	}{
		{"", "orders||k"},
		{"appid", "orders||k"},
		{"name", "store||k"},
		{"namespace", "prod.orders||k"},
		{"none", "k"},
		{"shared", "shared||k"},
	}
	for _, c := range cases {
		t.Run(c.strategy, func(t *testing.T) {
			mem := newMem(t)
			b := state.New("orders", "prod")
			props := []string{}
			if c.strategy != "" {
				props = []string{"keyPrefix", c.strategy}
			}
			if _, err := b.Add("store", mem, md(props...)); err != nil {
				t.Fatal(err)
			}
			if err := b.Save(ctx, "store", []state.SaveItem{{Key: "k", Value: []byte("1")}}); err != nil {
				t.Fatal(err)
			}
			resp, _ := mem.Get(ctx, &cstate.GetRequest{Key: c.want})
			if string(resp.Data) != "1" {
				t.Fatalf("stored key %q not found", c.want)
			}
			it, err := b.Get(ctx, state.GetRequest{Store: "store", Key: "k"})
			if err != nil || string(it.Data) != "1" || it.Key != "k" {
				t.Fatalf("Get = %+v, %v", it, err)
			}
		})
	}
	if _, err := state.New("a", "").Add("s", newMem(t), md("keyPrefix", "x||y")); err == nil {
		t.Fatal("keyPrefix containing || accepted")
	}
}

func TestFallbacksForPlainStores(t *testing.T) {
	ctx := context.Background()
	b := state.New("app", "")
	if _, err := b.Add("plain", plainStore{newMem(t)}, md()); err != nil {
		t.Fatal(err)
	}
	err := b.Transact(ctx, "plain", []state.Operation{{Type: "upsert", Item: state.SaveItem{Key: "k", Value: []byte("v")}}}, nil)
	wantKind(t, err, apierr.StateTxNotSupported)
	if k := apierr.From(err).Kind; k.HTTP != http.StatusInternalServerError || k.GRPC != codes.Unimplemented {
		t.Fatalf("mapping = %d/%s", k.HTTP, k.GRPC)
	}
	// Bulk get falls back to parallel Gets, in key order.
	if err := b.Save(ctx, "plain", []state.SaveItem{{Key: "a", Value: []byte("A")}, {Key: "c", Value: []byte("C")}}); err != nil {
		t.Fatal(err)
	}
	items, err := b.BulkGet(ctx, state.BulkGetRequest{Store: "plain", Keys: []string{"c", "b", "a"}, Parallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || string(items[0].Data) != "C" || items[1].Data != nil || string(items[2].Data) != "A" || items[0].Key != "c" {
		t.Fatalf("bulk = %+v", items)
	}
	// TTL on a store without the feature is refused before writing.
	err = b.Save(ctx, "plain", []state.SaveItem{{Key: "t", Value: []byte("1"), Metadata: map[string]string{"ttlInSeconds": "5"}}})
	wantKind(t, err, apierr.MalformedRequest)
	// An actor state store must be transactional.
	if _, err := b.Add("actors", plainStore{newMem(t)}, md("actorStateStore", "true")); err == nil {
		t.Fatal("non-transactional actor state store accepted")
	}
}

func TestTransactionLimitsAndValidation(t *testing.T) {
	ctx := context.Background()
	b := state.New("app", "")
	if _, err := b.Add("s", newMem(t), md("maxOperationsPerTransaction", "2")); err != nil {
		t.Fatal(err)
	}
	op := state.Operation{Type: "upsert", Item: state.SaveItem{Key: "k", Value: []byte("v")}}
	wantKind(t, b.Transact(ctx, "s", []state.Operation{op, op, op}, nil), apierr.StateTooManyTx)
	wantKind(t, b.Transact(ctx, "s", []state.Operation{{Type: "Upsert"}}, nil), apierr.StateNotSupportedOp)
	wantKind(t, b.Transact(ctx, "nope", nil, nil), apierr.StateStoreNotFound)
	// Invalid items are rejected before anything is written.
	err := b.Save(ctx, "s", []state.SaveItem{{Key: "ok", Value: []byte("1")}, {Key: ""}})
	wantKind(t, err, apierr.StateIllegalKey)
	if it, _ := b.Get(ctx, state.GetRequest{Store: "s", Key: "ok"}); it.Data != nil {
		t.Fatal("a save with an invalid item wrote the valid one")
	}
	// An empty etag means "no etag", as in Dapr.
	empty := ""
	if err := b.Save(ctx, "s", []state.SaveItem{{Key: "e", Value: []byte("1"), ETag: &empty}}); err != nil {
		t.Fatalf("empty etag: %v", err)
	}
	bad := "abc"
	wantKind(t, b.Save(ctx, "s", []state.SaveItem{{Key: "e", Value: []byte("2"), ETag: &bad}}), apierr.StateSaveETagInvalid)
	wantKind(t, b.Delete(ctx, state.DeleteRequest{Store: "s", Key: "e", ETag: &bad}), apierr.StateDeleteETagInvalid)
}
