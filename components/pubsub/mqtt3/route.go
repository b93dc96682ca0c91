package mqtt3

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mecha-dev/mecha/components/internal/mqttconn"
	"github.com/mecha-dev/mecha/components/pubsub"
)

// item is a message received and not acknowledged yet.
type item struct {
	m  mqtt.Message
	at time.Time // when it arrived
}

// route is what the broker knows of one topic filter: the messages
// received for it and waiting for a handler, and the subscription
// handling them, if any. A route outlives its subscriptions, so that the
// messages received for a topic reach the next subscription to it. Its
// fields are guarded by Broker.mu.
type route struct {
	filter       string // matched against message topics
	brokerFilter string // subscribed at the server ($share/<group>/<filter>)

	items []item
	ready chan struct{} // signalled (capacity 1) when items were added

	sub        *subscription // nil while none is running
	idleSince  time.Time     // when sub last became nil
	subscribed bool          // the server should have the subscription
	unsubOnEnd bool          // unsubscribe at the server when sub ends
	// unsubscribing is closed when an unsubscription under way is done.
	unsubscribing chan struct{}
	// stale means an unsubscription failed (or a failed subscription may
	// have reached the server): retried on the next connection.
	stale bool
}

// route returns the route of filter, creating it with the messages that
// arrived for it while there was none. Called with b.mu held.
func (b *Broker) route(filter, brokerFilter string) *route {
	if r := b.routes[filter]; r != nil {
		return r
	}
	r := &route{filter: filter, brokerFilter: brokerFilter, ready: make(chan struct{}, 1), idleSince: time.Now()}
	b.routes[filter] = r
	if wildcard(filter) {
		b.wild = append(b.wild, r)
	}
	kept := b.orphans[:0]
	for _, it := range b.orphans {
		if matches(filter, it.m.Topic()) {
			r.items = append(r.items, it)
		} else {
			kept = append(kept, it)
		}
	}
	clear(b.orphans[len(kept):])
	b.orphans = kept
	return r
}

// routeFor returns the route a message on topic belongs to: the route of
// the topic itself, else the first wildcard route matching it. Called with
// b.mu held.
func (b *Broker) routeFor(topic string) *route {
	if r := b.routes[topic]; r != nil {
		return r
	}
	for _, r := range b.wild {
		if matches(r.filter, topic) {
			return r
		}
	}
	return nil
}

// routeByBrokerFilter is called with b.mu held.
func (b *Broker) routeByBrokerFilter(f string) *route {
	for _, r := range b.routes {
		if r.brokerFilter == f {
			return r
		}
	}
	return nil
}

// onMessage is paho's handler for every message, called in arrival order
// on paho's goroutine. It only queues the message on its route (or keeps
// it until a route for it appears) and must never block: paho reads
// acknowledgements and keepalive answers on goroutines that wait for it.
func (b *Broker) onMessage(_ mqtt.Client, m mqtt.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return // not acknowledged: the session, if kept, redelivers it
	}
	it := item{m: m, at: time.Now()}
	r := b.routeFor(m.Topic())
	switch {
	case r == nil && m.Qos() == 0:
		b.log.Debug("dropping a QoS 0 message for a topic without a subscription", "topic", m.Topic())
	case r == nil:
		b.orphans = append(b.orphans, it)
	case m.Qos() == 0 && len(r.items) >= maxQoS0Backlog:
		b.log.Warn("dropping a QoS 0 message: its subscription is too far behind", "topic", m.Topic(), "backlog", len(r.items))
	default:
		r.items = append(r.items, it)
		signal(r.ready)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// sweeper runs until Close: it unsubscribes, at the server, the topics
// whose subscription ended unsubscribeAfter ago (when they should be), and
// acknowledges and drops the messages nobody took within holdUnwanted (see
// the package documentation).
func (b *Broker) sweeper() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.sweep(now)
		}
	}
}

func (b *Broker) sweep(now time.Time) {
	var drop []item
	var unsub []*route
	expired := func(it item, since time.Time) bool { return now.Sub(later(it.at, since)) >= b.hold }

	b.mu.Lock()
	b.orphans = slices.DeleteFunc(b.orphans, func(it item) bool {
		if expired(it, time.Time{}) {
			drop = append(drop, it)
			return true
		}
		return false
	})
	for _, r := range b.routes {
		if r.sub != nil {
			continue
		}
		if r.subscribed && r.unsubOnEnd && r.unsubscribing == nil && now.Sub(r.idleSince) >= b.unsubAfter {
			r.subscribed = false
			r.unsubscribing = make(chan struct{})
			unsub = append(unsub, r)
		}
		r.items = slices.DeleteFunc(r.items, func(it item) bool {
			if expired(it, r.idleSince) {
				drop = append(drop, it)
				return true
			}
			return false
		})
		if !r.subscribed && !r.stale && r.unsubscribing == nil && len(r.items) == 0 {
			// Nothing left to keep: forget the route, so that topics
			// subscribed once do not pile up. A late message for it is an
			// orphan, as it would be without the route.
			delete(b.routes, r.filter)
			b.wild = slices.DeleteFunc(b.wild, func(w *route) bool { return w == r })
		}
	}
	b.mu.Unlock()

	if len(drop) > 0 {
		topics := map[string]int{}
		for _, it := range drop {
			it.m.Ack() // releases the server's in-flight slot
			topics[it.m.Topic()]++
		}
		b.log.Warn("dropped messages received for topics without a subscription: no subscription took them within the hold time",
			"hold", b.hold, "messagesByTopic", topics)
	}
	for _, r := range unsub {
		err := b.unsubscribeAt(r.brokerFilter)
		b.mu.Lock()
		close(r.unsubscribing)
		r.unsubscribing = nil
		r.stale = err != nil && !r.subscribed
		b.mu.Unlock()
		if err != nil && b.ctx.Err() == nil {
			b.log.Warn("cannot unsubscribe at the MQTT server; retrying after the next reconnection", "filter", r.brokerFilter, "error", err)
		}
	}
}

func (b *Broker) unsubscribeAt(filter string) error {
	if !b.sub.IsConnectionOpen() {
		return fmt.Errorf("not connected to the MQTT server")
	}
	return mqttconn.Wait(b.ctx, b.sub.Unsubscribe(filter), opTimeout, "unsubscribing")
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// subscription is one Subscribe call: `concurrency` workers taking the
// route's messages until ctx ends.
type subscription struct {
	b       *Broker
	r       *route
	handler pubsub.Handler
	ctx     context.Context
	workers sync.WaitGroup
	// detached is closed once the subscription let go of its route.
	detached chan struct{}
}

// work is one handler goroutine.
func (s *subscription) work() {
	b, r := s.b, s.r
	for {
		b.mu.Lock()
		if s.ctx.Err() != nil {
			b.mu.Unlock()
			return
		}
		if len(r.items) > 0 {
			it := r.items[0]
			r.items[0] = item{}
			r.items = r.items[1:]
			if len(r.items) > 0 {
				signal(r.ready) // for another worker
			}
			b.mu.Unlock()
			s.handle(it)
			continue
		}
		b.mu.Unlock()
		select {
		case <-s.ctx.Done():
			return
		case <-r.ready:
		}
	}
}

// handle delivers one message, handing it to the handler again after a
// back-off while it fails (up to backOffMaxRetries times), and
// acknowledges it once the handler succeeded. A message the subscription
// ends with goes back to the head of the route, for the next subscription.
func (s *subscription) handle(it item) {
	b, m := s.b, it.m
	msg := &pubsub.Message{
		Topic:    m.Topic(),
		Data:     m.Payload(),
		Metadata: map[string]string{mdRetained: strconv.FormatBool(m.Retained())},
	}
	wait := b.cfg.InitialBackOff
	for attempt := 1; ; attempt++ {
		if s.ctx.Err() != nil { // no handler call starts once the subscription ended
			s.putBack(it)
			return
		}
		err := s.call(msg)
		if err == nil {
			m.Ack()
			return
		}
		if s.ctx.Err() != nil {
			s.putBack(it)
			return
		}
		if b.cfg.MaxRetries >= 0 && attempt > b.cfg.MaxRetries {
			b.log.Error("the handler failed on every attempt; the message stays unacknowledged, and the server delivers it again when this client next connects",
				"topic", m.Topic(), "messageID", m.MessageID(), "attempts", attempt, "error", err)
			return
		}
		b.log.Debug("the handler failed; handing the message to it again", "topic", m.Topic(), "messageID", m.MessageID(),
			"attempt", attempt, "retryIn", wait, "error", err)
		sleep(s.ctx, wait)
		wait = min(2*wait, b.cfg.MaxBackOff)
	}
}

// putBack returns a message to the head of the route.
func (s *subscription) putBack(it item) {
	s.b.mu.Lock()
	s.r.items = slices.Insert(s.r.items, 0, it)
	s.b.mu.Unlock()
}

// call runs the handler, turning a panic into an error so that one bad
// message cannot take the sidecar down.
func (s *subscription) call(msg *pubsub.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("pubsub.mqtt3: handler panicked: %v", p)
			s.b.log.Error("handler panicked", "topic", msg.Topic, "panic", p)
		}
	}()
	return s.handler(s.ctx, msg)
}

// end waits for ctx to end and the workers to return, then lets go of the
// route; the sweeper unsubscribes at the server later, if it should.
func (s *subscription) end(stop func() bool) {
	<-s.ctx.Done()
	stop()
	s.workers.Wait()
	s.b.mu.Lock()
	s.r.sub, s.r.idleSince = nil, time.Now()
	s.b.mu.Unlock()
	close(s.detached)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
