package pubsub

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
)

// target receives the events of a subscription: the app (HTTP or gRPC) or
// a streaming subscriber.
type target interface {
	// waitReady blocks until the receiver can take events.
	waitReady(ctx context.Context) error
	// deliver hands one event over: nil acknowledges it, errDropped drops
	// it, any other error asks for redelivery.
	deliver(ctx context.Context, log *slog.Logger, ev *event, path string) error
	// deliverBulk hands a batch over and returns one outcome per entry; an
	// error means the whole batch is to be redelivered.
	deliverBulk(ctx context.Context, log *slog.Logger, req *bulkRequest) ([]outcome, error)
}

// running is a subscription being delivered: one broker subscription and
// what its handler needs.
type running struct {
	b      *Block
	br     *broker
	sub    atomic.Pointer[subscription] // replaced when the app's answer overrides a declaration
	target target
	log    *slog.Logger
	cancel context.CancelFunc
	gate   gate
	// sem bounds concurrent deliveries.
	sem chan struct{}
	// batch feeds the batching goroutine of bulk subscriptions.
	batch chan *bulkItem
	// wg owns the batching goroutine.
	wg sync.WaitGroup
}

// start subscribes s on its broker, delivering to t, until ctx ends or the
// running subscription is stopped.
func (b *Block) start(ctx context.Context, s *subscription, t target) (*running, error) {
	br, ok := b.brokers.Get(s.pubsubName)
	if !ok {
		return nil, fmt.Errorf("pubsub %s is not found", s.pubsubName)
	}
	if !br.scopes.canSubscribe(s.topic) {
		return nil, fmt.Errorf("subscription to topic '%s' on pubsub '%s' is not allowed", s.topic, s.pubsubName)
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &running{
		b: b, br: br, target: t, cancel: cancel,
		log: b.log.With(slog.String("pubsub", s.pubsubName), slog.String("topic", s.topic), slog.String("type", string(s.typ))),
		sem: make(chan struct{}, b.opts.MaxConcurrency),
	}
	r.sub.Store(s)
	handler := func(hctx context.Context, msg *cpubsub.Message) error { return r.handle(rctx, hctx, msg) }
	if s.bulk {
		r.batch = make(chan *bulkItem)
		r.wg.Go(func() { r.batchLoop(rctx, s.bulkCount, s.bulkAwait) })
		handler = func(hctx context.Context, msg *cpubsub.Message) error { return r.enqueue(rctx, hctx, msg) }
	}
	err := br.Subscribe(rctx, cpubsub.SubscribeRequest{Topic: b.topic(br, s.topic), Metadata: s.metadata}, handler)
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("failed to subscribe to topic %s on pubsub %s: %w", s.topic, s.pubsubName, err)
	}
	r.log.Info("subscribed", "rules", len(s.rules), "deadLetterTopic", s.deadLetterTopic, "bulk", s.bulk)
	return r, nil
}

// stop ends the broker subscription and waits for the messages being
// handled; they fail, so the broker redelivers them. Safe to call more
// than once.
func (r *running) stop() {
	idle := r.gate.shut()
	r.cancel()
	<-idle
	r.wg.Wait()
}

// gate counts the handlers in flight and refuses new ones once shut.
type gate struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // made by shut, closed when no handler is left
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.closed && g.n == 0 {
		close(g.idle)
	}
}

// shut refuses new handlers and returns a channel closed once the ones in
// flight have left.
func (g *gate) shut() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		g.idle = make(chan struct{})
		if g.n == 0 {
			close(g.idle)
		}
	}
	return g.idle
}

// AddDeclarative registers a declarative subscription (a Subscription
// resource for this app); it is subscribed by Start. The error says why
// the subscription is rejected (an invalid routing rule, ...).
func (b *Block) AddDeclarative(spec SubscriptionSpec) error {
	s, err := compile(spec, Declarative)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return fmt.Errorf("subscription %s added after subscriptions were started", spec.Name)
	}
	b.declared = append(b.declared, s)
	return nil
}

// Start subscribes the declarative subscriptions and, once the app is
// ready, asks it for its programmatic ones. Deliveries wait for the app
// (and its health) before each event, so messages published while the app
// is down wait in the broker. It returns at once; StopSubscriptions ends
// everything. Without an app only streaming subscriptions can receive.
func (b *Block) Start(ctx context.Context) {
	b.mu.Lock()
	if b.started || b.stopped {
		b.mu.Unlock()
		return
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	declared := b.declared
	b.declared = nil
	b.mu.Unlock()
	if b.opts.App == nil {
		for _, s := range declared {
			b.log.Warn("subscription not started: the sidecar has no app port to deliver events to (set --app-port)", "subscription", describe(s))
		}
		return
	}
	for _, s := range declared {
		b.install(ctx, s)
	}
	// Without a pub/sub component there is nothing to subscribe to: the
	// app is not asked for /dapr/subscribe (as daprd does not ask it).
	if len(b.Names()) > 0 {
		b.wg.Go(func() { b.discover(ctx) })
	}
}

// install starts an app subscription. For a pubsub and topic already
// subscribed, the first declaration wins over later declarations, and the
// app's programmatic answer wins over declarations, as in daprd; when the
// broker subscription would be the same, only the routing is swapped.
func (b *Block) install(ctx context.Context, s *subscription) {
	k := key(s.pubsubName, s.topic)
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	old, exists := b.app[k]
	if exists {
		prev := old.sub.Load()
		if s.typ == Declarative {
			b.mu.Unlock()
			b.log.Warn("subscription ignored: another subscription already covers this pubsub and topic", "subscription", describe(s), "kept", describe(prev))
			return
		}
		if sameBrokerSubscription(prev, s) {
			old.sub.Store(s)
			b.mu.Unlock()
			b.log.Info("the app's subscription replaces the declared one", "pubsub", s.pubsubName, "topic", s.topic, "replaced", describe(prev))
			return
		}
		delete(b.app, k)
	}
	b.mu.Unlock()
	if exists {
		old.stop()
	}
	r, err := b.start(ctx, s, &appTarget{app: b.opts.App, appID: b.opts.AppID})
	if err != nil {
		b.mu.Lock()
		b.order = slices.DeleteFunc(b.order, func(o string) bool { return o == k })
		b.mu.Unlock()
		b.reportRejected(describe(s), err)
		return
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		r.stop()
		return
	}
	b.app[k] = r
	if !slices.Contains(b.order, k) {
		b.order = append(b.order, k)
	}
	b.mu.Unlock()
}
