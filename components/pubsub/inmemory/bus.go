package inmemory

import (
	"container/heap"
	"errors"
	"sync"
	"time"
)

// Named buses, shared by the instances that set the same "bus" metadata.
var (
	busesMu sync.Mutex
	buses   = map[string]*bus{}
)

// bus is one broker: topics, their groups and their subscribers. Lock order:
// bus.mu, then topic.mu; delivery only ever takes topic.mu.
type bus struct {
	name string
	refs int // guarded by busesMu; only for named buses

	mu     sync.Mutex
	topics map[string]*topic
}

// acquireBus returns the bus called name (a new, private one for ""),
// counting the reference.
func acquireBus(name string) *bus {
	if name == "" {
		return &bus{topics: map[string]*topic{}}
	}
	busesMu.Lock()
	defer busesMu.Unlock()
	b := buses[name]
	if b == nil {
		b = &bus{name: name, topics: map[string]*topic{}}
		buses[name] = b
	}
	b.refs++
	return b
}

// releaseBus drops a reference; a named bus is forgotten with its last one.
// By then every subscription on it has left, so it holds no messages.
func releaseBus(b *bus) {
	if b.name == "" {
		return
	}
	busesMu.Lock()
	defer busesMu.Unlock()
	if b.refs--; b.refs == 0 {
		delete(buses, b.name)
	}
}

// topic holds the groups subscribed to one topic. It exists while it has
// a group.
type topic struct {
	bus    *bus
	name   string
	mu     sync.Mutex
	groups map[string]*group
}

// group is a consumer group on a topic: the subscribers sharing its
// messages and the messages not handed to any of them yet. It exists while
// it has a subscriber. Guarded by topic.mu.
type group struct {
	topic *topic
	name  string
	subs  []*subscriber
	next  int // round robin: the subscriber to try first

	ready   []*delivery // FIFO from readyAt
	readyAt int
	// hold is the nacked head in ordered mode: nothing else is delivered
	// until it is.
	hold    *delivery
	delayed delayHeap // nacked, waiting for their back-off

	timer   *time.Timer // wakes dispatch when the earliest back-off ends
	timerAt time.Time
	dead    bool
}

// join adds s to group name on topicName, creating them as needed.
func (b *bus) join(topicName, name string, s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topics[topicName]
	if tp == nil {
		tp = &topic{bus: b, name: topicName, groups: map[string]*group{}}
		b.topics[topicName] = tp
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	g := tp.groups[name]
	if g == nil {
		g = &group{topic: tp, name: name}
		tp.groups[name] = g
	}
	s.group = g
	g.subs = append(g.subs, s)
}

// leave removes s from its group. What was handed to s and not started
// goes back to the group; a group left without subscribers is dropped with
// its messages, and a topic without groups with it.
func (b *bus) leave(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := s.group
	tp := g.topic
	tp.mu.Lock()
	defer tp.mu.Unlock()
	s.gone = true
	for i, x := range g.subs {
		if x == s {
			g.subs = append(g.subs[:i], g.subs[i+1:]...)
			break
		}
	}
	var back []*delivery
	for len(s.work) > 0 {
		back = append(back, <-s.work)
	}
	if len(g.subs) == 0 {
		g.dead = true
		if g.timer != nil {
			g.timer.Stop()
		}
		delete(tp.groups, g.name)
		if len(tp.groups) == 0 && b.topics[tp.name] == tp {
			delete(b.topics, tp.name)
		}
		return
	}
	for i := len(back) - 1; i >= 0; i-- {
		g.pushFront(back[i])
	}
	g.dispatch()
}

// publish queues msgs, in order, in every group of the topic and delivers
// what it can.
func (b *bus) publish(topicName string, msgs []*message) {
	if len(msgs) == 0 {
		return
	}
	b.mu.Lock()
	tp := b.topics[topicName]
	b.mu.Unlock()
	if tp == nil {
		return // nobody subscribes: dropped
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, g := range tp.groups {
		for _, m := range msgs {
			g.ready = append(g.ready, &delivery{msg: m})
		}
		g.dispatch()
	}
}

// done takes back a slot of s after a delivery: err nil acknowledges it;
// otherwise it is redelivered after a back-off (or, when s had ended before
// calling its handler, at once), unless its retries are used up or its
// group is gone.
func (b *bus) done(s *subscriber, d *delivery, err error, called bool) {
	g := s.group
	g.topic.mu.Lock()
	defer g.topic.mu.Unlock()
	if !s.gone {
		s.free++
	}
	log := s.broker.log
	switch {
	case g.dead:
		if err != nil {
			log.Debug("dropping an unacknowledged message: its group has no subscriber left", "topic", g.topic.name, "group", g.name)
		}
	case err == nil:
	case !called:
		g.pushFront(d)
	default:
		d.failures++
		cfg := s.broker.cfg
		if cfg.MaxRetries >= 0 && d.failures > cfg.MaxRetries {
			log.Warn("dropping a message: its redeliveries are used up", "topic", g.topic.name, "group", g.name, "failures", d.failures, "error", err)
			break
		}
		wait := cfg.backOff(d.failures)
		d.notBefore = time.Now().Add(wait)
		if errors.Is(err, errPanic) {
			log.Error("handler panicked; message will be redelivered", "topic", g.topic.name, "error", err, "backoff", wait)
		} else {
			log.Debug("handler failed; message will be redelivered", "topic", g.topic.name, "failures", d.failures, "backoff", wait, "error", err)
		}
		if g.ordered() && g.hold == nil {
			g.hold = d
		} else {
			heap.Push(&g.delayed, d)
		}
	}
	g.dispatch()
}

// ordered reports whether the group keeps publish order: one subscriber
// with a single slot.
func (g *group) ordered() bool { return len(g.subs) == 1 && g.subs[0].slots == 1 }

// dispatch hands ready deliveries to subscribers with a free slot, round
// robin, and arms the timer for the earliest back-off still running. A
// subscriber's work channel has a slot of capacity per free slot, so the
// sends never block.
func (g *group) dispatch() {
	now := time.Now()
	for len(g.subs) > 0 {
		i := g.freeSubscriber()
		if i < 0 {
			break
		}
		d := g.take(now)
		if d == nil {
			break
		}
		s := g.subs[i]
		s.free--
		s.work <- d
		g.next = (i + 1) % len(g.subs)
	}
	g.arm(now)
}

func (g *group) freeSubscriber() int {
	for k := range g.subs {
		i := (g.next + k) % len(g.subs)
		if g.subs[i].free > 0 {
			return i
		}
	}
	return -1
}

// take removes and returns the next delivery that may go now, dropping
// expired messages on the way; nil when none may.
func (g *group) take(now time.Time) *delivery {
	if d := g.hold; d != nil {
		switch {
		case d.msg.expired(now):
			g.hold = nil
		case !d.notBefore.After(now):
			g.hold = nil
			return d
		case g.ordered():
			return nil // head-of-line
		}
	}
	for len(g.delayed) > 0 && !g.delayed[0].notBefore.After(now) {
		if d := heap.Pop(&g.delayed).(*delivery); !d.msg.expired(now) {
			return d
		}
	}
	for g.readyAt < len(g.ready) {
		d := g.ready[g.readyAt]
		g.ready[g.readyAt] = nil
		g.readyAt++
		if g.readyAt == len(g.ready) {
			g.ready, g.readyAt = g.ready[:0], 0
		} else if g.readyAt > 1024 && g.readyAt > len(g.ready)/2 {
			n := copy(g.ready, g.ready[g.readyAt:])
			clear(g.ready[n:])
			g.ready, g.readyAt = g.ready[:n], 0
		}
		if !d.msg.expired(now) {
			return d
		}
	}
	return nil
}

func (g *group) pushFront(d *delivery) {
	if g.readyAt > 0 {
		g.readyAt--
		g.ready[g.readyAt] = d
		return
	}
	g.ready = append([]*delivery{d}, g.ready...)
}

// arm sets the timer to the earliest back-off end, if any is pending.
func (g *group) arm(now time.Time) {
	var at time.Time
	if g.hold != nil {
		at = g.hold.notBefore
	}
	if len(g.delayed) > 0 && (at.IsZero() || g.delayed[0].notBefore.Before(at)) {
		at = g.delayed[0].notBefore
	}
	if at.IsZero() || at.Equal(g.timerAt) {
		return
	}
	g.timerAt = at
	wait := max(at.Sub(now), 0)
	if g.timer == nil {
		tp := g.topic
		g.timer = time.AfterFunc(wait, func() {
			tp.mu.Lock()
			defer tp.mu.Unlock()
			if !g.dead {
				g.timerAt = time.Time{}
				g.dispatch()
			}
		})
		return
	}
	g.timer.Reset(wait)
}

// delayHeap orders nacked deliveries by the end of their back-off.
type delayHeap []*delivery

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].notBefore.Before(h[j].notBefore) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(*delivery)) }
func (h *delayHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}
