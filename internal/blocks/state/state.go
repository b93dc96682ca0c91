// Package state is the state management building block: it resolves the
// store by name, applies Dapr's key scheme ("appid||key"), validates
// requests, maps component errors to API errors, and falls back where a store
// lacks an optional ability (bulk reads).
//
// It knows nothing about HTTP or gRPC: both transports call the same methods.
package state

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// Separator joins key prefix and key, as in Dapr.
const Separator = "||"

// Block serves the state API over the registered stores.
type Block struct {
	appID     string
	namespace string

	mu     sync.RWMutex
	stores map[string]*Store
	// res supplies the stores' outbound resiliency policies (nil: none).
	res *resiliency.Provider
	// observe is told about every operation (nil: nothing is).
	observe Observer
}

// Store is one registered state store with the runtime's view of it.
type Store struct {
	Name     string
	Store    cstate.Store
	Features []cstate.Feature
	tx       cstate.Transactional
	bulk     cstate.BulkGetter
	prefix   string // "" = no prefix
	maxOps   int    // 0 = unlimited
}

// New returns a block for appID in namespace.
func New(appID, namespace string) *Block {
	return &Block{appID: appID, namespace: namespace, stores: map[string]*Store{}}
}

// Add registers an initialised store under name. md is the component's
// metadata, from which the runtime-level keys keyPrefix and actorStateStore
// are read.
func (b *Block) Add(name string, s cstate.Store, md components.Metadata) (*Store, error) {
	st := &Store{Name: name, Store: s, Features: s.Features()}
	st.tx, _ = s.(cstate.Transactional)
	st.bulk, _ = s.(cstate.BulkGetter)
	prefix, err := keyPrefix(md.String("keyPrefix", "appid"), name, b.appID, b.namespace)
	if err != nil {
		return nil, err
	}
	st.prefix = prefix
	if st.maxOps, err = md.Int("maxOperationsPerTransaction", 0); err != nil {
		return nil, err
	}
	actor, err := md.Bool("actorStateStore", false)
	if err != nil {
		return nil, err
	}
	if actor {
		if st.tx == nil {
			return nil, fmt.Errorf("actorStateStore is true but %s does not support transactions", md.Type)
		}
		st.Features = append(append([]cstate.Feature(nil), st.Features...), cstate.FeatureActor)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.stores[name]; dup {
		return nil, fmt.Errorf("state store %s is already registered", name)
	}
	b.stores[name] = st
	return st, nil
}

// keyPrefix implements Dapr's keyPrefix strategies.
func keyPrefix(strategy, storeName, appID, namespace string) (string, error) {
	var p string
	switch strings.ToLower(strategy) {
	case "appid":
		p = appID
	case "name":
		p = storeName
	case "namespace":
		if namespace != "" {
			p = namespace + "." + appID
		} else {
			p = appID
		}
	case "none":
		return "", nil
	default:
		p = strategy
	}
	if strings.Contains(p, Separator) {
		return "", fmt.Errorf("keyPrefix %q must not contain %q", p, Separator)
	}
	return p, nil
}

// Names lists the registered stores, sorted.
func (b *Block) Names() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]string, 0, len(b.stores))
	for n := range b.stores {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Close closes every store.
func (b *Block) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for n, s := range b.stores {
		if err := s.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close state store %s: %w", n, err))
		}
	}
	b.stores = map[string]*Store{}
	return errors.Join(errs...)
}

func (b *Block) store(name string) (*Store, error) {
	b.mu.RLock()
	s, ok := b.stores[name]
	n := len(b.stores)
	b.mu.RUnlock()
	if ok {
		return s, nil
	}
	if n == 0 {
		return nil, apierr.StateStoreNotConfigured.New("state store is not configured").WithMetadata("appID", b.appID)
	}
	if name == "" {
		return nil, apierr.StateStoreNotFound.New("state store name is empty").WithMetadata("appID", b.appID)
	}
	return nil, apierr.StateStoreNotFound.New("state store %s is not found", name).WithMetadata("appID", b.appID)
}

func (s *Store) fullKey(key string) (string, error) {
	if key == "" {
		return "", apierr.StateIllegalKey.New("key is empty").WithField("key")
	}
	if strings.Contains(key, Separator) {
		return "", apierr.StateIllegalKey.New("input key/keyPrefix '%s' can't contain '%s'", key, Separator).WithField(key)
	}
	if s.prefix == "" {
		return key, nil
	}
	return s.prefix + Separator + key, nil
}

// Options are the per-item options as they arrive on the wire.
type Options struct {
	Concurrency string
	Consistency string
}

func parseConsistency(v string) (cstate.Consistency, error) {
	switch strings.ToLower(v) {
	case "":
		return "", nil
	case "eventual":
		return cstate.Eventual, nil
	case "strong":
		return cstate.Strong, nil
	}
	return "", apierr.MalformedRequest.New("consistency %q is not supported: use eventual or strong", v).WithField("consistency")
}

func parseWriteOptions(o Options) (cstate.WriteOptions, error) {
	var w cstate.WriteOptions
	switch strings.ToLower(o.Concurrency) {
	case "":
	case "first-write":
		w.Concurrency = cstate.FirstWrite
	case "last-write":
		w.Concurrency = cstate.LastWrite
	default:
		return w, apierr.MalformedRequest.New("concurrency %q is not supported: use first-write or last-write", o.Concurrency).WithField("concurrency")
	}
	c, err := parseConsistency(o.Consistency)
	w.Consistency = c
	return w, err
}

// ttl reads metadata ttlInSeconds: -1 means "never expire", a positive
// number of seconds sets the TTL.
func (s *Store) ttl(md map[string]string) (time.Duration, error) {
	v, ok := md["ttlInSeconds"]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < -1 || n == 0 || n > 1<<31 {
		return 0, apierr.MalformedRequest.New("metadata ttlInSeconds %q must be a positive integer or -1", v).WithField("metadata.ttlInSeconds")
	}
	if !cstate.Has(s.Features, cstate.FeatureTTL) {
		return 0, apierr.MalformedRequest.New("state store %s does not support TTL", s.Name).WithField("metadata.ttlInSeconds")
	}
	if n == -1 {
		return 0, nil
	}
	return time.Duration(n) * time.Second, nil
}

func etagPtr(e *string) *string {
	if e == nil || *e == "" {
		return nil
	}
	return e
}
