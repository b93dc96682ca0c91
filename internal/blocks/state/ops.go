package state

import (
	"context"
	"errors"
	"sync"
	"time"

	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/apierr"
)

// GetRequest reads one key.
type GetRequest struct {
	Store       string
	Key         string
	Consistency string
	Metadata    map[string]string
}

// Item is a value read from a store. Data is nil when the key is missing.
type Item struct {
	Key  string
	Data []byte
	ETag string
	// Metadata holds response metadata such as ttlExpireTime.
	Metadata map[string]string
	// Error is set for a key that failed alone in a bulk read.
	Error string
}

// Get reads one key.
func (b *Block) Get(ctx context.Context, req GetRequest) (*Item, error) {
	s, err := b.store(req.Store)
	if err != nil {
		return nil, err
	}
	k, err := s.fullKey(req.Key)
	if err != nil {
		return nil, err
	}
	cons, err := parseConsistency(req.Consistency)
	if err != nil {
		return nil, err
	}
	var resp *cstate.GetResponse
	err = b.call(ctx, req.Store, opGet, func(ctx context.Context) (err error) {
		resp, err = s.Store.Get(ctx, &cstate.GetRequest{Key: k, GetOptions: cstate.GetOptions{Consistency: cons, Metadata: req.Metadata}})
		return err
	})
	if err != nil {
		return nil, apierr.StateGet.Wrap(err, "fail to get %s from state store %s", req.Key, req.Store)
	}
	return &Item{Key: req.Key, Data: resp.Data, ETag: resp.ETag, Metadata: expireMetadata(resp.ExpireTime)}, nil
}

func expireMetadata(t *time.Time) map[string]string {
	if t == nil {
		return nil
	}
	return map[string]string{"ttlExpireTime": t.UTC().Format(time.RFC3339)}
}

// BulkGetRequest reads many keys.
type BulkGetRequest struct {
	Store       string
	Keys        []string
	Parallelism int
	Metadata    map[string]string
}

// BulkGet reads many keys; a key that fails alone is reported in its Item,
// an invalid key fails the whole request. Items come back in the order of
// the keys.
func (b *Block) BulkGet(ctx context.Context, req BulkGetRequest) ([]Item, error) {
	s, err := b.store(req.Store)
	if err != nil {
		return nil, err
	}
	out := make([]Item, len(req.Keys))
	full := make([]string, len(req.Keys))
	for i, k := range req.Keys {
		out[i].Key = k
		if full[i], err = s.fullKey(k); err != nil {
			return nil, err
		}
	}
	opts := cstate.GetOptions{Metadata: req.Metadata}
	err = b.perform(ctx, req.Store, opBulkGet, func(ctx context.Context) error {
		if s.bulk != nil {
			return b.bulkGet(ctx, s, full, opts, out)
		}
		b.getEach(ctx, s, full, opts, req.Parallelism, out)
		return nil
	})
	if err != nil {
		return nil, apierr.StateBulkGet.Wrap(err, "failed to get keys from state store %s", req.Store)
	}
	return out, nil
}

// bulkGet reads the keys full with the store's own bulk read into out.
func (b *Block) bulkGet(ctx context.Context, s *Store, full []string, opts cstate.GetOptions, out []Item) error {
	var items []cstate.BulkItem
	err := b.run(ctx, s.Name, func(ctx context.Context) (err error) {
		items, err = s.bulk.BulkGet(ctx, full, opts)
		return err
	})
	if err != nil {
		return err
	}
	byKey := make(map[string]*cstate.BulkItem, len(items))
	for i := range items {
		byKey[items[i].Key] = &items[i]
	}
	for j, fk := range full {
		if it := byKey[fk]; it != nil {
			o := &out[j]
			o.Data, o.ETag, o.Error, o.Metadata = it.Data, it.ETag, it.Error, expireMetadata(it.ExpireTime)
		}
	}
	return nil
}

// getEach reads the keys full one by one, par at a time (at most 100), for
// a store without a bulk read; a key that fails has its Error set.
func (b *Block) getEach(ctx context.Context, s *Store, full []string, opts cstate.GetOptions, par int, out []Item) {
	if par <= 0 || par > 100 {
		par = 100
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for j, fk := range full {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o := &out[j]
			var resp *cstate.GetResponse
			err := b.run(ctx, s.Name, func(ctx context.Context) (err error) {
				resp, err = s.Store.Get(ctx, &cstate.GetRequest{Key: fk, GetOptions: opts})
				return err
			})
			if err != nil {
				o.Error = err.Error()
				return
			}
			o.Data, o.ETag, o.Metadata = resp.Data, resp.ETag, expireMetadata(resp.ExpireTime)
		})
	}
	wg.Wait()
}

// SaveItem is one key to write.
type SaveItem struct {
	Key      string
	Value    []byte
	ETag     *string
	Metadata map[string]string
	Options  Options
}

// Save writes items. They are validated first (nothing is written when one
// item is invalid) and then written one by one; the first failure is
// returned.
func (b *Block) Save(ctx context.Context, store string, items []SaveItem) error {
	s, err := b.store(store)
	if err != nil {
		return err
	}
	reqs := make([]cstate.SetRequest, len(items))
	for i, it := range items {
		if reqs[i], err = s.setRequest(it); err != nil {
			return err
		}
	}
	if len(reqs) == 0 {
		return nil // no store call: nothing to trace or count
	}
	failed, err := performEach(ctx, b, store, opSet, reqs, s.Store.Set)
	if err != nil {
		return saveError(err, store, items[failed].Key)
	}
	return nil
}

func (s *Store) setRequest(it SaveItem) (cstate.SetRequest, error) {
	k, err := s.fullKey(it.Key)
	if err != nil {
		return cstate.SetRequest{}, err
	}
	opts, err := parseWriteOptions(it.Options)
	if err != nil {
		return cstate.SetRequest{}, err
	}
	ttl, err := s.ttl(it.Metadata)
	if err != nil {
		return cstate.SetRequest{}, err
	}
	return cstate.SetRequest{Key: k, Value: it.Value, ETag: etagPtr(it.ETag), TTL: ttl, Options: opts, Metadata: it.Metadata}, nil
}

func saveError(err error, store, key string) error {
	switch {
	case errors.Is(err, cstate.ErrETagMismatch):
		return apierr.StateSaveETagMismatch.Wrap(err, "failed saving state in state store %s (key %s)", store, key)
	case errors.Is(err, cstate.ErrETagInvalid):
		return apierr.StateSaveETagInvalid.Wrap(err, "failed saving state in state store %s (key %s)", store, key)
	}
	return apierr.StateSave.Wrap(err, "failed saving state in state store %s", store)
}

// DeleteRequest removes one key.
type DeleteRequest struct {
	Store    string
	Key      string
	ETag     *string
	Metadata map[string]string
	Options  Options
}

// Delete removes one key.
func (b *Block) Delete(ctx context.Context, req DeleteRequest) error {
	s, err := b.store(req.Store)
	if err != nil {
		return err
	}
	dr, err := s.deleteRequest(req)
	if err != nil {
		return err
	}
	err = b.call(ctx, req.Store, opDelete, func(ctx context.Context) error { return s.Store.Delete(ctx, &dr) })
	if err != nil {
		return deleteError(err, req.Key)
	}
	return nil
}

// DeleteBulk removes several keys, validating all of them first.
func (b *Block) DeleteBulk(ctx context.Context, store string, reqs []DeleteRequest) error {
	s, err := b.store(store)
	if err != nil {
		return err
	}
	drs := make([]cstate.DeleteRequest, len(reqs))
	for i, r := range reqs {
		if drs[i], err = s.deleteRequest(r); err != nil {
			return err
		}
	}
	if len(drs) == 0 {
		return nil
	}
	failed, err := performEach(ctx, b, store, opBulkDelete, drs, s.Store.Delete)
	if err != nil {
		return deleteError(err, reqs[failed].Key)
	}
	return nil
}

func (s *Store) deleteRequest(req DeleteRequest) (cstate.DeleteRequest, error) {
	k, err := s.fullKey(req.Key)
	if err != nil {
		return cstate.DeleteRequest{}, err
	}
	opts, err := parseWriteOptions(req.Options)
	if err != nil {
		return cstate.DeleteRequest{}, err
	}
	return cstate.DeleteRequest{Key: k, ETag: etagPtr(req.ETag), Options: opts, Metadata: req.Metadata}, nil
}

func deleteError(err error, key string) error {
	switch {
	case errors.Is(err, cstate.ErrETagMismatch):
		return apierr.StateDeleteETagMismatch.Wrap(err, "failed deleting state with key %s", key)
	case errors.Is(err, cstate.ErrETagInvalid):
		return apierr.StateDeleteETagInvalid.Wrap(err, "failed deleting state with key %s", key)
	}
	return apierr.StateDelete.Wrap(err, "failed deleting state with key %s", key)
}

// Operation is one transaction step as it arrives on the wire: Type is
// "upsert" or "delete".
type Operation struct {
	Type string
	Item SaveItem
}

// Transact applies operations atomically.
func (b *Block) Transact(ctx context.Context, store string, ops []Operation, md map[string]string) error {
	s, err := b.store(store)
	if err != nil {
		return err
	}
	if s.tx == nil {
		return apierr.StateTxNotSupported.New("state store %s doesn't support transactions", store).WithResource("state", store)
	}
	if s.maxOps > 0 && len(ops) > s.maxOps {
		return apierr.StateTooManyTx.New("the transaction contains %d operations, which is more than what the state store supports: %d", len(ops), s.maxOps)
	}
	tr := &cstate.TransactionRequest{Operations: make([]cstate.Operation, len(ops)), Metadata: md}
	for i, op := range ops {
		switch op.Type {
		case "upsert":
			r, err := s.setRequest(op.Item)
			if err != nil {
				return err
			}
			tr.Operations[i].Set = &r
		case "delete":
			r, err := s.deleteRequest(DeleteRequest{Key: op.Item.Key, ETag: op.Item.ETag, Metadata: op.Item.Metadata, Options: op.Item.Options})
			if err != nil {
				return err
			}
			tr.Operations[i].Delete = &r
		default:
			return apierr.StateNotSupportedOp.New("operation type %s not supported", op.Type)
		}
	}
	err = b.call(ctx, store, opTransaction, func(ctx context.Context) error { return s.tx.Multi(ctx, tr) })
	if err != nil {
		switch {
		case errors.Is(err, cstate.ErrETagMismatch):
			return apierr.StateTransactionETag.Wrap(err, "error while executing state transaction")
		case errors.Is(err, cstate.ErrETagInvalid):
			return apierr.StateTransactionInvalid.Wrap(err, "error while executing state transaction")
		}
		return apierr.StateTransaction.Wrap(err, "error while executing state transaction")
	}
	return nil
}

// Ping checks every store that can be pinged.
func (b *Block) Ping(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var errs []error
	for n, s := range b.stores {
		if p, ok := s.Store.(cstate.Pinger); ok {
			if err := p.Ping(ctx); err != nil {
				errs = append(errs, apierr.StateGet.Wrap(err, "state store %s", n))
			}
		}
	}
	return errors.Join(errs...)
}
