// Package inmemory is the pubsub.in-memory component: a broker inside the
// sidecar's process, for tests and development without servers. It keeps
// the semantics the runtime relies on from real brokers, so that code
// tried against it behaves the same on them: consumer groups (the messages
// of a topic are shared round robin among the subscribers of a group, and
// every group gets all of them), redelivery with exponential back-off when
// a handler fails, per-message TTLs and bulk publishing.
//
// Nothing is durable, and a group keeps messages only while it has a
// subscriber: a message published to a topic nobody subscribes to is
// dropped, and a group's undelivered messages go when its last subscriber
// does, as with Dapr's in-memory broker.
//
// Each instance is its own broker, as each daprd's in-memory component is.
// Instances that set the same "bus" metadata share one broker within the
// process, which lets several in-process sidecars (tests) talk through it.
//
// Order: a group whose only subscriber has concurrency 1 gets a topic's
// messages in publish order, and a message it nacks is retried before any
// later one is delivered (head-of-line). With more subscribers or more
// concurrency, messages are handled in parallel and order is not kept.
package inmemory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/pubsub"
)

// Defaults of the metadata properties.
const (
	DefaultConcurrency    = 10
	DefaultInitialBackOff = 50 * time.Millisecond
	DefaultMaxBackOff     = 5 * time.Second
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("pubsub.in-memory: broker is closed")

// settings is the decoded metadata.
type settings struct {
	// Group is consumerID, the consumer group (the runtime sets it to the
	// app id).
	Group string
	// Concurrency is concurrency: how many handler calls of one subscription
	// run at once (default 10). 1 keeps publish order (see the package doc).
	Concurrency int
	// InitialBackOff and MaxBackOff are backOffInitialInterval and
	// backOffMaxInterval: the wait before redelivering a nacked message
	// starts at InitialBackOff (default 50ms) and doubles with each failure
	// up to MaxBackOff (default 5s), plus up to 25% jitter. Bare numbers are
	// milliseconds.
	InitialBackOff, MaxBackOff time.Duration
	// MaxRetries is backOffMaxRetries: how many times a nacked message is
	// redelivered before it is dropped (with a warning); -1, the default,
	// means without end.
	MaxRetries int
	// Bus is bus: instances with the same non-empty bus in one process share
	// their topics; empty (the default) means a broker of its own.
	Bus string
}

var knownProperties = []string{"consumerID", "concurrency", "backOffInitialInterval", "backOffMaxInterval", "backOffMaxRetries", "bus"}

func parseSettings(md components.Metadata) (settings, []string, error) {
	r := props.New(md, time.Millisecond)
	s := settings{
		Group:          r.String("consumerID"),
		Concurrency:    r.Int(DefaultConcurrency, "concurrency"),
		InitialBackOff: r.Duration(DefaultInitialBackOff, "backOffInitialInterval"),
		MaxBackOff:     r.Duration(DefaultMaxBackOff, "backOffMaxInterval"),
		MaxRetries:     r.Int(-1, "backOffMaxRetries"),
		Bus:            r.String("bus"),
	}
	if s.Concurrency < 1 {
		r.Fail("concurrency", "must be at least 1")
	}
	if s.InitialBackOff <= 0 {
		r.Fail("backOffInitialInterval", "must be positive")
	}
	if s.MaxBackOff < s.InitialBackOff {
		r.Fail("backOffMaxInterval", "must not be less than backOffInitialInterval")
	}
	if s.MaxRetries < -1 {
		r.Fail("backOffMaxRetries", "must be -1 (without end) or more")
	}
	return s, props.Unknown(md, knownProperties...), r.Err()
}

// Broker is the in-memory broker.
type Broker struct {
	log *slog.Logger

	cfg settings
	bus *bus

	// ctx ends on Close; every subscription's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	inited bool
	closed bool
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)

// New returns an uninitialised broker. It does no I/O and starts nothing.
func New(deps components.Deps) *Broker {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{log: log}
}

// Init decodes the metadata (see settings) and joins the bus.
func (b *Broker) Init(_ context.Context, md components.Metadata) error {
	cfg, warnings, err := parseSettings(md)
	if err != nil {
		return fmt.Errorf("pubsub.in-memory: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		b.log.Warn(w)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.inited {
		return errors.New("pubsub.in-memory: Init called twice or after Close")
	}
	b.cfg = cfg
	b.bus = acquireBus(cfg.Bus)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.inited = true
	return nil
}

// Features reports BULK_PUBLISH and MESSAGE_TTL (ttlInSeconds is enforced
// by the broker: an expired message is dropped instead of delivered).
func (b *Broker) Features() []pubsub.Feature {
	return []pubsub.Feature{pubsub.FeatureBulkPublish, pubsub.FeatureMessageTTL}
}

// usable reports ErrClosed after Close, or an error before Init.
func (b *Broker) usable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return ErrClosed
	case !b.inited:
		return errors.New("pubsub.in-memory: broker is not initialised")
	}
	return nil
}

// Publish hands the message to every group subscribed to its topic. It
// never blocks on subscribers: groups queue what they cannot deliver yet.
func (b *Broker) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := newMessage(req.Topic, req.Data, req.Metadata)
	if err != nil {
		return err
	}
	b.bus.publish(req.Topic, []*message{m})
	return nil
}

// BulkPublish publishes the entries in order, in one step: all of them, or
// (when ctx has ended or an entry is invalid) those that are not failed.
func (b *Broker) BulkPublish(ctx context.Context, req *pubsub.BulkPublishRequest) (pubsub.BulkPublishResponse, error) {
	if err := b.usable(); err != nil {
		return pubsub.BulkPublishResponse{}, err
	}
	var resp pubsub.BulkPublishResponse
	if err := ctx.Err(); err != nil {
		for _, e := range req.Entries {
			resp.FailedEntries = append(resp.FailedEntries, pubsub.BulkFailedEntry{EntryID: e.EntryID, Error: err})
		}
		return resp, nil
	}
	msgs := make([]*message, 0, len(req.Entries))
	for _, e := range req.Entries {
		md := e.Metadata
		if len(req.Metadata) > 0 {
			md = maps.Clone(req.Metadata)
			maps.Copy(md, e.Metadata)
		}
		m, err := newMessage(req.Topic, e.Data, md)
		if err != nil {
			resp.FailedEntries = append(resp.FailedEntries, pubsub.BulkFailedEntry{EntryID: e.EntryID, Error: err})
			continue
		}
		msgs = append(msgs, m)
	}
	b.bus.publish(req.Topic, msgs)
	return resp, nil
}

// Subscribe joins the broker's consumer group on req.Topic. Delivery runs
// in `concurrency` goroutines owned by the subscription, which end when ctx
// does or on Close.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock() // held so that Close cannot run between the check and wg.Add
	switch {
	case b.closed:
		return ErrClosed
	case !b.inited:
		return errors.New("pubsub.in-memory: broker is not initialised")
	case req.Topic == "":
		return errors.New("pubsub.in-memory: subscribe: topic is empty")
	case handler == nil:
		return errors.New("pubsub.in-memory: subscribe: handler is nil")
	}
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	s := &subscriber{
		broker:  b,
		handler: handler,
		ctx:     sctx,
		slots:   b.cfg.Concurrency,
		free:    b.cfg.Concurrency,
		work:    make(chan *delivery, b.cfg.Concurrency),
	}
	b.bus.join(req.Topic, b.cfg.Group, s)
	b.wg.Add(1 + b.cfg.Concurrency)
	go func() {
		defer b.wg.Done()
		<-sctx.Done()
		stop()
		b.bus.leave(s)
	}()
	for range b.cfg.Concurrency {
		go func() {
			defer b.wg.Done()
			s.work1()
		}()
	}
	return nil
}

// Close ends every subscription, waits for their goroutines (running
// handlers included) and leaves the bus. It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	inited := b.inited
	b.mu.Unlock()
	if !inited {
		return nil
	}
	b.cancel()
	b.wg.Wait()
	releaseBus(b.bus)
	return nil
}

// backOff returns the wait before the redelivery that follows failure
// number n (1-based): InitialBackOff doubled n-1 times, at most MaxBackOff,
// plus up to 25% jitter so that many nacked messages do not return at once.
func (c settings) backOff(n int) time.Duration {
	d := c.InitialBackOff
	for i := 1; i < n && d < c.MaxBackOff; i++ {
		d *= 2
	}
	d = min(d, c.MaxBackOff)
	return d + time.Duration(rand.Int64N(int64(d)/4+1))
}

// message is one published message, shared by the groups it goes to.
type message struct {
	topic   string
	data    []byte
	md      map[string]string
	expires time.Time // zero: never
}

func newMessage(topic string, data []byte, md map[string]string) (*message, error) {
	if topic == "" {
		return nil, errors.New("pubsub.in-memory: publish: topic is empty")
	}
	m := &message{topic: topic, data: slices.Clone(data), md: maps.Clone(md)}
	if m.data == nil {
		m.data = []byte{}
	}
	if v, ok := md["ttlInSeconds"]; ok && v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs <= 0 {
			return nil, fmt.Errorf("pubsub.in-memory: publish: metadata ttlInSeconds %q is not a positive integer", v)
		}
		m.expires = time.Now().Add(time.Duration(secs) * time.Second)
	}
	return m, nil
}

func (m *message) expired(now time.Time) bool { return !m.expires.IsZero() && !now.Before(m.expires) }

// delivery is a message on its way through one group.
type delivery struct {
	msg       *message
	failures  int
	notBefore time.Time // zero: ready
}

// subscriber is one Subscribe call: a member of a group.
type subscriber struct {
	broker  *Broker
	handler pubsub.Handler
	ctx     context.Context
	work    chan *delivery // capacity slots; a send never blocks (see group.dispatch)

	// Guarded by the topic's mutex.
	group *group
	slots int // concurrency
	free  int // slots not holding a delivery
	gone  bool
}

// work1 is one of the subscription's delivery goroutines.
func (s *subscriber) work1() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case d := <-s.work:
			s.deliver(d)
		}
	}
}

// deliver calls the handler, unless the subscription has ended or the
// message has expired since it was handed over, and reports the outcome to
// the group.
func (s *subscriber) deliver(d *delivery) {
	switch {
	case s.ctx.Err() != nil:
		s.broker.bus.done(s, d, s.ctx.Err(), false) // give it back
	case d.msg.expired(time.Now()):
		s.broker.bus.done(s, d, nil, false) // dropped
	default:
		s.broker.bus.done(s, d, s.call(d), true)
	}
}

// errPanic marks a handler that panicked.
var errPanic = errors.New("handler panicked")

// call runs the handler, turning a panic into an error so that one bad
// message cannot take the sidecar down; the message is redelivered.
func (s *subscriber) call(d *delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("pubsub.in-memory: %w: %v", errPanic, p)
		}
	}()
	md := d.msg.md
	if md != nil {
		md = maps.Clone(md)
	}
	return s.handler(s.ctx, &pubsub.Message{Topic: d.msg.topic, Data: d.msg.data, Metadata: md})
}
