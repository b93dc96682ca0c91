// Package mqtt3 is the pubsub.mqtt3 component: a broker on an MQTT 3.1.1
// server (Mosquitto, EMQX, HiveMQ, ...), with Dapr's metadata.
//
// A topic is the MQTT topic of the same name, and a message is its payload
// alone: MQTT 3.1.1 has no headers, so publish metadata does not travel
// (subscribers see Metadata {"retained": "true"|"false"}, as with Dapr).
// Messages are published and subscribed with qos (default 1); with QoS 1 or
// 2 Publish returns once the server acknowledged the message (PUBACK or
// PUBCOMP).
//
// # Consumer groups
//
// The consumer group is consumerID (the app id). Each sidecar subscribes
// through the shared subscription "$share/<consumerID>/<topic>", so the
// server hands each message of a topic to one sidecar of the group, and
// every group gets every message. Shared subscriptions are an MQTT 5
// feature that Mosquitto (1.6 and later), EMQX and HiveMQ also honour for
// MQTT 3.1.1 clients; for a server that does not, set sharedSubscriptions
// to false and every sidecar gets every message, as with Dapr's
// pubsub.mqtt3. A topic given as "$share/<group>/<topic>" is subscribed as
// it is.
//
// # Client ids
//
// Dapr connects with consumerID as the MQTT client id. That cannot work
// with more than one sidecar per app: a server lets one connection hold a
// client id and disconnects the older one when another connects with it
// (MQTT-3.1.4-2), so two sidecars of one app would take the session from
// each other, reconnecting in turn, forever. Here the client id is clientID
// when set and otherwise "<consumerID>-<random>", new at each Init, so
// sidecars never clash; the group is carried by the shared subscription
// instead. Publishing uses a second connection, with that id plus "-pub"
// and a clean session, so that publishes are not slowed by the messages
// coming in.
//
// # Delivery
//
// At least once, as far as the server keeps the session. Messages are
// acknowledged (PUBACK) only after the handler succeeded. A failed handler
// call is retried in process, after a back-off from backOffInitialInterval
// doubling to backOffMaxInterval, up to backOffMaxRetries times (default:
// until it succeeds), because MQTT 3.1.1 has no negative acknowledgement: a
// server redelivers an unacknowledged message only when the client
// reconnects with the same session. With cleanSession false (the default)
// the server keeps the session while the connection is down, and on
// reconnection (paho reconnects, and the broker subscribes again) it sends
// the messages not acknowledged and those that arrived meanwhile: a lost
// connection or a server restart (if it persists sessions) loses nothing.
//
// Across a restart of the sidecar the session survives only with a stable
// clientID. With the generated one, Close ends the session (connecting
// once more with cleanSession true), because nobody could resume it and
// Mosquitto keeps handing a share group's messages to an offline member's
// session; messages the server had already handed to this sidecar but
// that were not handled are then lost, a limit of MQTT 3.1.1, which cannot
// give a message back. With a stable clientID and cleanSession false the
// subscriptions are kept at the server when they end, so messages keep
// collecting in the session while the sidecar restarts; a subscription
// with metadata unsubscribeOnClose=true is removed at the server when it
// ends, as in Dapr.
//
// A server stops sending to a client that holds too many unacknowledged
// messages (Mosquitto: max_inflight_messages, 20), so messages this
// sidecar holds without handling them stall all its subscriptions: those
// whose handler keeps failing, those that gave up (backOffMaxRetries), and
// those that arrived for a topic it no longer (or not yet) subscribes to.
// The last kind are kept for a minute, to be handed to a new subscription
// to the topic (so re-subscribing, or the app's programmatic subscription
// replacing a declared one, loses nothing), then acknowledged and dropped
// with a warning. A subscription that ended is removed at the server (for
// the generated client id, or cleanSession true) a few seconds later,
// unless a new subscription to the topic started meanwhile.
//
// # Order
//
// With concurrency 1, a subscription handles a topic's messages in the
// order the server sends them, which for QoS 1 and 2 is the order in which
// one publisher published them (MQTT 3.1.1 §4.6), and a failing message is
// retried before the next one is handled (head of line). Messages
// redelivered after a reconnection, and a share group with more than one
// member, break that order; with concurrency above 1 there is none.
package mqtt3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/mqttconn"
	"github.com/mecha-dev/mecha/components/pubsub"
)

// Timing of server operations.
const (
	// publishTimeout bounds a publish's wait for its acknowledgement when
	// the caller's ctx does not end sooner.
	publishTimeout = 30 * time.Second
	// opTimeout bounds a SUBSCRIBE or UNSUBSCRIBE round trip.
	opTimeout = 10 * time.Second
	// maxReconnectInterval caps paho's back-off between reconnection
	// attempts. It also bounds how long paho's reconnecting goroutine
	// outlives a Close that comes during an outage (it checks for the
	// disconnection only between attempts).
	maxReconnectInterval = 10 * time.Second
	// disconnectQuiesce is how long Disconnect waits for outgoing packets
	// (acknowledgements) to be written, in milliseconds.
	disconnectQuiesce = 250
	// endSessionTimeout bounds the connection that ends a generated
	// client id's session on Close.
	endSessionTimeout = 5 * time.Second
)

// Keeping messages nobody in this sidecar subscribes to (see the package
// documentation).
const (
	// holdUnwanted is how long such a message is kept for a new
	// subscription before it is acknowledged and dropped.
	holdUnwanted = time.Minute
	// unsubscribeAfter is how long after its last subscription ended a
	// topic is unsubscribed at the server.
	unsubscribeAfter = 2 * time.Second
	// sweepEvery is how often the two are checked.
	sweepEvery = 500 * time.Millisecond
	// maxQoS0Backlog bounds the QoS 0 messages waiting for a handler in one
	// subscription: the server does not limit how many it sends, and QoS 0
	// allows dropping them.
	maxQoS0Backlog = 10000
)

// maxQoS2InFlight bounds the QoS 2 publishes of one connection waiting for
// their PUBCOMP. Mosquitto takes at most max_inflight_messages (default 20)
// QoS 2 messages from a client awaiting PUBREL and silently drops the
// others, though it completes their handshake; so pipelined QoS 2
// publishes would be lost while reported as published. QoS 1 publishes
// have no such limit.
const maxQoS2InFlight = 10

// metadata keys.
const (
	mdRetain             = "retain"
	mdRetained           = "retained"
	mdUnsubscribeOnClose = "unsubscribeOnClose"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("pubsub.mqtt3: broker is closed")

// Broker is the MQTT 3.1.1 broker: one connection serves every
// subscription, another publishes.
type Broker struct {
	log *slog.Logger

	// Set by Init before the connection starts, then read-only.
	cfg       settings
	clientID  string
	generated bool // clientID was generated: nobody can resume its session
	// qos2 holds a token per QoS 2 publish in flight (maxQoS2InFlight);
	// nil for QoS 0 and 1.
	qos2 chan struct{}

	// hold and unsubAfter are holdUnwanted and unsubscribeAfter; tests
	// shorten them.
	hold, unsubAfter time.Duration

	// ctx ends on Close; every subscription's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards what follows, and the routes' fields. It is never held
	// while calling into paho (an Ack can block on paho's goroutine that
	// calls onMessage, which takes mu).
	mu     sync.Mutex
	inited bool
	closed bool
	// sub subscribes, pub publishes; set by Init, then read-only.
	sub, pub mqtt.Client
	connects int
	routes   map[string]*route // by filter, as subscribed (no $share prefix)
	wild     []*route          // the routes whose filter has wildcards
	orphans  []item            // arrived for no route
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
	ctx, cancel := context.WithCancel(context.Background())
	return &Broker{
		log: log, ctx: ctx, cancel: cancel,
		hold: holdUnwanted, unsubAfter: unsubscribeAfter,
		routes: map[string]*route{},
	}
}

// Init decodes the metadata (see settings) and connects: a connection
// that subscribes (the client id, see settings.ClientID) and one that
// publishes (the client id plus "-pub", with a clean session), so that
// publishing is neither slowed by the messages coming in nor stalled when
// the server stops sending them. It fails when the server does not accept
// both before ctx ends or within mqttconn.ConnectTimeout; later outages
// are bridged by reconnecting.
func (b *Broker) Init(ctx context.Context, md components.Metadata) error {
	cfg, warnings, err := parseSettings(md)
	if err != nil {
		return fmt.Errorf("pubsub.mqtt3: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		b.log.Warn(w)
	}
	b.mu.Lock()
	if b.closed || b.inited || b.sub != nil {
		b.mu.Unlock()
		return errors.New("pubsub.mqtt3: Init called twice or after Close")
	}
	b.cfg = cfg
	if cfg.QoS == 2 {
		b.qos2 = make(chan struct{}, maxQoS2InFlight)
	}
	b.clientID = cfg.ClientID
	if b.clientID == "" {
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix)
		b.clientID, b.generated = cfg.ConsumerID+"-"+hex.EncodeToString(suffix), true
	}
	b.sub = mqtt.NewClient(cfg.ClientOptions(b.clientID, b.log).
		// onMessage only queues, so paho may call it in order on its own
		// goroutine; the order reaches the queues intact.
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetDefaultPublishHandler(b.onMessage).
		// onConnect subscribes every route again, which also covers a
		// server that lost its sessions.
		SetResumeSubs(false).
		SetOnConnectHandler(b.onConnect).
		SetMaxReconnectInterval(maxReconnectInterval))
	// The publishing side keeps nothing at the server worth resuming:
	// paho itself resends the publishes not acknowledged when it
	// reconnects.
	b.pub = mqtt.NewClient(cfg.ClientOptions(b.clientID+"-pub", b.log).
		SetCleanSession(true).
		SetMaxReconnectInterval(maxReconnectInterval))
	b.mu.Unlock()

	for _, c := range []mqtt.Client{b.sub, b.pub} {
		if err := b.connect(ctx, c); err != nil {
			return fmt.Errorf("pubsub.mqtt3: connecting to %s as %q: %w", cfg.Broker, clientID(c), err)
		}
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		// Close may have disconnected before the connections were up.
		b.sub.Disconnect(0)
		b.pub.Disconnect(0)
		return ErrClosed
	}
	b.inited = true
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.sweeper()
	}()
	b.mu.Unlock()
	b.log.Info("connected to the MQTT server", "broker", cfg.Broker, "clientID", b.clientID,
		"consumerID", cfg.ConsumerID, "qos", cfg.QoS, "cleanSession", cfg.CleanSession, "sharedSubscriptions", cfg.SharedSubscriptions)
	if b.generated && !cfg.CleanSession {
		b.log.Debug("the client id is generated: the session survives connection losses but not a restart of the sidecar; set clientID to keep it across restarts")
	}
	return nil
}

// connect connects c, bounded by ctx. On failure, an attempt still under
// way could connect later: c is disconnected once it ends, in a goroutine
// Close waits for.
func (b *Broker) connect(ctx context.Context, c mqtt.Client) error {
	tok := c.Connect()
	err := mqttconn.Wait(ctx, tok, mqttconn.ConnectTimeout+time.Second, "connecting")
	if err != nil {
		b.mu.Lock()
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			<-tok.Done()
			c.Disconnect(0)
		}()
	}
	return err
}

func clientID(c mqtt.Client) string {
	r := c.OptionsReader()
	return r.ClientID()
}

// Features reports BULK_PUBLISH and SUBSCRIBE_WILDCARDS ('+' and '#').
func (b *Broker) Features() []pubsub.Feature {
	return []pubsub.Feature{pubsub.FeatureBulkPublish, pubsub.FeatureSubscribeWildcards}
}

// usable reports why the broker cannot be used, if it cannot. Once it
// returned nil, b.sub and b.pub are set.
func (b *Broker) usable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return ErrClosed
	case !b.inited:
		return errors.New("pubsub.mqtt3: broker is not initialised")
	}
	return nil
}

// Publish publishes the message with the component's qos and retain (the
// request metadata "retain" overrides the latter) and, for QoS 1 and 2,
// waits for the server's acknowledgement. During an outage paho keeps the
// message and sends it once reconnected, so a Publish that fails on ctx
// may still be delivered, which at-least-once allows.
func (b *Broker) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.acquire(ctx); err != nil {
		return fmt.Errorf("pubsub.mqtt3: publish to %q: %w", req.Topic, err)
	}
	defer b.release()
	tok, err := b.publish(req.Topic, req.Data, req.Metadata)
	if err != nil {
		return err
	}
	if err := b.await(ctx, tok); err != nil {
		return fmt.Errorf("pubsub.mqtt3: publish to %q: %w", req.Topic, err)
	}
	return nil
}

// acquire takes a QoS 2 in-flight slot (see maxQoS2InFlight); for QoS 0
// and 1 it does nothing.
func (b *Broker) acquire(ctx context.Context) error {
	if b.qos2 == nil {
		return nil
	}
	select {
	case b.qos2 <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
}

// release gives back a slot taken by acquire. A publish whose caller
// stopped waiting releases it too, before the server's answer, so the
// bound can be passed briefly then.
func (b *Broker) release() {
	if b.qos2 != nil {
		<-b.qos2
	}
}

// BulkPublish sends the entries before waiting for their
// acknowledgements, so a batch costs about one round trip (with QoS 2, one
// per maxQoS2InFlight entries); entries that fail are reported one by one.
func (b *Broker) BulkPublish(ctx context.Context, req *pubsub.BulkPublishRequest) (pubsub.BulkPublishResponse, error) {
	var resp pubsub.BulkPublishResponse
	if err := b.usable(); err != nil {
		return resp, err
	}
	if err := ctx.Err(); err != nil {
		return resp, err
	}
	fail := func(i int, err error) {
		resp.FailedEntries = append(resp.FailedEntries, pubsub.BulkFailedEntry{
			EntryID: req.Entries[i].EntryID,
			Error:   fmt.Errorf("pubsub.mqtt3: publish to %q: %w", req.Topic, err),
		})
	}
	window := len(req.Entries)
	if b.qos2 != nil {
		window = cap(b.qos2)
	}
	toks := make([]mqtt.Token, window)
	for start := 0; start < len(req.Entries); start += window {
		end := min(start+window, len(req.Entries))
		clear(toks)
		for i := start; i < end; i++ {
			e := req.Entries[i]
			md := e.Metadata
			if len(req.Metadata) > 0 {
				md = maps.Clone(req.Metadata)
				maps.Copy(md, e.Metadata)
			}
			if err := b.acquire(ctx); err != nil {
				fail(i, err)
				continue
			}
			tok, err := b.publish(req.Topic, e.Data, md)
			if err != nil {
				b.release()
				fail(i, err)
				continue
			}
			toks[i-start] = tok
		}
		for i := start; i < end; i++ {
			tok := toks[i-start]
			if tok == nil {
				continue
			}
			err := b.await(ctx, tok)
			b.release()
			if err != nil {
				fail(i, err)
			}
		}
	}
	return resp, nil
}

// publish checks one message and hands it to paho.
func (b *Broker) publish(topic string, data []byte, md map[string]string) (mqtt.Token, error) {
	if err := validTopic(topic); err != nil {
		return nil, fmt.Errorf("pubsub.mqtt3: publish: %w", err)
	}
	retain := b.cfg.Retain
	if v := md[mdRetain]; v != "" {
		var err error
		if retain, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("pubsub.mqtt3: publish: metadata %q: %q is not a boolean", mdRetain, v)
		}
	}
	if data == nil {
		data = []byte{}
	}
	return b.pub.Publish(topic, b.cfg.QoS, retain, data), nil
}

// await waits for a publish's acknowledgement, ctx, Close or
// publishTimeout.
func (b *Broker) await(ctx context.Context, tok mqtt.Token) error {
	t := time.NewTimer(publishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	case <-t.C:
		return fmt.Errorf("no acknowledgement within %v", publishTimeout)
	}
}

// Subscribe subscribes at the server (through the consumer group's shared
// subscription) and starts `concurrency` handler goroutines, which end
// when ctx does or on Close. Messages kept for the topic since an earlier
// subscription ended, or that arrived before anyone subscribed, are
// handled first. One topic has one subscription at a time per broker.
//
// The subscription metadata unsubscribeOnClose=true removes the
// subscription at the server when it ends even with a stable clientID.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if err := b.usable(); err != nil {
		return err
	}
	if handler == nil {
		return errors.New("pubsub.mqtt3: subscribe: handler is nil")
	}
	filter, brokerFilter, err := b.filters(req.Topic)
	if err != nil {
		return fmt.Errorf("pubsub.mqtt3: subscribe: %w", err)
	}
	unsubOnEnd := b.generated || b.cfg.CleanSession
	if v := req.Metadata[mdUnsubscribeOnClose]; v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("pubsub.mqtt3: subscribe: metadata %q: %q is not a boolean", mdUnsubscribeOnClose, v)
		}
		unsubOnEnd = unsubOnEnd || on
	}

	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	fail := func(err error) error {
		stop()
		cancel()
		return err
	}
	// Take the route, waiting for an ending subscription to detach from it
	// and for an unsubscription under way to finish, so that what the
	// server ends up with is this subscription.
	var r *route
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return fail(ErrClosed)
		}
		r = b.route(filter, brokerFilter)
		if r.brokerFilter != brokerFilter {
			b.mu.Unlock()
			return fail(fmt.Errorf("pubsub.mqtt3: subscribe to %q: already subscribed as %q", req.Topic, r.brokerFilter))
		}
		wait := r.unsubscribing
		if r.sub != nil {
			if r.sub.ctx.Err() == nil {
				b.mu.Unlock()
				return fail(fmt.Errorf("pubsub.mqtt3: subscribe to %q: already subscribed", req.Topic))
			}
			wait = r.sub.detached
		}
		if wait == nil {
			break
		}
		b.mu.Unlock()
		select {
		case <-wait:
		case <-sctx.Done():
			if b.ctx.Err() != nil {
				return fail(ErrClosed)
			}
			return fail(sctx.Err())
		}
	}
	s := &subscription{b: b, r: r, handler: handler, ctx: sctx, detached: make(chan struct{})}
	wasSubscribed := r.subscribed
	r.sub, r.subscribed, r.stale, r.unsubOnEnd = s, true, false, unsubOnEnd
	b.mu.Unlock()

	if err := b.subscribeAt(sctx, brokerFilter); err != nil {
		b.mu.Lock()
		r.sub, r.subscribed, r.idleSince = nil, wasSubscribed, time.Now()
		r.stale = !wasSubscribed // the SUBSCRIBE may have reached the server
		b.mu.Unlock()
		close(s.detached)
		if b.ctx.Err() != nil {
			return fail(ErrClosed)
		}
		return fail(fmt.Errorf("pubsub.mqtt3: subscribe to %q: %w", req.Topic, err))
	}

	n := b.cfg.Concurrency
	b.mu.Lock()
	if b.closed {
		r.sub, r.idleSince = nil, time.Now()
		b.mu.Unlock()
		close(s.detached)
		return fail(ErrClosed)
	}
	b.wg.Add(n + 1)
	b.mu.Unlock()
	s.workers.Add(n)
	for range n {
		go func() {
			defer b.wg.Done()
			defer s.workers.Done()
			s.work()
		}()
	}
	go func() {
		defer b.wg.Done()
		s.end(stop)
	}()
	b.log.Debug("subscribed", "topic", req.Topic, "filter", brokerFilter, "qos", b.cfg.QoS)
	return nil
}

// filters returns the filter that messages are matched against, and the
// one subscribed at the server.
func (b *Broker) filters(topic string) (filter, brokerFilter string, err error) {
	if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
		group, f, ok := strings.Cut(rest, "/")
		if !ok || group == "" || strings.ContainsAny(group, "+#") {
			return "", "", fmt.Errorf("topic %q is not $share/<group>/<topic>", topic)
		}
		if err := validFilter(f); err != nil {
			return "", "", err
		}
		return f, topic, nil
	}
	if err := validFilter(topic); err != nil {
		return "", "", err
	}
	if b.cfg.SharedSubscriptions {
		return topic, "$share/" + b.cfg.ConsumerID + "/" + topic, nil
	}
	return topic, topic, nil
}

// subscribeAt subscribes to filter at the server and checks its answer.
func (b *Broker) subscribeAt(ctx context.Context, filter string) error {
	if !b.sub.IsConnectionOpen() {
		return errors.New("not connected to the MQTT server (reconnecting)")
	}
	tok := b.sub.Subscribe(filter, b.cfg.QoS, nil) // nil: onMessage routes it
	if err := mqttconn.Wait(ctx, tok, opTimeout, "subscribing"); err != nil {
		return err
	}
	return refused(tok)
}

// refused reports the filters of a completed subscribe token that the
// server refused (SUBACK return code 0x80).
func refused(tok mqtt.Token) error {
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	for f, code := range st.Result() {
		if code == 0x80 {
			return fmt.Errorf("the server refused the subscription to %q (SUBACK 0x80): not allowed, or no shared subscriptions for MQTT 3.1.1 clients (set sharedSubscriptions to false)", f)
		}
	}
	return nil
}

// onConnect runs, on a goroutine of paho's, after every connection. It
// subscribes every route again: with a clean session the server forgot
// them, and a server that lost its state (a restart without persistence)
// did too; for a resumed session it is harmless. It also retries the
// unsubscriptions that failed while the connection was down.
func (b *Broker) onConnect(c mqtt.Client) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.wg.Add(1)
	defer b.wg.Done()
	b.connects++
	first := b.connects == 1
	subs := map[string]byte{}
	var stale []string
	for _, r := range b.routes {
		switch {
		case r.subscribed:
			subs[r.brokerFilter] = b.cfg.QoS
		case r.stale && r.unsubscribing == nil:
			stale = append(stale, r.brokerFilter)
		}
	}
	b.mu.Unlock()
	if !first {
		b.log.Info("reconnected to the MQTT server", "broker", b.cfg.Broker, "clientID", b.clientID, "subscriptions", len(subs))
	}
	if len(subs) > 0 {
		tok := c.SubscribeMultiple(subs, nil)
		err := mqttconn.Wait(b.ctx, tok, opTimeout, "subscribing again")
		if err == nil {
			err = refused(tok)
		}
		if err != nil && b.ctx.Err() == nil {
			// Most likely the connection broke again; this runs again then.
			b.log.Error("cannot subscribe again after reconnecting", "error", err)
		}
		// An unsubscription may have been sent since the list was made and
		// overtaken by this subscription: undo it.
		b.mu.Lock()
		for f := range subs {
			if r := b.routeByBrokerFilter(f); r != nil && !r.subscribed && r.unsubscribing == nil {
				stale = append(stale, f)
			}
		}
		b.mu.Unlock()
	}
	if len(stale) > 0 {
		err := mqttconn.Wait(b.ctx, c.Unsubscribe(stale...), opTimeout, "unsubscribing")
		b.mu.Lock()
		for _, f := range stale {
			if r := b.routeByBrokerFilter(f); r != nil && !r.subscribed {
				r.stale = err != nil
			}
		}
		b.mu.Unlock()
	}
}

// Close ends every subscription, waits for their goroutines (running
// handlers included, whose ctx ends) and disconnects. For a generated
// client id it then ends the session at the server (see the package
// documentation). It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	sub, pub, inited := b.sub, b.pub, b.inited
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	if sub == nil {
		return nil
	}
	sub.Disconnect(disconnectQuiesce)
	pub.Disconnect(disconnectQuiesce)
	if inited && b.generated && !b.cfg.CleanSession {
		b.endSession()
	}
	return nil
}

// endSession connects once with the client id and cleanSession true, which
// makes the server discard the session (MQTT-3.1.2-6).
func (b *Broker) endSession() {
	c := mqtt.NewClient(b.cfg.ClientOptions(b.clientID, b.log).SetCleanSession(true).SetAutoReconnect(false))
	ctx, cancel := context.WithTimeout(context.Background(), endSessionTimeout)
	defer cancel()
	tok := c.Connect()
	if err := mqttconn.Wait(ctx, tok, endSessionTimeout, "connecting"); err != nil {
		b.log.Warn("cannot end the MQTT session; the server keeps it until it expires", "clientID", b.clientID, "error", err)
	}
	<-tok.Done() // bounded by the connect timeout
	c.Disconnect(0)
}
