// Package configuration is the configuration building block: it reads items
// from configuration stores and owns the subscriptions whose updates reach
// the app, over either transport:
//
//   - HTTP subscriptions (SubscribeApp) are delivered by the block itself to
//     the app as POST /configuration/{store}/{key}, one request per changed
//     key with the whole update as body, as daprd does; they wait until the
//     app is ready and are delivered in order, one at a time per
//     subscription.
//   - gRPC subscriptions (SubscribeStream) hand their updates, in order, to
//     the SubscribeConfiguration stream that asked for them, and end with it.
//
// Either kind ends on Unsubscribe (from either transport: the ids are the
// block's), StopSubscriptions or Close. Every subscription owns a queue and
// at most one goroutine, and all of them are gone once Close returns.
//
// It knows nothing about HTTP or gRPC servers: both transports call the same
// methods and map the returned *apierr.Error values.
package configuration

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	cconfig "github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/compset"
	"github.com/mecha-dev/mecha/internal/channel"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// Item is a configuration item as the API shows it.
type Item = cconfig.Item

// Block serves the configuration API.
type Block struct {
	stores *compset.Set[cconfig.Store]
	app    *channel.App // nil when the sidecar has no app port
	log    *slog.Logger

	mu      sync.Mutex
	subs    map[subKey]*subscription
	stopped bool // StopSubscriptions or Close was called

	wg        sync.WaitGroup // delivery goroutines
	closeOnce sync.Once
	closeErr  error

	// res supplies the stores' outbound resiliency policies (nil: none).
	res *resiliency.Provider
	// observe is told about every store call (nil: nothing is).
	observe Observer
}

// New returns an empty block; app may be nil.
func New(app *channel.App, log *slog.Logger) *Block {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Block{stores: compset.New[cconfig.Store](), app: app, log: log, subs: map[subKey]*subscription{}}
}

// Add registers an initialised configuration store.
func (b *Block) Add(name string, s cconfig.Store) error { return b.stores.Add(name, s) }

// StopSubscriptions ends every subscription: gRPC streams finish, HTTP
// deliveries stop, and new subscriptions are refused. Stores stay open for
// reads. The runtime calls it at the start of a shutdown, so that open
// SubscribeConfiguration streams do not hold up the gRPC server's graceful
// stop.
func (b *Block) StopSubscriptions() {
	b.mu.Lock()
	b.stopped = true
	subs := make([]*subscription, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() { b.stop(s) })
	}
	wg.Wait()
	b.wg.Wait()
}

// Close ends every subscription, waits for their goroutines and closes
// every store. It is idempotent.
func (b *Block) Close() error {
	b.closeOnce.Do(func() {
		b.StopSubscriptions()
		b.closeErr = b.stores.Close()
	})
	return b.closeErr
}

// store resolves a store name as daprd does: no stores at all is a
// precondition failure, an unknown name a bad request.
func (b *Block) store(name string) (cconfig.Store, error) {
	if b.stores.Len() == 0 {
		return nil, apierr.ConfigurationStoreNotConfigured.New("configuration stores not configured")
	}
	s, ok := b.stores.Get(name)
	if !ok {
		return nil, apierr.ConfigurationStoreNotFound.New("configuration store %s not found", name)
	}
	return s, nil
}

// GetRequest reads items from Store; no Keys means every item.
type GetRequest struct {
	Store    string
	Keys     []string
	Metadata map[string]string
}

// Get reads items. An empty result is not an error.
func (b *Block) Get(ctx context.Context, req GetRequest) (map[string]*Item, error) {
	s, err := b.store(req.Store)
	if err != nil {
		return nil, err
	}
	var items map[string]*cconfig.Item
	err = b.observed(req.Store, opGet, func() error {
		return b.res.ComponentOutbound(req.Store, resiliency.Configuration).Run(ctx, func(ctx context.Context) (err error) {
			items, err = s.Get(ctx, cconfig.GetRequest{Keys: req.Keys, Metadata: req.Metadata})
			return err
		})
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return nil, apierr.From(ctxErr)
		}
		return nil, apierr.ConfigurationGet.Wrap(err, "failed to get %v from Configuration store %s", keyList(req.Keys), req.Store)
	}
	if items == nil {
		items = map[string]*Item{}
	}
	return items, nil
}

// keyList formats keys as daprd's messages do ("[a b]").
func keyList(keys []string) []string {
	if keys == nil {
		return []string{}
	}
	return keys
}

// SetResiliency makes calls to the stores go through their outbound
// resiliency policies. Call it before the block serves; nil (the default)
// applies none.
func (b *Block) SetResiliency(p *resiliency.Provider) { b.res = p }

// Observer is told about every call the block makes to a store: the
// store, daprd's operation name (get, subscribe, unsubscribe), whether it
// succeeded and how long it took (metrics). Every end of a subscription
// tells its store, and is an unsubscribe: by the API, by a closed gRPC
// stream, or at shutdown. Requests that name no loaded store never reach
// one and are not observed.
type Observer func(store, op string, success bool, elapsed time.Duration)

// SetObserver sets the block's Observer. Call it before the block serves;
// nil (the default) observes nothing.
func (b *Block) SetObserver(o Observer) { b.observe = o }

// Operation names, as daprd's metrics label them.
const (
	opGet         = "get"
	opSubscribe   = "subscribe"
	opUnsubscribe = "unsubscribe"
)

// observed runs fn, one call to store, and observes it as op: the one
// place the block's store calls go through.
func (b *Block) observed(store, op string, fn func() error) error {
	if b.observe == nil {
		return fn()
	}
	start := time.Now()
	err := fn()
	b.observe(store, op, err == nil, time.Since(start))
	return err
}
