// Package mqtt3 is the bindings.mqtt3 binding, for MQTT 3.1.1 brokers, with
// both directions: the output side publishes (operation create) to the
// component's topic, or to the request metadata "topic"; the input side
// subscribes to the topic and hands each message to the app, with the
// metadata "topic" naming the topic it was published to.
//
// Delivery guarantee of the input side (QoS 1 or 2): at least once, as far
// as the broker keeps the session. A message is acknowledged to the broker
// only after the app accepted it. When the app rejects it, the binding hands
// it to the app again up to backOffMaxRetries times (-1: until accepted),
// waiting 200ms, then twice as long each time up to 5s; after that the
// message stays unacknowledged, and with cleanSession false (the default)
// and a stable consumerID the broker delivers it again when the input side
// next connects (a sidecar restart, a reconnect). Brokers stop sending to a
// client that holds too many unacknowledged messages (mosquitto:
// max_inflight_messages, 20), so an app that keeps rejecting events stalls
// its binding until it accepts them or the sidecar restarts. With QoS 0
// there is no acknowledgement and a rejected message is lost after the
// retries.
package mqtt3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/internal/mdcheck"
	"github.com/mecha-dev/mecha/components/internal/mqttconn"
)

// Timing of connections and retries.
const (
	connectTimeout  = mqttconn.ConnectTimeout
	publishTimeout  = 30 * time.Second
	subscribeWait   = 10 * time.Second
	disconnectQuiet = 250 // ms
	retryFirst      = 200 * time.Millisecond
	retryMax        = 5 * time.Second
)

// Binding is the MQTT binding; one instance serves one direction.
type Binding struct {
	log *slog.Logger
	s   settings

	mu         sync.Mutex
	inited     bool
	closed     bool
	producer   mqtt.Client
	cancelRead context.CancelFunc // ends the running Read
	readDone   chan struct{}      // closed when Read returns
}

var (
	_ bindings.Input  = (*Binding)(nil)
	_ bindings.Output = (*Binding)(nil)
)

// New returns an uninitialised binding.
func New(d components.Deps) *Binding {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Binding{log: log}
}

// Init validates the metadata; connections are made on first use (Read, or
// the first Invoke), so a broker that is down does not fail the sidecar.
func (b *Binding) Init(_ context.Context, md components.Metadata) error {
	s, err := parseSettings(md)
	if err != nil {
		return err
	}
	mdcheck.WarnUnknown(b.log, md, knownProperties...)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s, b.inited = s, true
	return nil
}

// Operations lists create (publish).
func (b *Binding) Operations() []bindings.Operation {
	return []bindings.Operation{bindings.OperationCreate}
}

func (b *Binding) clientOptions(clientID string) *mqtt.ClientOptions {
	return b.s.ClientOptions(clientID, b.log).
		SetOrderMatters(false).
		SetResumeSubs(true).
		SetMaxReconnectInterval(30 * time.Second)
}

// Invoke publishes req.Data (operation create).
func (b *Binding) Invoke(ctx context.Context, req *bindings.InvokeRequest) (*bindings.InvokeResponse, error) {
	if req.Operation != bindings.OperationCreate {
		return nil, fmt.Errorf("unsupported operation %s: mqtt3 supports create (publish)", req.Operation)
	}
	c, err := b.producerClient(ctx)
	if err != nil {
		return nil, err
	}
	topic := b.s.Topic
	if t := req.Metadata["topic"]; t != "" {
		topic = t
	}
	retain := b.s.Retain
	if v := req.Metadata["retain"]; v != "" {
		if retain, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("metadata %q: %q is not a boolean", "retain", v)
		}
	}
	if err := mqttconn.Wait(ctx, c.Publish(topic, b.s.QoS, retain, req.Data), publishTimeout, "publishing"); err != nil {
		return nil, fmt.Errorf("publishing to %s: %w", topic, err)
	}
	return nil, nil
}

// producerClient returns the publishing connection, connecting it first.
func (b *Binding) producerClient(ctx context.Context) (mqtt.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.inited:
		return nil, errors.New("mqtt3 binding is not initialised")
	case b.closed:
		return nil, errors.New("mqtt3 binding is closed")
	case b.producer != nil:
		return b.producer, nil
	}
	c := mqtt.NewClient(b.clientOptions(b.s.ClientID + "-producer"))
	if err := mqttconn.Wait(ctx, c.Connect(), connectTimeout, "connecting"); err != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("connecting to %s: %w", b.s.Broker, err)
	}
	b.producer = c
	return c, nil
}

// Read subscribes and delivers messages until ctx ends or the binding is
// closed. It keeps trying to connect while the broker is unreachable.
func (b *Binding) Read(ctx context.Context, handler bindings.Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.mu.Lock()
	switch {
	case !b.inited:
		b.mu.Unlock()
		return errors.New("mqtt3 binding is not initialised")
	case b.closed:
		b.mu.Unlock()
		return errors.New("mqtt3 binding is closed")
	case b.cancelRead != nil:
		b.mu.Unlock()
		return errors.New("mqtt3 binding is already being read")
	}
	b.cancelRead = cancel
	done := make(chan struct{})
	b.readDone = done
	b.mu.Unlock()
	defer close(done)

	s := &subscription{b: b, handler: handler}
	clientID := b.s.ClientID + "-consumer"
	opts := b.clientOptions(clientID).
		SetAutoAckDisabled(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			s.subscribe(ctx, c, func(_ mqtt.Client, m mqtt.Message) { s.onMessage(ctx, m) })
		})
	c := mqtt.NewClient(opts)
	defer s.stop()
	defer c.Disconnect(disconnectQuiet)
	delay := retryFirst
	for {
		err := mqttconn.Wait(ctx, c.Connect(), connectTimeout+time.Second, "connecting")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		b.log.Warn("MQTT input binding cannot connect; retrying", "broker", b.s.Broker, "clientID", clientID, "error", err, "retryIn", delay)
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(2*delay, 30*time.Second)
	}
	b.log.Info("MQTT input binding connected", "broker", b.s.Broker, "topic", b.s.Topic, "clientID", clientID)
	<-ctx.Done()
	return nil
}

// subscription is one Read: it (re)subscribes on every connection and
// tracks the message handlers it started.
type subscription struct {
	b       *Binding
	handler bindings.Handler

	mu       sync.Mutex
	stopping bool
	wg       sync.WaitGroup
}

func (s *subscription) subscribe(ctx context.Context, c mqtt.Client, onMessage mqtt.MessageHandler) {
	b := s.b
	tok := c.Subscribe(b.s.Topic, b.s.QoS, onMessage)
	if err := mqttconn.Wait(ctx, tok, subscribeWait, "subscribing"); err != nil && ctx.Err() == nil {
		// The connection is most likely broken; paho reconnects and this
		// runs again.
		b.log.Error("MQTT subscribe failed", "topic", b.s.Topic, "error", err)
	}
}

// onMessage runs on a paho goroutine per message.
func (s *subscription) onMessage(ctx context.Context, m mqtt.Message) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return // not acknowledged: the broker delivers it again later
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.deliver(ctx, m)
}

// deliver hands m to the app, retrying with back-off, and acknowledges it
// once the app accepted it.
func (s *subscription) deliver(ctx context.Context, m mqtt.Message) {
	b := s.b
	ev := &bindings.Event{Data: m.Payload(), Metadata: map[string]string{"topic": m.Topic()}}
	delay := retryFirst
	for attempt := 0; ; attempt++ {
		_, err := s.handler(ctx, ev)
		if err == nil {
			m.Ack()
			return
		}
		if ctx.Err() != nil {
			return
		}
		if b.s.BackOffMaxRetries >= 0 && attempt >= b.s.BackOffMaxRetries {
			b.log.Error("the app rejected an MQTT message; it stays unacknowledged and the broker delivers it again on the next connection",
				"topic", m.Topic(), "messageID", m.MessageID(), "attempts", attempt+1, "error", err)
			return
		}
		b.log.Warn("the app rejected an MQTT message; retrying", "topic", m.Topic(), "messageID", m.MessageID(), "retryIn", delay, "error", err)
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, retryMax)
	}
}

// stop refuses new messages and waits for the running handlers.
func (s *subscription) stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close stops Read (waiting for it) and disconnects; it is idempotent.
func (b *Binding) Close() error {
	b.mu.Lock()
	b.closed = true
	cancel, done, producer := b.cancelRead, b.readDone, b.producer
	b.producer = nil
	b.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if producer != nil {
		producer.Disconnect(disconnectQuiet)
	}
	return nil
}
