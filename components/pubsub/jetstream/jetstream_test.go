package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/pubsub/jetstream"
	"github.com/mecha-dev/mecha/components/pubsub/pubsubtest"
	"github.com/mecha-dev/mecha/internal/mechatest"
)

// Test settings: a nacked message comes back after 100ms and an unanswered
// one after 2s, so the suite's redelivery and outage cases take seconds.
var testProps = map[string]string{
	"ackWait": "2s",
	"backOff": "100ms",
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newBroker returns an initialised broker on url with consumer group
// group, closed at the end of the test; kv are extra properties.
func newBroker(tb testing.TB, url, group string, kv ...string) *jetstream.Broker {
	tb.Helper()
	p := map[string]string{"natsURL": url, "consumerID": group}
	for k, v := range testProps {
		p[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	b := jetstream.New(components.Deps{Logger: testLogger(tb)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Init(ctx, components.Metadata{Name: "pubsub", Type: "pubsub.jetstream", Properties: p}); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

var groups atomic.Int64

func uniqueGroup(prefix string) string {
	return fmt.Sprintf("%s-%x-%d", prefix, time.Now().UnixNano(), groups.Add(1))
}

// natsServer is an in-process nats-server with JetStream whose data
// survives restarts (same port, same store directory).
type natsServer struct {
	tb       testing.TB
	storeDir string
	port     int
	opts     func(*server.Options)

	mu sync.Mutex
	ns *server.Server
}

// startServer starts an in-process server on 127.0.0.1 (a free port),
// with a max_payload of 8 MiB (the default is 1 MiB), stopped at the end of
// the test. opts, when set, changes the options.
func startServer(tb testing.TB, opts func(*server.Options)) *natsServer {
	tb.Helper()
	s := &natsServer{tb: tb, storeDir: tb.TempDir(), port: server.RANDOM_PORT, opts: opts}
	s.start()
	s.port = s.ns.Addr().(*net.TCPAddr).Port
	tb.Cleanup(s.shutdown)
	return s
}

func (s *natsServer) start() {
	s.tb.Helper()
	o := &server.Options{
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.storeDir,
		MaxPayload: 8 << 20,
		NoSigs:     true,
		NoLog:      true,
	}
	if s.opts != nil {
		s.opts(o)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		s.tb.Fatalf("nats-server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		s.tb.Fatal("nats-server not ready after 10s")
	}
	s.mu.Lock()
	s.ns = ns
	s.mu.Unlock()
}

func (s *natsServer) shutdown() {
	s.mu.Lock()
	ns := s.ns
	s.mu.Unlock()
	ns.Shutdown()
	ns.WaitForShutdown()
}

// restart shuts the server down and starts a new one on the same port and
// store directory.
func (s *natsServer) restart(t *testing.T) {
	s.shutdown()
	time.Sleep(500 * time.Millisecond) // the outage: publishes and pulls fail meanwhile
	s.start()
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// rawJS is a plain JetStream client, for checks and cleanup.
func rawJS(tb testing.TB, url string) natsjs.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// deleteStream removes the stream the broker created for topic.
func deleteStream(js natsjs.JetStream) func(string) error {
	return func(topic string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		name, err := js.StreamNameBySubject(ctx, topic)
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			return nil // nothing was published to it
		}
		if err != nil {
			return err
		}
		return js.DeleteStream(ctx, name)
	}
}

func inProcessOptions(t *testing.T, kv ...string) pubsubtest.Options {
	s := startServerProcess(t)
	return pubsubtest.Options{
		New: func(t *testing.T) pubsub.Broker {
			return newBroker(t, s.url(), uniqueGroup("pubsubtest"), kv...)
		},
		NewWithGroup: func(t *testing.T, group string) pubsub.Broker { return newBroker(t, s.url(), group, kv...) },
		Restart:      s.restart,
		// Every subscription of the default (concurrency single) gets its
		// messages in stream order.
		Ordered:           true,
		LargeMessageSize:  2 << 20,
		RedeliveryTimeout: 5 * time.Second,
	}
}

// TestConformance runs the suite against an embedded server (nats-server
// as a library, as the control plane runs it) that the Restart case really
// restarts. It runs in a child process of the test, not in the test's own:
// the suite checks that Close leaves no goroutine behind, and the streams
// and consumers a run creates keep server goroutines alive.
func TestConformance(t *testing.T) {
	pubsubtest.Run(t, inProcessOptions(t))
}

// TestConformanceParallel: with concurrency parallel, handlers run at once
// and order is not promised.
func TestConformanceParallel(t *testing.T) {
	o := inProcessOptions(t, "concurrency", "parallel")
	o.Ordered = false
	pubsubtest.Run(t, o)
}

// TestConformanceExternal runs the suite against the nats-server started
// by start-services.sh (NATS_URL), through a TCP proxy whose cut stands in
// for a restart (the server is shared with other tests).
func TestConformanceExternal(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "NATS_URL")
	px := mechatest.StartProxy(t, strings.TrimPrefix(url, "nats://"))
	proxied := "nats://" + px.Addr
	pubsubtest.Run(t, pubsubtest.Options{
		New: func(t *testing.T) pubsub.Broker {
			return newBroker(t, proxied, uniqueGroup("pubsubtest"))
		},
		NewWithGroup: func(t *testing.T, group string) pubsub.Broker { return newBroker(t, proxied, group) },
		Restart: func(t *testing.T) {
			px.SetDown(true)
			time.Sleep(time.Second) // the outage: publishes and pulls fail meanwhile
			px.SetDown(false)
		},
		Ordered: true,
		// The server runs with the default max_payload of 1 MiB, which
		// counts headers too: the large message leaves room for them.
		LargeMessageSize:  1<<20 - 1024,
		RedeliveryTimeout: 5 * time.Second,
		DeleteTopic:       deleteStream(rawJS(t, url)),
	})
}

// publish publishes data to topic or fails the test.
func publish(t *testing.T, b pubsub.Broker, topic string, data string, md map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte(data), Metadata: md}); err != nil {
		t.Fatalf("Publish(%q, %q): %v", topic, data, err)
	}
}

// collect subscribes b to topic and returns a channel of the payloads it
// gets.
func collect(t *testing.T, b pubsub.Broker, topic string) <-chan string {
	t.Helper()
	got := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(_ context.Context, m *pubsub.Message) error {
		got <- string(m.Data)
		return nil
	}); err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return got
}

func receive(t *testing.T, got <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("received %q, want %q", g, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not received within 10s", w)
		}
	}
}

// TestExistingStream: as with Dapr, a topic covered by a stream someone
// created (ORDERS on orders.>) goes to that stream, and its consumer is
// named after the group and the topic.
func TestExistingStream(t *testing.T) {
	s := startServer(t, nil)
	js := rawJS(t, s.url())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, s.url(), "app")
	got := collect(t, b, "orders.new")
	publish(t, b, "orders.new", "o1", nil)
	receive(t, got, "o1")

	names := streamNames(t, js)
	if len(names) != 1 || names[0] != "ORDERS" {
		t.Fatalf("streams = %q, want only ORDERS", names)
	}
	st, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	var consumers []string
	for c := range st.ConsumerNames(ctx).Name() {
		consumers = append(consumers, c)
	}
	if len(consumers) != 1 || !strings.HasPrefix(consumers[0], "app_orders_new_") {
		t.Fatalf("consumers of ORDERS = %q, want one named app_orders_new_<hash>", consumers)
	}
}

func streamNames(t *testing.T, js natsjs.JetStream) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var names []string
	l := js.StreamNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestStreamPerTopic: without streamName each topic gets a stream of its
// own, named after it (a topic that is no valid stream name gets a
// readable one with a hash), with the topic as its only subject, on file
// storage.
func TestStreamPerTopic(t *testing.T) {
	s := startServer(t, nil)
	js := rawJS(t, s.url())
	b := newBroker(t, s.url(), "app")
	for _, topic := range []string{"orders", "a.b.c", "with/slash"} {
		publish(t, b, topic, "x", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		name, err := js.StreamNameBySubject(ctx, topic)
		if err != nil {
			cancel()
			t.Fatalf("stream of %q: %v", topic, err)
		}
		st, err := js.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		if topic == "orders" && name != "orders" {
			t.Errorf("stream of %q is %q, want it named after the topic", topic, name)
		}
		if strings.ContainsAny(name, "./") {
			t.Errorf("stream %q of %q has characters stream names cannot", name, topic)
		}
		if len(cfg.Subjects) != 1 || cfg.Subjects[0] != topic || cfg.Storage != natsjs.FileStorage || !cfg.AllowMsgTTL {
			t.Errorf("stream %q = subjects %q, storage %v, allow TTL %v; want [%q], file, true", name, cfg.Subjects, cfg.Storage, cfg.AllowMsgTTL, topic)
		}
	}
}

// TestStreamName: with streamName every topic goes to that one stream,
// created on first use and given each topic as a subject; topics stay
// apart.
func TestStreamName(t *testing.T) {
	s := startServer(t, nil)
	js := rawJS(t, s.url())
	b := newBroker(t, s.url(), "app", "streamName", "shared")
	ga, gb := collect(t, b, "topic-a"), collect(t, b, "topic-b")
	publish(t, b, "topic-a", "to a", nil)
	publish(t, b, "topic-b", "to b", nil)
	receive(t, ga, "to a")
	receive(t, gb, "to b")
	if names := streamNames(t, js); len(names) != 1 || names[0] != "shared" {
		t.Fatalf("streams = %q, want only shared", names)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if subj := st.CachedInfo().Config.Subjects; len(subj) != 2 {
		t.Fatalf("subjects of shared = %q, want both topics", subj)
	}
	select {
	case m := <-ga:
		t.Fatalf("topic-a got %q as well", m)
	case m := <-gb:
		t.Fatalf("topic-b got %q as well", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestDeduplication: a CloudEvent published twice (a retried publish) is
// stored once: its id is the Nats-Msg-Id. Other payloads are not
// de-duplicated.
func TestDeduplication(t *testing.T) {
	s := startServer(t, nil)
	js := rawJS(t, s.url())
	b := newBroker(t, s.url(), "app")
	ce := `{"specversion":"1.0","id":"evt-1","source":"app","type":"t","data":{}}`
	publish(t, b, "dedup", ce, nil)
	publish(t, b, "dedup", ce, nil)
	publish(t, b, "dedup", `{"id":"not-a-cloudevent"}`, nil)
	publish(t, b, "dedup", `{"id":"not-a-cloudevent"}`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "dedup")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 3 {
		t.Fatalf("stream holds %d messages, want 3 (the CloudEvent once, the other payload twice)", n)
	}
}

// TestMetadataHeaders: metadata arrives as headers other NATS clients can
// read; pairs that cannot be headers (and keys in the server's Nats-
// namespace) still arrive intact.
func TestMetadataHeaders(t *testing.T) {
	s := startServer(t, nil)
	b := newBroker(t, s.url(), "app")
	md := map[string]string{
		"plain":       "value",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"multi line":  "a\r\nb",
		"lead":        "  spaced",
		"Nats-Msg-Id": "mine",
	}
	var got atomic.Pointer[pubsub.Message]
	arrived := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "md"}, func(_ context.Context, m *pubsub.Message) error {
		if got.Swap(m) == nil {
			close(arrived)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "md", "x", md)
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
	m := got.Load()
	for k, v := range md {
		if m.Metadata[k] != v {
			t.Errorf("metadata %q = %q, want %q (all: %q)", k, m.Metadata[k], v, m.Metadata)
		}
	}
	for k := range m.Metadata {
		if _, ok := md[k]; !ok {
			t.Errorf("unexpected metadata %q = %q", k, m.Metadata[k])
		}
	}

	// A plain NATS subscriber sees the plain pairs as headers.
	nc, err := nats.Connect(s.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("md")
	if err == nil {
		err = nc.Flush() // the server knows of the subscription before the publish
	}
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "md", "y", map[string]string{"plain": "value"})
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("plain") != "value" {
		t.Fatalf("headers = %v, want plain: value", msg.Header)
	}
}

// TestKeepAlive: a handler slower than ackWait is not raced by a
// redelivery to the other member of its group: the broker keeps the
// message in progress while the handler runs.
func TestKeepAlive(t *testing.T) {
	s := startServer(t, nil)
	group := uniqueGroup("slow")
	b1 := newBroker(t, s.url(), group, "ackWait", "1s")
	b2 := newBroker(t, s.url(), group, "ackWait", "1s")
	var calls atomic.Int64
	done := make(chan struct{})
	h := func(ctx context.Context, _ *pubsub.Message) error {
		if calls.Add(1) == 1 {
			defer close(done)
			select {
			case <-time.After(2500 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, b := range []*jetstream.Broker{b1, b2} {
		if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "slow"}, h); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, b1, "slow", "x", nil)
	<-done
	time.Sleep(1500 * time.Millisecond) // past one more ack wait: a redelivery would have come
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want once", n)
	}
}

// TestConsumerRecreated: a subscription whose consumer is deleted under it
// creates it again and goes on delivering.
func TestConsumerRecreated(t *testing.T) {
	s := startServer(t, nil)
	js := rawJS(t, s.url())
	b := newBroker(t, s.url(), "app")
	got := collect(t, b, "recreate")
	publish(t, b, "recreate", "before", nil)
	receive(t, got, "before")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, "recreate", "app"); err != nil {
		t.Fatal(err)
	}
	// Published while the consumer is gone: a group that is created again
	// starts at the beginning of the stream, so it gets both (and "before"
	// once more).
	publish(t, b, "recreate", "after", nil)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-got:
			if m == "after" {
				return
			}
		case <-deadline:
			t.Fatal(`"after" not delivered once the consumer was deleted`)
		}
	}
}

// TestTTLWithoutServerSupport: on a stream that does not allow per-message
// TTLs (a server before 2.11, or a stream someone created), ttlInSeconds
// still keeps an expired message from handlers.
func TestTTLWithoutServerSupport(t *testing.T) {
	s := startServer(t, nil)
	js := rawJS(t, s.url())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "NOTTL", Subjects: []string{"nottl"}}); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, s.url(), "app")
	publish(t, b, "nottl", "expired", map[string]string{"ttlInSeconds": "1"})
	publish(t, b, "nottl", "fresh", map[string]string{"ttlInSeconds": "60"})
	time.Sleep(1100 * time.Millisecond) // let the first one expire before anyone subscribes
	got := collect(t, b, "nottl")
	receive(t, got, "fresh")
}

func TestPublishErrors(t *testing.T) {
	s := startServer(t, nil)
	b := newBroker(t, s.url(), "app")
	ctx := context.Background()
	for _, topic := range []string{"", "has space", "a..b", "wild.*", "wild.>", ".lead"} {
		if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: topic, Data: []byte("x")}); err == nil {
			t.Errorf("Publish to %q succeeded, want an error", topic)
		}
	}
	if err := b.Publish(ctx, &pubsub.PublishRequest{Topic: "ok", Data: []byte("x"), Metadata: map[string]string{"ttlInSeconds": "soon"}}); err == nil {
		t.Error("Publish with ttlInSeconds=soon succeeded, want an error")
	}
}

func TestInitErrors(t *testing.T) {
	tests := map[string]struct {
		props map[string]string
		want  string
	}{
		"no url":             {map[string]string{"consumerID": "c"}, `"natsURL": is required`},
		"no group":           {map[string]string{"natsURL": "nats://h"}, `"consumerID"`},
		"jwt without seed":   {map[string]string{"natsURL": "nats://h", "consumerID": "c", "jwt": "x"}, `"jwt"`},
		"cert without key":   {map[string]string{"natsURL": "nats://h", "consumerID": "c", "tls_client_cert": "c.pem"}, `"tls_client_cert"`},
		"two auth methods":   {map[string]string{"natsURL": "nats://h", "consumerID": "c", "token": "t", "user": "u"}, "set one of"},
		"bad deliver policy": {map[string]string{"natsURL": "nats://h", "consumerID": "c", "deliverPolicy": "some"}, `"deliverPolicy"`},
		"sequence no start":  {map[string]string{"natsURL": "nats://h", "consumerID": "c", "deliverPolicy": "sequence"}, `"startSequence"`},
		"bad ack wait":       {map[string]string{"natsURL": "nats://h", "consumerID": "c", "ackWait": "soon"}, `"ackWait"`},
		"bad backoff":        {map[string]string{"natsURL": "nats://h", "consumerID": "c", "backOff": "1s, never"}, `"backOff"`},
		"zero concurrency":   {map[string]string{"natsURL": "nats://h", "consumerID": "c", "concurrency": "0"}, `"concurrency"`},
		"bad stream name":    {map[string]string{"natsURL": "nats://h", "consumerID": "c", "streamName": "a.b"}, `"streamName"`},
		"bad ack policy":     {map[string]string{"natsURL": "nats://h", "consumerID": "c", "ackPolicy": "sometimes"}, `"ackPolicy"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			b := jetstream.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init = %v, want an error containing %s", err, tt.want)
			}
		})
	}
	t.Run("no server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		b := jetstream.New(components.Deps{})
		defer b.Close()
		err = b.Init(context.Background(), components.Metadata{Properties: map[string]string{"natsURL": "nats://" + addr, "consumerID": "c"}})
		if err == nil || !strings.Contains(err.Error(), "connect") {
			t.Fatalf("Init without a server = %v, want a connect error", err)
		}
	})
	t.Run("no jetstream", func(t *testing.T) {
		s := startServer(t, func(o *server.Options) { o.JetStream = false })
		b := jetstream.New(components.Deps{})
		defer b.Close()
		err := b.Init(context.Background(), components.Metadata{Properties: map[string]string{"natsURL": s.url(), "consumerID": "c"}})
		if err == nil || !strings.Contains(err.Error(), "JetStream is not available") {
			t.Fatalf("Init on a server without JetStream = %v, want a clear error", err)
		}
	})
	t.Run("close before init", func(t *testing.T) {
		if err := jetstream.New(components.Deps{}).Close(); err != nil {
			t.Fatalf("Close before Init = %v", err)
		}
	})
}

// BenchmarkBroker runs the shared benchmarks through the broker, against
// an in-process server and against the external one (NATS_URL, no proxy),
// next to BenchmarkRawPublish for the ratio.
func BenchmarkBroker(b *testing.B) {
	b.Run("in-process", func(b *testing.B) {
		s := startServer(b, nil)
		pubsubtest.Bench(b, newBroker(b, s.url(), uniqueGroup("bench")))
	})
	b.Run("external", func(b *testing.B) {
		url := pubsubtest.ServiceEnv(b, "NATS_URL")
		br := &topicRecorder{Broker: newBroker(b, url, uniqueGroup("bench"))}
		js := rawJS(b, url)
		b.Cleanup(func() {
			for _, tp := range br.list() {
				_ = deleteStream(js)(tp)
			}
		})
		pubsubtest.Bench(b, br)
	})
}

// BenchmarkRawPublish is the raw nats.go JetStream publish loop (one
// publisher, synchronous PubAck, 256-byte messages, a file-backed stream
// with one durable pull consumer acknowledging everything), the baseline
// for the broker's "publish" benchmark.
func BenchmarkRawPublish(b *testing.B) {
	run := func(b *testing.B, url string) {
		js := rawJS(b, url)
		ctx := context.Background()
		name := fmt.Sprintf("rawbench-%x", time.Now().UnixNano())
		if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: name, Subjects: []string{name}, Storage: natsjs.FileStorage}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
		cons, err := js.CreateOrUpdateConsumer(ctx, name, natsjs.ConsumerConfig{Durable: "bench", AckPolicy: natsjs.AckExplicitPolicy})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m natsjs.Msg) { _ = m.Ack() })
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cc.Stop)
		payload := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz", 10)[:256])
		b.ReportAllocs()
		for b.Loop() {
			if _, err := js.Publish(ctx, name, payload); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("in-process", func(b *testing.B) { run(b, startServer(b, nil).url()) })
	b.Run("external", func(b *testing.B) { run(b, pubsubtest.ServiceEnv(b, "NATS_URL")) })
}

// topicRecorder remembers the topics a benchmark uses, to delete them.
type topicRecorder struct {
	*jetstream.Broker
	mu     sync.Mutex
	topics []string
}

func (r *topicRecorder) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	r.mu.Lock()
	r.topics = append(r.topics, req.Topic)
	r.mu.Unlock()
	return r.Broker.Subscribe(ctx, req, h)
}

func (r *topicRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.topics...)
}
