package mqtt3_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/pubsub/mqtt3"
	"github.com/mecha-dev/mecha/components/pubsub/pubsubtest"
	"github.com/mecha-dev/mecha/internal/mechatest"
)

// testLogger logs to the test's output until the test's cleanups run:
// paho calls the connection-lost handler on a goroutine of its own, which
// can log after the broker was closed, and writing to a finished test's
// output is a data race.
func testLogger(tb testing.TB) *slog.Logger {
	w := &testWriter{w: tb.Output()}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

var seq atomic.Int64

// unique returns a name unique to this run (letters, digits and '-').
func unique(prefix string) string {
	return fmt.Sprintf("%s-%x-%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

// newBroker returns an initialised broker on url with consumer group
// group, closed at the end of the test; kv are extra properties.
func newBroker(tb testing.TB, url, group string, kv ...string) *mqtt3.Broker {
	tb.Helper()
	p := map[string]string{"url": url, "consumerID": group}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	b := mqtt3.New(components.Deps{Logger: testLogger(tb)})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.Init(ctx, components.Metadata{Name: "pubsub", Type: "pubsub.mqtt3", Properties: p}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

func conformanceOptions(t *testing.T, kv ...string) pubsubtest.Options {
	raw := pubsubtest.ServiceEnv(t, "MQTT_URL")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("MQTT_URL %q: %v", raw, err)
	}
	px := mechatest.StartProxy(t, u.Host)
	proxied := "tcp://" + px.Addr
	return pubsubtest.Options{
		New: func(t *testing.T) pubsub.Broker {
			return newBroker(t, proxied, unique("pubsubtest"), kv...)
		},
		NewWithGroup: func(t *testing.T, group string) pubsub.Broker { return newBroker(t, proxied, group, kv...) },
		// Mosquitto is shared with other tests and cannot be restarted: an
		// outage of every connection to it (the proxy cut, then restored)
		// stands in for a restart. It keeps the sessions (cleanSession
		// false), as a server that persists them would across a restart.
		Restart: func(t *testing.T) {
			px.SetDown(true)
			time.Sleep(time.Second) // the outage: publishes and deliveries stall meanwhile
			px.SetDown(false)
		},
		NoMetadata: true, // MQTT 3.1.1 has no headers
		// Redelivery is in process, after 100ms, 200ms, 400ms.
		RedeliveryTimeout: 3 * time.Second,
		// Nothing to delete: MQTT topics exist only in subscriptions, and
		// the suite publishes nothing retained.
	}
}

func TestConformance(t *testing.T) {
	pubsubtest.Run(t, conformanceOptions(t))
}

// TestConformanceOrdered: with concurrency 1 one subscriber gets publish
// order (the server keeps a publisher's order for QoS 1).
func TestConformanceOrdered(t *testing.T) {
	o := conformanceOptions(t, "concurrency", "1")
	o.Ordered = true
	pubsubtest.Run(t, o)
}

// TestConformanceQoS2 runs the suite with exactly-once handshakes on the
// wire (acknowledged with PUBREC after the handler).
func TestConformanceQoS2(t *testing.T) {
	if testing.Short() {
		t.Skip("short: QoS 1 is covered by TestConformance")
	}
	pubsubtest.Run(t, conformanceOptions(t, "qos", "2"))
}

// recorder collects the payloads a handler got.
type recorder struct {
	mu  sync.Mutex
	got map[string]int
	ch  chan *pubsub.Message
}

func newRecorder() *recorder {
	return &recorder{got: map[string]int{}, ch: make(chan *pubsub.Message, 1000)}
}

func (r *recorder) handle(_ context.Context, m *pubsub.Message) error {
	r.mu.Lock()
	r.got[string(m.Data)]++
	r.mu.Unlock()
	select {
	case r.ch <- m:
	default:
	}
	return nil
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.got {
		n += c
	}
	return n
}

// await waits until the recorder got want, returning its message.
func (r *recorder) await(t *testing.T, want string) *pubsub.Message {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m := <-r.ch:
			if string(m.Data) == want {
				return m
			}
		case <-timeout:
			t.Fatalf("%q not delivered within 20s", want)
			return nil
		}
	}
}

func subscribe(t *testing.T, b pubsub.Broker, topic string, h pubsub.Handler, md map[string]string) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Metadata: md}, h); err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return cancel
}

func publish(t *testing.T, b pubsub.Broker, topic, data string, md map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(data), Metadata: md}); err != nil {
		t.Fatalf("Publish(%q, %q): %v", topic, data, err)
	}
}

// eventually polls cond until it holds or 20s pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after 20s: %s", what, state)
		}
		time.Sleep(10 * time.Millisecond) // polling
	}
}

// TestClosedMemberLeavesGroup: once a sidecar of a group closes, the
// others get every message. Mosquitto keeps handing a share group's
// messages to an offline member's persistent session, so a generated
// client id's session must end on Close or half the messages would go to
// a session nobody resumes.
func TestClosedMemberLeavesGroup(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	group, topic := unique("leave"), unique("leave-topic")
	stay, leave, pub := newBroker(t, url, group), newBroker(t, url, group), newBroker(t, url, unique("leave-pub"))
	r := newRecorder()
	subscribe(t, stay, topic, r.handle, nil)
	subscribe(t, leave, topic, newRecorder().handle, nil)
	if err := leave.Close(); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		publish(t, pub, topic, fmt.Sprint(i), nil)
	}
	eventually(t, "the remaining member getting every message", func() (bool, string) {
		return r.total() >= n, fmt.Sprintf("%d of %d", r.total(), n)
	})
}

// TestStableClientIDKeepsSession: with a stable clientID (and cleanSession
// false) the server keeps the session while the sidecar is down: a message
// its handler never accepted, and one published meanwhile, are delivered
// after it starts again, including before the app subscribes.
func TestStableClientIDKeepsSession(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	group, topic, clientID := unique("stable"), unique("stable-topic"), unique("stable-client")
	t.Cleanup(func() { endSession(t, url, clientID) })
	pub := newBroker(t, url, unique("stable-pub"))

	first := newBroker(t, url, group, "clientID", clientID, "backOffMaxRetries", "0")
	rejected := make(chan struct{}, 1)
	subscribe(t, first, topic, func(context.Context, *pubsub.Message) error {
		select {
		case rejected <- struct{}{}:
		default:
		}
		return fmt.Errorf("not now")
	}, nil)
	publish(t, pub, topic, "precious", nil)
	select {
	case <-rejected:
	case <-time.After(20 * time.Second):
		t.Fatal("the first instance never got the message")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, topic, "while-down", nil)

	second := newBroker(t, url, group, "clientID", clientID)
	r := newRecorder()
	subscribe(t, second, topic, r.handle, nil)
	r.await(t, "precious")
	if r.count("while-down") == 0 {
		r.await(t, "while-down")
	}
}

// endSession removes a persistent session a test left on the shared
// server.
func endSession(t *testing.T, url, clientID string) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Logf("cannot end session %s: %v", clientID, tok.Error())
		return
	}
	c.Disconnect(100)
}

// TestResubscribeGetsHeldMessages: messages that arrive after a
// subscription ended (before the topic is unsubscribed at the server) are
// not handed to its handler but to the next subscription to the topic.
func TestResubscribeGetsHeldMessages(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	b, pub := newBroker(t, url, unique("held")), newBroker(t, url, unique("held-pub"))
	topic := unique("held-topic")
	old := newRecorder()
	cancel := subscribe(t, b, topic, old.handle, nil)
	publish(t, pub, topic, "before", nil)
	old.await(t, "before")
	cancel()
	publish(t, pub, topic, "between", nil)
	r := newRecorder()
	subscribe(t, b, topic, r.handle, nil)
	r.await(t, "between")
	if n := old.count("between"); n != 0 {
		t.Errorf("the ended subscription's handler got a message %d times", n)
	}
}

// TestWildcardsAndExplicitShare: a filter with '+' or '#' gets the
// messages of the topics it matches, each with its own topic; a topic
// given as $share/<group>/<topic> is subscribed as it is.
func TestWildcardsAndExplicitShare(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	b, pub := newBroker(t, url, unique("wild")), newBroker(t, url, unique("wild-pub"))
	base := unique("wild")
	plus, hash, shared := newRecorder(), newRecorder(), newRecorder()
	subscribe(t, b, base+"/+/temp", plus.handle, nil)
	subscribe(t, b, base+"/logs/#", hash.handle, nil)
	subscribe(t, b, "$share/"+unique("explicit")+"/"+base+"/direct", shared.handle, nil)

	publish(t, pub, base+"/kitchen/temp", "21", nil)
	publish(t, pub, base+"/logs/a/b", "line", nil)
	publish(t, pub, base+"/direct", "d", nil)
	if m := plus.await(t, "21"); m.Topic != base+"/kitchen/temp" {
		t.Errorf("'+' delivery has Topic %q, want %q", m.Topic, base+"/kitchen/temp")
	}
	if m := hash.await(t, "line"); m.Topic != base+"/logs/a/b" {
		t.Errorf("'#' delivery has Topic %q, want %q", m.Topic, base+"/logs/a/b")
	}
	if m := shared.await(t, "d"); m.Topic != base+"/direct" {
		t.Errorf("$share delivery has Topic %q, want %q", m.Topic, base+"/direct")
	}
	if plus.count("line") != 0 || hash.count("21") != 0 {
		t.Errorf("a wildcard subscription got a message it does not match")
	}
}

// TestSharedSubscriptionsOff: without shared subscriptions every sidecar of
// a group gets every message.
func TestSharedSubscriptionsOff(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	group, topic := unique("noshare"), unique("noshare-topic")
	b1 := newBroker(t, url, group, "sharedSubscriptions", "false")
	b2 := newBroker(t, url, group, "sharedSubscriptions", "false")
	r1, r2 := newRecorder(), newRecorder()
	subscribe(t, b1, topic, r1.handle, nil)
	subscribe(t, b2, topic, r2.handle, nil)
	for i := range 10 {
		publish(t, b1, topic, fmt.Sprint(i), nil)
	}
	eventually(t, "both members getting all 10 messages", func() (bool, string) {
		return r1.total() >= 10 && r2.total() >= 10, fmt.Sprintf("%d and %d", r1.total(), r2.total())
	})
}

// TestRetain: the request metadata "retain" makes a message retained, and
// a later subscriber gets it with metadata retained=true.
func TestRetain(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	b := newBroker(t, url, unique("retain"))
	topic := unique("retain-topic")
	publish(t, b, topic, "last-known", map[string]string{"retain": "true"})
	t.Cleanup(func() { publish(t, b, topic, "", map[string]string{"retain": "true"}) }) // an empty retained message clears it
	r := newRecorder()
	subscribe(t, b, topic, r.handle, nil)
	if m := r.await(t, "last-known"); m.Metadata["retained"] != "true" {
		t.Errorf("metadata = %v, want retained=true", m.Metadata)
	}
	publish(t, b, topic, "live", nil)
	if m := r.await(t, "live"); m.Metadata["retained"] != "false" {
		t.Errorf("metadata = %v, want retained=false", m.Metadata)
	}
	ctx := context.Background()
	if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Metadata: map[string]string{"retain": "maybe"}}); err == nil || !strings.Contains(err.Error(), `"retain"`) {
		t.Errorf("Publish with retain=maybe = %v, want an error naming retain", err)
	}
}

// TestBadTopics: malformed topics are refused before they reach the
// server (which would close the connection), and the connection keeps
// working.
func TestBadTopics(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	b := newBroker(t, url, unique("bad"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, topic := range []string{"", "a/#", "a/+", "$SYS/x", "a\x00b"} {
		if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("x")}); err == nil {
			t.Errorf("Publish to %q succeeded, want an error", topic)
		}
	}
	for _, topic := range []string{"", "a/#/b", "a+", "$share/g", "$share//t", "$share/g+/t"} {
		if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, newRecorder().handle); err == nil {
			t.Errorf("Subscribe to %q succeeded, want an error", topic)
		}
	}
	topic := unique("bad-after")
	r := newRecorder()
	subscribe(t, b, topic, r.handle, nil)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, r.handle); err == nil || !strings.Contains(err.Error(), "already subscribed") {
		t.Errorf("second Subscribe to %q = %v, want already subscribed", topic, err)
	}
	publish(t, b, topic, "still-connected", nil)
	r.await(t, "still-connected")
}

// TestMaxRetries: a message whose handler keeps failing is handed to it
// backOffMaxRetries+1 times, then left alone; the next message flows.
func TestMaxRetries(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	b := newBroker(t, url, unique("retries"), "backOffMaxRetries", "2", "backOffInitialInterval", "10ms", "concurrency", "1")
	topic := unique("retries-topic")
	var mu sync.Mutex
	attempts := map[string]int{}
	next := make(chan struct{})
	subscribe(t, b, topic, func(_ context.Context, m *pubsub.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[string(m.Data)]++
		if string(m.Data) == "poison" {
			return fmt.Errorf("rejected")
		}
		close(next)
		return nil
	}, nil)
	publish(t, b, topic, "poison", nil)
	publish(t, b, topic, "next", nil)
	select {
	case <-next:
	case <-time.After(20 * time.Second):
		t.Fatal("the message after the rejected one was not delivered")
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts["poison"] != 3 {
		t.Errorf("the rejected message was handled %d times, want 3 (backOffMaxRetries 2)", attempts["poison"])
	}
}

func TestInvalidMetadata(t *testing.T) {
	tests := map[string]struct {
		props map[string]string
		want  string
	}{
		"no url":              {map[string]string{"consumerID": "c"}, `"url"`},
		"no consumer":         {map[string]string{"url": "tcp://h:1"}, `"consumerID": is required`},
		"consumer with slash": {map[string]string{"url": "tcp://h:1", "consumerID": "a/b"}, `"consumerID"`},
		"bad scheme":          {map[string]string{"url": "http://h:1", "consumerID": "c"}, "scheme"},
		"qos 3":               {map[string]string{"url": "tcp://h:1", "consumerID": "c", "qos": "3"}, `"qos"`},
		"zero concurrency":    {map[string]string{"url": "tcp://h:1", "consumerID": "c", "concurrency": "0"}, `"concurrency"`},
		"bad retries":         {map[string]string{"url": "tcp://h:1", "consumerID": "c", "backOffMaxRetries": "-2"}, `"backOffMaxRetries"`},
		"bad interval":        {map[string]string{"url": "tcp://h:1", "consumerID": "c", "backOffInitialInterval": "0"}, `"backOffInitialInterval"`},
		"max below initial":   {map[string]string{"url": "tcp://h:1", "consumerID": "c", "backOffMaxInterval": "1ms"}, `"backOffMaxInterval"`},
		"bad shared":          {map[string]string{"url": "tcp://h:1", "consumerID": "c", "sharedSubscriptions": "perhaps"}, `"sharedSubscriptions"`},
		"bad ca":              {map[string]string{"url": "ssl://h:1", "consumerID": "c", "caCert": "nope"}, `"caCert"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			b := mqtt3.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init = %v, want an error containing %s", err, tt.want)
			}
		})
	}
	b := mqtt3.New(components.Deps{})
	if err := b.Close(); err != nil {
		t.Fatalf("Close before Init = %v", err)
	}
	if err := b.Publish(context.Background(), &pubsub.PublishRequest{Topic: "t"}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

// TestUnreachable: Init fails when nothing answers, within its ctx, and
// Close after that is fine.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	b := mqtt3.New(components.Deps{Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err = b.Init(ctx, components.Metadata{Properties: map[string]string{"url": "tcp://" + addr, "consumerID": "c"}})
	if err == nil {
		t.Fatal("Init succeeded with no server")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Init took %v, longer than its ctx", d)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close after a failed Init = %v", err)
	}
}

// BenchmarkBroker runs the shared benchmarks on the real server (no
// proxy).
func BenchmarkBroker(b *testing.B) {
	url := pubsubtest.ServiceEnv(b, "MQTT_URL")
	pubsubtest.Bench(b, newBroker(b, url, unique("bench")))
}
