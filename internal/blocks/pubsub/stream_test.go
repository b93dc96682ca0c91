package pubsub_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// openStream starts a streaming subscription and returns it after the
// initial response.
func openStream(t *testing.T, s *mechatest.Sidecar, req *runtimev1.SubscribeTopicEventsRequestInitialAlpha1) runtimev1.Dapr_SubscribeTopicEventsAlpha1Client {
	t.Helper()
	// Bounded, so that a missing event fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	st, err := s.Dapr.SubscribeTopicEventsAlpha1(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&runtimev1.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1.SubscribeTopicEventsRequestAlpha1_InitialRequest{InitialRequest: req}}); err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatalf("initial response: %v", err)
	}
	if first.GetInitialResponse() == nil {
		t.Fatalf("first message = %v, want the initial response", first)
	}
	return st
}

func ack(t *testing.T, st runtimev1.Dapr_SubscribeTopicEventsAlpha1Client, id string, s runtimev1.TopicEventResponse_TopicEventResponseStatus) {
	t.Helper()
	err := st.Send(&runtimev1.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1.SubscribeTopicEventsRequestAlpha1_EventProcessed{
		EventProcessed: &runtimev1.SubscribeTopicEventsRequestProcessedAlpha1{Id: id, Status: &runtimev1.TopicEventResponse{Status: s}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func nextEvent(t *testing.T, st runtimev1.Dapr_SubscribeTopicEventsAlpha1Client) *runtimev1.TopicEventRequest {
	t.Helper()
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	ev := m.GetEventMessage()
	if ev == nil {
		t.Fatalf("message = %v, want an event", m)
	}
	return ev
}

// TestStreamingSubscription subscribes without an app: events arrive on
// the stream, RETRY redelivers, DROP goes to the dead-letter topic (read
// by a second stream), the metadata API lists STREAMING subscriptions
// while they are open, and closing the stream unsubscribes.
func TestStreamingSubscription(t *testing.T) {
	s := start(t, "streamer", 0, "", inMemory(t, "pubsub"))
	orders := openStream(t, s, &runtimev1.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: "pubsub", Topic: "orders"})
	drops := openStream(t, s, &runtimev1.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: "pubsub", Topic: "drops", DeadLetterTopic: proto.String("dead")})
	dead := openStream(t, s, &runtimev1.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: "pubsub", Topic: "dead"})
	subs := subscribed(t, s, 3)
	for _, sub := range subs {
		if sub["type"] != "STREAMING" {
			t.Errorf("subscription %v, want STREAMING", sub)
		}
	}

	publish(t, s, "pubsub", "orders", `{"n":1}`, "Content-Type", "application/json")
	ev := nextEvent(t, orders)
	if string(ev.GetData()) != `{"n":1}` || ev.GetTopic() != "orders" || ev.GetPubsubName() != "pubsub" || ev.GetPath() != "/" || ev.GetSource() != "streamer" {
		t.Errorf("event = %v", ev)
	}
	ack(t, orders, ev.GetId(), runtimev1.TopicEventResponse_RETRY)
	again := nextEvent(t, orders)
	if again.GetId() != ev.GetId() {
		t.Errorf("redelivered %s, want %s", again.GetId(), ev.GetId())
	}
	ack(t, orders, again.GetId(), runtimev1.TopicEventResponse_SUCCESS)

	publish(t, s, "pubsub", "drops", "poison")
	bad := nextEvent(t, drops)
	ack(t, drops, bad.GetId(), runtimev1.TopicEventResponse_DROP)
	dl := nextEvent(t, dead)
	if dl.GetId() != bad.GetId() || string(dl.GetData()) != "poison" {
		t.Errorf("dead letter = %v, want the dropped event", dl)
	}
	ack(t, dead, dl.GetId(), runtimev1.TopicEventResponse_SUCCESS)

	if err := orders.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := orders.Recv(); err != io.EOF {
		t.Errorf("after CloseSend: %v, want the stream to end", err)
	}
	mechatest.Eventually(t, waitFor, func() error {
		var m struct {
			Subscriptions []map[string]any `json:"subscriptions"`
		}
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
		if len(m.Subscriptions) != 2 || m.Subscriptions[0]["topic"] != "dead" || m.Subscriptions[1]["topic"] != "drops" {
			return fmt.Errorf("subscriptions = %v, want dead and drops", m.Subscriptions)
		}
		return nil
	})
}

// TestStreamingSubscriptionErrors checks the initial request's validation.
func TestStreamingSubscriptionErrors(t *testing.T) {
	s := start(t, "streamerr", 0, "", inMemory(t, "pubsub"), inMemory(t, "scoped", "subscriptionScopes", "streamerr=ok"))
	cases := []struct {
		name string
		req  *runtimev1.SubscribeTopicEventsRequestAlpha1
		code codes.Code
		msg  string
	}{
		{"no initial request", &runtimev1.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1.SubscribeTopicEventsRequestAlpha1_EventProcessed{EventProcessed: &runtimev1.SubscribeTopicEventsRequestProcessedAlpha1{Id: "x"}}},
			codes.Unknown, "initial request is required"},
		{"no pubsub", initial("", "t"), codes.Unknown, "pubsubName is required"},
		{"no topic", initial("pubsub", ""), codes.Unknown, "topic is required"},
		{"unknown pubsub", initial("nope", "t"), codes.InvalidArgument, "pubsub nope is not found"},
		{"forbidden topic", initial("scoped", "no"), codes.Unknown, "is not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := s.Dapr.SubscribeTopicEventsAlpha1(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(c.req); err != nil {
				t.Fatal(err)
			}
			_, err = st.Recv()
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.msg) {
				t.Errorf("got %v, want %v %q", err, c.code, c.msg)
			}
		})
	}
}

// TestStreamEndsOnShutdown: closing the sidecar ends open streams.
func TestStreamEndsOnShutdown(t *testing.T) {
	s := start(t, "streamstop", 0, "", inMemory(t, "pubsub"))
	st := openStream(t, s, &runtimev1.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: "pubsub", Topic: "t"})
	done := make(chan error, 1)
	go func() {
		_, err := st.Recv()
		done <- err
	}()
	if err := s.RT.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; err == nil {
		t.Errorf("Recv after shutdown returned a message")
	}
}

func initial(pubsubName, topic string) *runtimev1.SubscribeTopicEventsRequestAlpha1 {
	return &runtimev1.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1.SubscribeTopicEventsRequestAlpha1_InitialRequest{
		InitialRequest: &runtimev1.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: pubsubName, Topic: topic},
	}}
}
