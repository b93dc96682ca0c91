package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	cstate "github.com/mecha-dev/mecha/components/state"
)

// Reminder storage. Every reminder is its own record:
//
//	{appId}||{actorType}||{actorId}||reminder||{name}
//
// and a host finds the reminders of the actors it owns through an index
// spread over a fixed number of partition records per actor type:
//
//	{appId}||{actorType}||reminders||index||{p}     refs of actors hashing to p
//	{appId}||{actorType}||reminders||index||meta    {"partitions": P}
//
// so no value ever holds all the reminders of a type (daprd's historic
// scaling wall: one JSON document per type). Index records are updated
// with the reminder in one transaction, guarded by ETags, so hosts
// registering reminders at the same time do not lose each other's
// entries. Actor state keys have four segments and ids, types, names and
// keys never contain "||", so these keys cannot collide with state.

// reminderRecord is the stored form of a reminder, including where its
// schedule stands (next firing, firings left), so that it resumes on
// another host or after a restart.
type reminderRecord struct {
	ActorType  string          `json:"actorType"`
	ActorID    string          `json:"actorId"`
	Name       string          `json:"name"`
	Data       json.RawMessage `json:"data,omitempty"`
	DueTime    string          `json:"dueTime,omitempty"`
	Period     string          `json:"period,omitempty"`
	TTL        string          `json:"ttl,omitempty"`
	Registered time.Time       `json:"registeredTime"`
	Expiration *time.Time      `json:"expirationTime,omitempty"`
	Next       time.Time       `json:"nextFireTime"`
	// Left is the number of firings left; -1 is unlimited.
	Left int `json:"repetitionsLeft"`
}

func (r *reminderRecord) ref() ReminderRef {
	return ReminderRef{ActorType: r.ActorType, ActorID: r.ActorID, Name: r.Name}
}

// ReminderRef names a reminder.
type ReminderRef struct {
	ActorType string `json:"-"`
	ActorID   string `json:"id"`
	Name      string `json:"name"`
}

func (r ReminderRef) key() string { return r.ActorType + "||" + r.ActorID + "||" + r.Name }

// indexPartition is the value of one index record.
type indexPartition struct {
	Refs []ReminderRef `json:"refs"`
}

func (p *indexPartition) find(id, name string) int {
	for i, r := range p.Refs {
		if r.ActorID == id && r.Name == name {
			return i
		}
	}
	return -1
}

type indexMeta struct {
	Partitions int `json:"partitions"`
}

// reminderStore reads and writes reminder records and the index.
type reminderStore struct {
	appID string
	st    *actorStore
	// locks serialise this host's updates of an index partition, so that
	// ETag conflicts only arise between hosts.
	locks [64]sync.Mutex
	// parts caches each type's partition count.
	partsMu sync.Mutex
	parts   map[string]int
}

func (b *Block) reminderStore() (*reminderStore, error) {
	st, err := b.stateStore()
	if err != nil {
		return nil, err
	}
	b.rem.mu.Lock()
	defer b.rem.mu.Unlock()
	if b.rem.store == nil || b.rem.store.st != st {
		b.rem.store = &reminderStore{appID: b.appID, st: st, parts: map[string]int{}}
	}
	return b.rem.store, nil
}

func (s *reminderStore) recordKey(r ReminderRef) string {
	return s.appID + "||" + r.ActorType + "||" + r.ActorID + "||reminder||" + r.Name
}

func (s *reminderStore) indexKey(typ string, p int) string {
	return s.appID + "||" + typ + "||reminders||index||" + strconv.Itoa(p)
}

func (s *reminderStore) metaKey(typ string) string {
	return s.appID + "||" + typ + "||reminders||index||meta"
}

func partitionOf(id string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// get reads a reminder record; nil when there is none.
func (s *reminderStore) get(ctx context.Context, r ReminderRef) (*reminderRecord, string, error) {
	resp, err := s.st.s.Get(ctx, &cstate.GetRequest{Key: s.recordKey(r)})
	if err != nil {
		return nil, "", err
	}
	if resp.Data == nil {
		return nil, "", nil
	}
	var rec reminderRecord
	if err := json.Unmarshal(resp.Data, &rec); err != nil {
		return nil, "", fmt.Errorf("reminder record %s is corrupt: %w", s.recordKey(r), err)
	}
	return &rec, resp.ETag, nil
}

// partitions returns the type's partition count; with create, a missing
// meta record is created with want partitions (another host may win the
// race, whose count is then used).
func (s *reminderStore) partitions(ctx context.Context, typ string, want int, create bool) (int, error) {
	s.partsMu.Lock()
	n, ok := s.parts[typ]
	s.partsMu.Unlock()
	if ok {
		return n, nil
	}
	for range 5 {
		resp, err := s.st.s.Get(ctx, &cstate.GetRequest{Key: s.metaKey(typ)})
		if err != nil {
			return 0, err
		}
		if resp.Data != nil {
			var m indexMeta
			if err := json.Unmarshal(resp.Data, &m); err != nil || m.Partitions <= 0 {
				return 0, fmt.Errorf("reminder index of %s is corrupt", typ)
			}
			s.partsMu.Lock()
			s.parts[typ] = m.Partitions
			s.partsMu.Unlock()
			return m.Partitions, nil
		}
		if !create {
			return 0, nil
		}
		val, _ := json.Marshal(indexMeta{Partitions: want})
		set := &cstate.SetRequest{Key: s.metaKey(typ), Value: val}
		if s.st.etag {
			set.Options.Concurrency = cstate.FirstWrite
		}
		err = s.st.s.Set(ctx, set)
		if errors.Is(err, cstate.ErrETagMismatch) {
			continue // created by another host meanwhile
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, errors.New("could not create the reminder index")
}

// readIndex reads one partition with its ETag ("" when missing).
func (s *reminderStore) readIndex(ctx context.Context, typ string, p int) (*indexPartition, string, error) {
	resp, err := s.st.s.Get(ctx, &cstate.GetRequest{Key: s.indexKey(typ, p)})
	if err != nil {
		return nil, "", err
	}
	idx := &indexPartition{}
	if resp.Data != nil {
		if err := json.Unmarshal(resp.Data, idx); err != nil {
			return nil, "", fmt.Errorf("reminder index %s is corrupt: %w", s.indexKey(typ, p), err)
		}
	}
	return idx, resp.ETag, nil
}

// indexSet is the transaction step writing idx guarded by etag.
func (s *reminderStore) indexSet(typ string, p int, idx *indexPartition, etag string, existed bool) cstate.Operation {
	for i := range idx.Refs {
		idx.Refs[i].ActorType = typ
	}
	val, _ := json.Marshal(idx)
	set := &cstate.SetRequest{Key: s.indexKey(typ, p), Value: val}
	if s.st.etag {
		if existed {
			set.ETag = &etag
		} else {
			set.Options.Concurrency = cstate.FirstWrite
		}
	}
	return cstate.Operation{Set: set}
}

// put writes a record (creating its index entry when missing). With
// ifMatch non-nil, the record must still have that ETag ("" = must not
// exist); ErrETagMismatch otherwise.
func (s *reminderStore) put(ctx context.Context, rec *reminderRecord, partitions int, ifMatch *string) error {
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ref := rec.ref()
	p := partitionOf(rec.ActorID, partitions)
	lock := &s.locks[(partitionOf(rec.ActorType, 1<<16)*31+p)%len(s.locks)]
	lock.Lock()
	defer lock.Unlock()
	for range 20 {
		idx, etag, err := s.readIndex(ctx, ref.ActorType, p)
		if err != nil {
			return err
		}
		set := &cstate.SetRequest{Key: s.recordKey(ref), Value: val}
		if ifMatch != nil && s.st.etag {
			if *ifMatch == "" {
				set.Options.Concurrency = cstate.FirstWrite
			} else {
				set.ETag = ifMatch
			}
		}
		ops := []cstate.Operation{{Set: set}}
		if idx.find(ref.ActorID, ref.Name) < 0 {
			existed := etag != ""
			idx.Refs = append(idx.Refs, ref)
			ops = append(ops, s.indexSet(ref.ActorType, p, idx, etag, existed))
		}
		err = s.st.tx.Multi(ctx, &cstate.TransactionRequest{Operations: ops})
		if errors.Is(err, cstate.ErrETagMismatch) && len(ops) > 1 {
			// The index changed (another host), or the record did: tell
			// them apart by trying again.
			if ifMatch != nil {
				if _, cur, gerr := s.get(ctx, ref); gerr == nil && cur != *ifMatch {
					return cstate.ErrETagMismatch
				}
			}
			continue
		}
		return err
	}
	return errors.New("the reminder index kept changing; giving up")
}

// update rewrites an existing record guarded by its ETag (the index
// already has it).
func (s *reminderStore) update(ctx context.Context, rec *reminderRecord, etag string) error {
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	set := &cstate.SetRequest{Key: s.recordKey(rec.ref()), Value: val}
	if s.st.etag && etag != "" {
		set.ETag = &etag
	}
	return s.st.s.Set(ctx, set)
}

// remove deletes a record and its index entry. With etag non-empty, only
// when the record still has that ETag (ErrETagMismatch otherwise).
func (s *reminderStore) remove(ctx context.Context, ref ReminderRef, partitions int, etag string) error {
	p := partitionOf(ref.ActorID, partitions)
	lock := &s.locks[(partitionOf(ref.ActorType, 1<<16)*31+p)%len(s.locks)]
	lock.Lock()
	defer lock.Unlock()
	for range 20 {
		del := &cstate.DeleteRequest{Key: s.recordKey(ref)}
		if etag != "" && s.st.etag {
			del.ETag = &etag
		}
		ops := []cstate.Operation{{Delete: del}}
		idx, ietag, err := s.readIndex(ctx, ref.ActorType, p)
		if err != nil {
			return err
		}
		if i := idx.find(ref.ActorID, ref.Name); i >= 0 {
			idx.Refs = append(idx.Refs[:i], idx.Refs[i+1:]...)
			ops = append(ops, s.indexSet(ref.ActorType, p, idx, ietag, true))
		}
		err = s.st.tx.Multi(ctx, &cstate.TransactionRequest{Operations: ops})
		if errors.Is(err, cstate.ErrETagMismatch) {
			if etag != "" {
				if _, cur, gerr := s.get(ctx, ref); gerr == nil && cur != etag {
					return cstate.ErrETagMismatch
				}
			}
			continue
		}
		return err
	}
	return errors.New("the reminder index kept changing; giving up")
}

// scan calls fn with the refs of every partition of typ.
func (s *reminderStore) scan(ctx context.Context, typ string, fn func([]ReminderRef)) error {
	n, err := s.partitions(ctx, typ, 0, false)
	if err != nil || n == 0 {
		return err
	}
	if s.st.bulk != nil {
		keys := make([]string, n)
		for p := range n {
			keys[p] = s.indexKey(typ, p)
		}
		for start := 0; start < n; start += 64 {
			items, err := s.st.bulk.BulkGet(ctx, keys[start:min(start+64, n)], cstate.GetOptions{})
			if err != nil {
				return err
			}
			for _, it := range items {
				if it.Error != "" {
					return fmt.Errorf("reading %s: %s", it.Key, it.Error)
				}
				if it.Data == nil {
					continue
				}
				var idx indexPartition
				if err := json.Unmarshal(it.Data, &idx); err != nil {
					return fmt.Errorf("reminder index %s is corrupt: %w", it.Key, err)
				}
				fn(withType(idx.Refs, typ))
			}
		}
		return nil
	}
	for p := range n {
		idx, _, err := s.readIndex(ctx, typ, p)
		if err != nil {
			return err
		}
		fn(withType(idx.Refs, typ))
	}
	return nil
}

func withType(refs []ReminderRef, typ string) []ReminderRef {
	for i := range refs {
		refs[i].ActorType = typ
	}
	return refs
}
