package configuration

import (
	"context"
	"errors"
	"time"

	cconfig "github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/internal/apierr"
)

const (
	// queueSize bounds the updates waiting for one subscription's consumer
	// (the app or the gRPC stream); when it is full the store's watcher
	// waits, so a slow app slows its own subscription and nothing is lost or
	// grows without bound.
	queueSize = 256
	// unsubscribeTimeout bounds a store's Unsubscribe when the block ends a
	// subscription.
	unsubscribeTimeout = 10 * time.Second
)

// SubscribeRequest watches Keys of Store; no Keys means every key.
type SubscribeRequest struct {
	Store    string
	Keys     []string
	Metadata map[string]string
}

type subKey struct{ store, id string }

// subscription is one subscription the block owns.
type subscription struct {
	key    subKey
	store  cconfig.Store
	events chan *cconfig.UpdateEvent
	// ctx is the subscription's lifetime, handed to the store; cancel ends it.
	ctx    context.Context
	cancel context.CancelFunc
	// delivered is closed when the delivery goroutine (HTTP subscriptions)
	// has returned; nil for streams.
	delivered chan struct{}
	stopOnce  chanOnce
}

// chanOnce runs a stop once and lets every caller wait for it.
type chanOnce struct {
	started chan struct{}
	done    chan struct{}
}

func newSubscription(store cconfig.Store) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	return &subscription{
		store:    store,
		events:   make(chan *cconfig.UpdateEvent, queueSize),
		ctx:      ctx,
		cancel:   cancel,
		stopOnce: chanOnce{started: make(chan struct{}, 1), done: make(chan struct{})},
	}
}

// handle is the store's UpdateHandler: it queues the update, waiting while
// the queue is full, until the subscription ends.
func (s *subscription) handle(ctx context.Context, e *cconfig.UpdateEvent) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if e == nil || len(e.Items) == 0 {
		return nil
	}
	select {
	case s.events <- e:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subscribe starts a subscription on the store; the request ctx bounds the
// store's Subscribe call, not the subscription. With toApp, a delivery
// goroutine sends the updates to the app.
func (b *Block) subscribe(ctx context.Context, req SubscribeRequest, comp cconfig.Store, toApp bool) (*subscription, error) {
	sub := newSubscription(comp)
	sub.key.store = req.Store
	// A request abandoned while the store sets the subscription up cancels
	// the setup.
	abandon := context.AfterFunc(ctx, sub.cancel)
	var id string
	err := b.observed(req.Store, opSubscribe, func() (err error) {
		id, err = comp.Subscribe(sub.ctx, cconfig.SubscribeRequest{Keys: req.Keys, Metadata: req.Metadata}, sub.handle)
		return err
	})
	if !abandon() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		sub.cancel()
		if id != "" {
			b.unsubscribeStore(sub, id)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, apierr.From(ctxErr)
		}
		return nil, apierr.ConfigurationSubscribe.Wrap(err, "failed to subscribe %v from Configuration store %s", keyList(req.Keys), req.Store)
	}
	sub.key = subKey{store: req.Store, id: id}
	b.mu.Lock()
	_, dup := b.subs[sub.key]
	if b.stopped || dup {
		b.mu.Unlock()
		sub.cancel()
		b.unsubscribeStore(sub, id)
		if dup {
			return nil, apierr.ConfigurationSubscribe.New("failed to subscribe %v from Configuration store %s: the store returned the id %s of a live subscription", keyList(req.Keys), req.Store, id)
		}
		return nil, apierr.ConfigurationSubscribe.New("failed to subscribe %v from Configuration store %s: the sidecar is shutting down", keyList(req.Keys), req.Store)
	}
	b.subs[sub.key] = sub
	if toApp {
		// Started under b.mu with stopped false: StopSubscriptions, which
		// sets stopped under b.mu before waiting on b.wg, sees it.
		sub.delivered = make(chan struct{})
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer close(sub.delivered)
			b.deliverLoop(sub)
		}()
	}
	b.mu.Unlock()
	return sub, nil
}

// unsubscribeStore tells the store the subscription is over; one the store
// already ended on its own is not an error.
func (b *Block) unsubscribeStore(sub *subscription, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
	defer cancel()
	err := b.observed(sub.key.store, opUnsubscribe, func() error {
		if err := sub.store.Unsubscribe(ctx, id); !errors.Is(err, cconfig.ErrSubscriptionNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		b.log.Warn("configuration store failed to end a subscription", "store", sub.key.store, "subscription", id, "error", err)
	}
}

// stop ends sub: its context (so a queued or in-flight delivery is
// abandoned and the store's handler returns), the store's side, the
// delivery goroutine. Every caller returns once it is fully stopped.
func (b *Block) stop(sub *subscription) {
	select {
	case sub.stopOnce.started <- struct{}{}:
	default:
		<-sub.stopOnce.done
		return
	}
	sub.cancel()
	b.unsubscribeStore(sub, sub.key.id)
	if sub.delivered != nil {
		<-sub.delivered
	}
	b.mu.Lock()
	if b.subs[sub.key] == sub {
		delete(b.subs, sub.key)
	}
	b.mu.Unlock()
	close(sub.stopOnce.done)
}

// unsubscribeError is daprd's text for a failed unsubscribe.
func unsubscribeError(id string) error {
	return apierr.ConfigurationUnsubscribe.New("failed to unsubscribe to configuration request %s: %v", id, cconfig.ErrSubscriptionNotFound)
}

// Unsubscribe ends the subscription id of store, whichever transport made
// it. The store name is resolved first, as daprd's HTTP API does.
func (b *Block) Unsubscribe(_ context.Context, store, id string) error {
	if _, err := b.store(store); err != nil {
		return err
	}
	b.mu.Lock()
	sub := b.subs[subKey{store: store, id: id}]
	b.mu.Unlock()
	if sub == nil {
		return unsubscribeError(id)
	}
	b.stop(sub)
	return nil
}

// UnsubscribeID ends the subscription id, looking in store first and then
// in every store: daprd's gRPC UnsubscribeConfiguration goes by the id
// alone.
func (b *Block) UnsubscribeID(_ context.Context, store, id string) error {
	b.mu.Lock()
	sub := b.subs[subKey{store: store, id: id}]
	if sub == nil {
		for k, s := range b.subs {
			if k.id == id {
				sub = s
				break
			}
		}
	}
	b.mu.Unlock()
	if sub == nil {
		return unsubscribeError(id)
	}
	b.stop(sub)
	return nil
}

// Subscriptions is the number of live subscriptions.
func (b *Block) Subscriptions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Stream is a subscription consumed by the caller (the gRPC
// SubscribeConfiguration stream).
type Stream struct {
	// ID is the subscription id.
	ID  string
	b   *Block
	sub *subscription
}

// SubscribeStream starts a subscription whose updates the caller reads from
// Updates until Done is closed; the caller must call Close when it stops
// reading.
func (b *Block) SubscribeStream(ctx context.Context, req SubscribeRequest) (*Stream, error) {
	comp, err := b.store(req.Store)
	if err != nil {
		return nil, err
	}
	sub, err := b.subscribe(ctx, req, comp, false)
	if err != nil {
		return nil, err
	}
	return &Stream{ID: sub.key.id, b: b, sub: sub}, nil
}

// Updates delivers the subscription's updates in order. Events carry the
// subscription id.
func (s *Stream) Updates() <-chan *cconfig.UpdateEvent { return s.sub.events }

// Done is closed when the subscription was ended by Unsubscribe,
// StopSubscriptions or Close.
func (s *Stream) Done() <-chan struct{} { return s.sub.ctx.Done() }

// Close ends the subscription; it is idempotent.
func (s *Stream) Close() { s.b.stop(s.sub) }
