package actors

import (
	"context"
	"strconv"
	"strings"
	"time"

	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/apierr"
)

// actorStore is the actor state store with its optional abilities.
type actorStore struct {
	name string
	s    cstate.Store
	tx   cstate.Transactional
	bulk cstate.BulkGetter
	etag bool
	ttl  bool
}

func newActorStore(name string, s cstate.Store) *actorStore {
	st := &actorStore{name: name, s: s}
	st.tx, _ = s.(cstate.Transactional)
	st.bulk, _ = s.(cstate.BulkGetter)
	f := s.Features()
	st.etag = cstate.Has(f, cstate.FeatureETag)
	st.ttl = cstate.Has(f, cstate.FeatureTTL)
	return st
}

// stateStore returns the actor state store or daprd's error for its
// absence.
func (b *Block) stateStore() (*actorStore, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.storeErr != nil {
		return nil, apierr.ActorRuntimeNotFound.New("%s", b.storeErr.Error())
	}
	if b.store == nil || b.store.tx == nil {
		return nil, apierr.ActorRuntimeNotFound.New(`the state store is not configured to use the actor runtime. Have you set the - name: actorStateStore value: "true" in your state store component file?`)
	}
	return b.store, nil
}

// stateKey is Dapr's actor state key: {appId}||{actorType}||{actorId}||{key}.
func (b *Block) stateKey(typ, id, key string) string {
	return b.appID + "||" + typ + "||" + id + "||" + key
}

// StateItem is a read actor state value.
type StateItem struct {
	// Data is nil for a missing key.
	Data []byte
	// Metadata carries ttlExpireTime for values written with a TTL.
	Metadata map[string]string
}

func checkStateKey(key string) error {
	if strings.Contains(key, "||") {
		return apierr.StateIllegalKey.New("input key/keyPrefix '%s' can't contain '||'", key).WithField("key")
	}
	return nil
}

// GetState reads one key of an actor's state. The actor does not need to
// be active (as in daprd).
func (b *Block) GetState(ctx context.Context, typ, id, key string) (*StateItem, error) {
	if err := validateActor(typ, id); err != nil {
		return nil, err
	}
	if err := checkStateKey(key); err != nil {
		return nil, err
	}
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	st, err := b.stateStore()
	if err != nil {
		return nil, err
	}
	if err := b.gate.wait(ctx); err != nil {
		return nil, apierr.From(err)
	}
	resp, err := st.s.Get(ctx, &cstate.GetRequest{Key: b.stateKey(typ, id, key)})
	if err != nil {
		return nil, apierr.ActorStateGet.Wrap(err, "error getting actor state")
	}
	item := &StateItem{Data: resp.Data}
	if resp.ExpireTime != nil && resp.Data != nil {
		item.Metadata = map[string]string{"ttlExpireTime": resp.ExpireTime.UTC().Format(time.RFC3339)}
	}
	return item, nil
}

// StateOperation is one step of an actor state transaction.
type StateOperation struct {
	// Operation is "upsert" or "delete".
	Operation string
	Key       string
	// Value is the stored bytes (raw JSON over HTTP, the Any's bytes over
	// gRPC).
	Value []byte
	// Metadata may carry ttlInSeconds.
	Metadata map[string]string
}

// TransactState applies operations to an actor's state atomically. The
// actor must be active on this host (daprd's ERR_ACTOR_INSTANCE_MISSING
// otherwise): state is written from within the actor's turn.
func (b *Block) TransactState(ctx context.Context, typ, id string, ops []StateOperation) error {
	if err := validateActor(typ, id); err != nil {
		return err
	}
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	st, err := b.stateStore()
	if err != nil {
		return err
	}
	if err := b.gate.wait(ctx); err != nil {
		return apierr.From(err)
	}
	if b.table.get(typ, id) == nil {
		return apierr.ActorInstanceMissing.New("actor instance is missing")
	}
	req := &cstate.TransactionRequest{Operations: make([]cstate.Operation, 0, len(ops))}
	for _, op := range ops {
		if op.Key == "" {
			return apierr.ActorStateTransactionSave.New("error saving actor transaction state: missing key")
		}
		if err := checkStateKey(op.Key); err != nil {
			return err
		}
		key := b.stateKey(typ, id, op.Key)
		switch strings.ToLower(op.Operation) {
		case "upsert":
			ttl, err := st.stateTTL(op.Metadata)
			if err != nil {
				return err
			}
			req.Operations = append(req.Operations, cstate.Operation{Set: &cstate.SetRequest{Key: key, Value: op.Value, TTL: ttl}})
		case "delete":
			req.Operations = append(req.Operations, cstate.Operation{Delete: &cstate.DeleteRequest{Key: key}})
		case "":
			return apierr.ActorStateTransactionSave.New("error saving actor transaction state: operation is empty")
		default:
			return apierr.ActorStateOpNotSupported.New("operation type %s not supported", op.Operation)
		}
	}
	if len(req.Operations) == 0 {
		return nil
	}
	if err := st.tx.Multi(ctx, req); err != nil {
		return apierr.ActorStateTransactionSave.Wrap(err, "error saving actor transaction state")
	}
	return nil
}

// stateTTL reads metadata ttlInSeconds (-1: no expiry).
func (st *actorStore) stateTTL(md map[string]string) (time.Duration, error) {
	v, ok := md["ttlInSeconds"]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < -1 || n == 0 || n > 1<<31 {
		return 0, apierr.ActorStateTransactionSave.New("error saving actor transaction state: metadata ttlInSeconds %q must be a positive integer or -1", v)
	}
	if n == -1 {
		return 0, nil
	}
	if !st.ttl {
		return 0, apierr.ActorStateTransactionSave.New("error saving actor transaction state: state store %s does not support TTL", st.name)
	}
	return time.Duration(n) * time.Second, nil
}
