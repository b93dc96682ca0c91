package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"google.golang.org/grpc/codes"
)

// topicLog records the events an SDK handler gets, by route.
type topicLog struct {
	mu     sync.Mutex
	events map[string][]*common.TopicEvent
	// fail, when it returns true, makes the handler ask for a retry.
	fail func(route string, e *common.TopicEvent, n int) bool
}

func newTopicLog() *topicLog { return &topicLog{events: map[string][]*common.TopicEvent{}} }

func (l *topicLog) handler(route string) common.TopicEventHandler {
	return func(_ context.Context, e *common.TopicEvent) (bool, error) {
		l.mu.Lock()
		l.events[route] = append(l.events[route], e)
		n := len(l.events[route])
		fail := l.fail
		l.mu.Unlock()
		if fail != nil && fail(route, e, n) {
			return true, errors.New("try again")
		}
		return false, nil
	}
}

func (l *topicLog) get(route string) []*common.TopicEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*common.TopicEvent(nil), l.events[route]...)
}

// subscribeSDKApp registers the handlers every pub/sub SDK test uses: a
// default route, a CEL-routed one and a topic for bulk publishing.
func subscribeSDKApp(t *testing.T, svc common.Service, l *topicLog) {
	t.Helper()
	subs := []*common.Subscription{
		{PubsubName: "pubsub", Topic: "orders", Route: "/orders"},
		{PubsubName: "pubsub", Topic: "orders", Route: "/vip", Match: `event.data.vip == true`, Priority: 1},
		{PubsubName: "pubsub", Topic: "bulk", Route: "/bulk"},
		{PubsubName: "pubsub", Topic: "flaky", Route: "/flaky"},
	}
	for _, s := range subs {
		must(t, "AddTopicEventHandler "+s.Route, svc.AddTopicEventHandler(s, l.handler(s.Route)))
	}
}

// exercisePubSub publishes with the SDK client and checks what the app's
// handlers got: the CloudEvent, the routing rule, a retried event, and 200
// bulk-published events delivered once each.
func exercisePubSub(t *testing.T, s *sidecar, l *topicLog) {
	c := s.sdkClient(t)
	ctx := ctxT(t)
	eventually(t, 15*time.Second, "the app's subscriptions", func() bool { return len(sidecarMetadata(t, s).Subscriptions) == 3 })

	must(t, "PublishEvent", c.PublishEvent(ctx, "pubsub", "orders", map[string]any{"id": 1, "vip": false}))
	must(t, "PublishEvent vip", c.PublishEvent(ctx, "pubsub", "orders", map[string]any{"id": 2, "vip": true}))
	eventually(t, 15*time.Second, "the order events", func() bool { return len(l.get("/orders")) == 1 && len(l.get("/vip")) == 1 })
	e := l.get("/orders")[0]
	if e.Source != s.AppID || e.Type != "com.dapr.event.sent" || e.SpecVersion != "1.0" || e.Topic != "orders" ||
		e.PubsubName != "pubsub" || e.DataContentType != "application/json" || e.ID == "" {
		t.Errorf("event = %+v", e)
	}
	var order struct {
		ID  int  `json:"id"`
		VIP bool `json:"vip"`
	}
	if err := e.Struct(&order); err != nil || order.ID != 1 {
		t.Errorf("data = %s (%v), want order 1", e.RawData, err)
	}

	l.mu.Lock()
	l.fail = func(route string, _ *common.TopicEvent, n int) bool { return route == "/flaky" && n == 1 }
	l.mu.Unlock()
	must(t, "PublishEvent flaky", c.PublishEvent(ctx, "pubsub", "flaky", "text", client.PublishEventWithContentType("text/plain")))
	eventually(t, 15*time.Second, "the retried event", func() bool { return len(l.get("/flaky")) == 2 })
	if f := l.get("/flaky"); f[0].ID != f[1].ID || f[1].Data != "text" {
		t.Errorf("retried events = %+v, %+v", f[0], f[1])
	}

	events := make([]any, 200)
	for i := range events {
		events[i] = map[string]int{"n": i}
	}
	res := c.PublishEvents(ctx, "pubsub", "bulk", events)
	must(t, "PublishEvents", res.Error)
	eventually(t, 15*time.Second, "200 bulk events", func() bool { return len(l.get("/bulk")) >= 200 })
	time.Sleep(300 * time.Millisecond) // a duplicate would show up by now
	seen := map[float64]int{}
	for _, e := range l.get("/bulk") {
		m, _ := e.Data.(map[string]any)
		n, _ := m["n"].(float64)
		seen[n]++
	}
	if len(seen) != 200 || len(l.get("/bulk")) != 200 {
		t.Errorf("%d distinct of %d bulk deliveries, want 200 exactly once", len(seen), len(l.get("/bulk")))
	}

	err := c.PublishEvent(ctx, "nope", "orders", "x")
	expectCode(t, "PublishEvent to an unknown pubsub", err, codes.InvalidArgument)
}

// sdkMetadata is the part of GET /v1.0/metadata these tests read.
type sdkMetadata struct {
	Subscriptions []struct {
		PubsubName string `json:"pubsubname"`
		Topic      string `json:"topic"`
		Type       string `json:"type"`
	} `json:"subscriptions"`
}

func sidecarMetadata(t testing.TB, s *sidecar) sdkMetadata {
	t.Helper()
	var m sdkMetadata
	r := s.do(t, http.MethodGet, "/v1.0/metadata", nil)
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("GET /v1.0/metadata: %v in %s", err, r.Body)
	}
	return m
}

// TestSDKPubSubHTTPApp: an app written with the SDK's HTTP service
// subscribes with AddTopicEventHandler; the SDK client publishes.
func TestSDKPubSubHTTPApp(t *testing.T) {
	t.Parallel()
	appPort := freePort(t)
	svc := daprhttp.NewService("127.0.0.1:" + strconv.Itoa(appPort))
	l := newTopicLog()
	subscribeSDKApp(t, svc, l)
	serve(t, svc)
	s := startSidecar(t, sidecarConfig{
		Args:      []string{"--app-port", strconv.Itoa(appPort)},
		Resources: map[string]string{"pubsub.yaml": componentYAML("pubsub", "pubsub.in-memory", nil)},
	})
	exercisePubSub(t, s, l)
}

// TestSDKPubSubGRPCApp: the same with the SDK's gRPC service.
func TestSDKPubSubGRPCApp(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, "listen", err)
	svc := daprgrpc.NewServiceWithListener(lis)
	l := newTopicLog()
	subscribeSDKApp(t, svc, l)
	serve(t, svc)
	s := startSidecar(t, sidecarConfig{
		Args:      []string{"--app-port", strconv.Itoa(lis.Addr().(*net.TCPAddr).Port), "--app-protocol", "grpc"},
		Resources: map[string]string{"pubsub.yaml": componentYAML("pubsub", "pubsub.in-memory", nil)},
	})
	exercisePubSub(t, s, l)
}

// serve runs an SDK service until the test ends.
func serve(t *testing.T, svc common.Service) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- svc.Start() }()
	t.Cleanup(func() {
		_ = svc.GracefulStop()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("SDK service: %v", err)
		}
	})
}

// TestSDKStreamingSubscription uses the SDK client's Subscribe and
// SubscribeWithHandler: no app port at all.
func TestSDKStreamingSubscription(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: map[string]string{"pubsub.yaml": componentYAML("pubsub", "pubsub.in-memory", nil)}})
	c := s.sdkClient(t)
	ctx := ctxT(t)

	sub, err := c.Subscribe(ctx, client.SubscriptionOptions{PubsubName: "pubsub", Topic: "stream"})
	must(t, "Subscribe", err)
	var mu sync.Mutex
	var handled []*common.TopicEvent
	stop, err := c.SubscribeWithHandler(ctx, client.SubscriptionOptions{PubsubName: "pubsub", Topic: "handled"}, func(e *common.TopicEvent) common.SubscriptionResponseStatus {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, e)
		return common.SubscriptionResponseStatusSuccess
	})
	must(t, "SubscribeWithHandler", err)
	t.Cleanup(func() { _ = stop() })
	eventually(t, 15*time.Second, "two streaming subscriptions", func() bool {
		m := sidecarMetadata(t, s)
		return len(m.Subscriptions) == 2 && m.Subscriptions[0].Type == "STREAMING"
	})

	must(t, "PublishEvent", c.PublishEvent(ctx, "pubsub", "stream", map[string]string{"hello": "stream"}))
	msg, err := sub.Receive()
	must(t, "Receive", err)
	if msg.Topic != "stream" || msg.PubsubName != "pubsub" || msg.Source != s.AppID || string(msg.RawData) != `{"hello":"stream"}` {
		t.Errorf("message = %+v, data %s", msg.TopicEvent, msg.RawData)
	}
	must(t, "Retry", msg.Retry())
	again, err := sub.Receive()
	must(t, "Receive again", err)
	if again.ID != msg.ID {
		t.Errorf("redelivered %s, want %s", again.ID, msg.ID)
	}
	must(t, "Success", again.Success())

	for i := range 5 {
		must(t, "PublishEvent handled", c.PublishEvent(ctx, "pubsub", "handled", fmt.Sprint(i), client.PublishEventWithContentType("text/plain")))
	}
	eventually(t, 15*time.Second, "five handled events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 5
	})
	must(t, "Close", sub.Close())
	eventually(t, 15*time.Second, "the closed subscription to go", func() bool { return len(sidecarMetadata(t, s).Subscriptions) == 1 })
}

// TestSDKPubSubAcrossSidecars publishes from one sidecar to an SDK app
// behind another, through Redis Streams: the consumer group is the app id.
func TestSDKPubSubAcrossSidecars(t *testing.T) {
	t.Parallel()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
			t.Fatal("REDIS_ADDR is not set but MECHA_REQUIRE_SERVICES=1")
		}
		t.Skip("REDIS_ADDR is not set")
	}
	topic := "across-" + uniqueID()
	appPort := freePort(t)
	svc := daprhttp.NewService("127.0.0.1:" + strconv.Itoa(appPort))
	l := newTopicLog()
	must(t, "AddTopicEventHandler", svc.AddTopicEventHandler(&common.Subscription{PubsubName: "pubsub", Topic: topic, Route: "/in"}, l.handler("/in")))
	serve(t, svc)
	comp := componentYAML("pubsub", "pubsub.redis", map[string]string{"redisHost": addr})
	sub := startSidecar(t, sidecarConfig{Args: []string{"--app-port", strconv.Itoa(appPort)}, Resources: map[string]string{"pubsub.yaml": comp}})
	pub := startSidecar(t, sidecarConfig{Resources: map[string]string{"pubsub.yaml": comp}})
	eventually(t, 15*time.Second, "the subscription", func() bool { return len(sidecarMetadata(t, sub).Subscriptions) == 1 })
	c := pub.sdkClient(t)
	for i := range 20 {
		must(t, "PublishEvent", c.PublishEvent(ctxT(t), "pubsub", topic, map[string]int{"n": i}))
	}
	eventually(t, 20*time.Second, "20 events across sidecars", func() bool { return len(l.get("/in")) >= 20 })
	if e := l.get("/in")[0]; e.Source != pub.AppID {
		t.Errorf("source = %q, want the publisher %q", e.Source, pub.AppID)
	}
}
