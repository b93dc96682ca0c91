package pubsub_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// grpcSubApp is a gRPC app with programmatic subscriptions that records
// OnTopicEvent and OnBulkTopicEvent calls.
type grpcSubApp struct {
	runtimev1.UnimplementedAppCallbackServer
	subs   []*runtimev1.TopicSubscription
	answer func(req *runtimev1.TopicEventRequest, n int) runtimev1.TopicEventResponse_TopicEventResponseStatus

	mu     sync.Mutex
	events []*runtimev1.TopicEventRequest
	md     []metadata.MD
	bulks  []*runtimev1.TopicEventBulkRequest
	counts map[string]int
}

func (a *grpcSubApp) ListTopicSubscriptions(context.Context, *emptypb.Empty) (*runtimev1.ListTopicSubscriptionsResponse, error) {
	return &runtimev1.ListTopicSubscriptionsResponse{Subscriptions: a.subs}, nil
}

func (a *grpcSubApp) OnTopicEvent(ctx context.Context, req *runtimev1.TopicEventRequest) (*runtimev1.TopicEventResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	if a.counts == nil {
		a.counts = map[string]int{}
	}
	a.counts[req.GetTopic()]++
	n := a.counts[req.GetTopic()]
	a.events = append(a.events, req)
	a.md = append(a.md, md)
	answer := a.answer
	a.mu.Unlock()
	st := runtimev1.TopicEventResponse_SUCCESS
	if answer != nil {
		st = answer(req, n)
	}
	return &runtimev1.TopicEventResponse{Status: st}, nil
}

func (a *grpcSubApp) OnBulkTopicEvent(_ context.Context, req *runtimev1.TopicEventBulkRequest) (*runtimev1.TopicEventBulkResponse, error) {
	a.mu.Lock()
	a.bulks = append(a.bulks, req)
	a.mu.Unlock()
	out := &runtimev1.TopicEventBulkResponse{}
	for _, e := range req.GetEntries() {
		out.Statuses = append(out.Statuses, &runtimev1.TopicEventBulkResponseEntry{EntryId: e.GetEntryId(), Status: runtimev1.TopicEventResponse_SUCCESS})
	}
	return out, nil
}

// topicEvents waits for n events on topic.
func (a *grpcSubApp) topicEvents(t testing.TB, topic string, n int) ([]*runtimev1.TopicEventRequest, []metadata.MD) {
	t.Helper()
	var evs []*runtimev1.TopicEventRequest
	var mds []metadata.MD
	mechatest.Eventually(t, waitFor, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		evs, mds = nil, nil
		for i, e := range a.events {
			if e.GetTopic() == topic {
				evs, mds = append(evs, e), append(mds, a.md[i])
			}
		}
		if len(evs) < n {
			return fmt.Errorf("%d events on %s, want %d", len(evs), topic, n)
		}
		return nil
	})
	return evs, mds
}

// TestGRPCSubscriber publishes over gRPC to a gRPC app that subscribes
// with ListTopicSubscriptions, and checks the TopicEventRequest fields,
// the routing, RETRY, and DROP to the dead-letter topic.
func TestGRPCSubscriber(t *testing.T) {
	app := &grpcSubApp{subs: []*runtimev1.TopicSubscription{
		{PubsubName: "pubsub", Topic: "orders", Routes: &runtimev1.TopicRoutes{
			Rules:   []*runtimev1.TopicRule{{Match: `event.data.priority == "high"`, Path: "/urgent"}},
			Default: "/orders",
		}},
		{PubsubName: "pubsub", Topic: "retry"},
		{PubsubName: "pubsub", Topic: "drop", DeadLetterTopic: "poison"},
		{PubsubName: "pubsub", Topic: "poison"},
	}}
	app.answer = func(req *runtimev1.TopicEventRequest, n int) runtimev1.TopicEventResponse_TopicEventResponseStatus {
		switch {
		case req.GetTopic() == "retry" && n == 1:
			return runtimev1.TopicEventResponse_RETRY
		case req.GetTopic() == "drop":
			return runtimev1.TopicEventResponse_DROP
		}
		return runtimev1.TopicEventResponse_SUCCESS
	}
	s := start(t, "grpcsub", mechatest.GRPCApp(t, app), "grpc", inMemory(t, "pubsub"))
	subscribed(t, s, 4)
	ctx := ctxT(t)
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	pub := func(topic, data string, md map[string]string) {
		t.Helper()
		if _, err := s.Dapr.PublishEvent(ctx, &runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: topic, Data: []byte(data), DataContentType: "application/json", Metadata: md}); err != nil {
			t.Fatalf("PublishEvent(%s): %v", topic, err)
		}
	}
	pub("orders", `{"priority": "high", "n": 1}`, map[string]string{"cloudevent.subject": "s1"})
	pub("orders", `{"priority": "low"}`, nil)
	evs, mds := app.topicEvents(t, "orders", 2)
	// The two events may be delivered in either order: the high one is
	// the one with n.
	if strings.Contains(string(evs[1].GetData()), `"n"`) {
		evs[0], evs[1] = evs[1], evs[0]
		mds[0], mds[1] = mds[1], mds[0]
	}
	ev := evs[0]
	if ev.GetPath() != "/urgent" || evs[1].GetPath() != "/orders" {
		t.Errorf("paths = %q, %q; want /urgent, /orders", ev.GetPath(), evs[1].GetPath())
	}
	if !uuidRE.MatchString(ev.GetId()) || ev.GetSource() != "grpcsub" || ev.GetType() != "com.dapr.event.sent" ||
		ev.GetSpecVersion() != "1.0" || ev.GetDataContentType() != "application/json" || ev.GetTopic() != "orders" || ev.GetPubsubName() != "pubsub" {
		t.Errorf("event = %v", ev)
	}
	if string(ev.GetData()) != `{"priority":"high","n":1}` {
		t.Errorf("data = %s", ev.GetData())
	}
	ext := ev.GetExtensions().AsMap()
	for _, k := range []string{"topic", "pubsubname", "traceid", "traceparent", "tracestate", "time"} {
		if _, ok := ext[k]; !ok {
			t.Errorf("extension %s missing: %v", k, ext)
		}
	}
	if ext["subject"] != "s1" {
		t.Errorf("subject extension = %v, want s1", ext["subject"])
	}
	for _, k := range []string{"id", "source", "data", "specversion"} {
		if _, ok := ext[k]; ok {
			t.Errorf("%s must not be an extension", k)
		}
	}
	if got := mds[0].Get("pubsubname"); len(got) != 1 || got[0] != "pubsub" {
		t.Errorf("pubsubname metadata = %v", got)
	}
	if tp := mds[0].Get("traceparent"); len(tp) != 1 || tp[0] != ext["traceparent"] {
		t.Errorf("traceparent metadata = %v, want %v", tp, ext["traceparent"])
	}

	pub("retry", `"again"`, nil)
	pub("drop", `"bad"`, nil)
	retried, _ := app.topicEvents(t, "retry", 2)
	if retried[0].GetId() != retried[1].GetId() {
		t.Errorf("redelivered a different event")
	}
	dead, _ := app.topicEvents(t, "poison", 1)
	if string(dead[0].GetData()) != `"bad"` {
		t.Errorf("dead letter data = %s", dead[0].GetData())
	}
}

// unimplementedApp is a gRPC app whose OnTopicEvent answers Unimplemented
// (and counts the calls); it implements nothing else.
type unimplementedApp struct {
	runtimev1.UnimplementedAppCallbackServer
	calls atomic.Int32
}

func (a *unimplementedApp) OnTopicEvent(context.Context, *runtimev1.TopicEventRequest) (*runtimev1.TopicEventResponse, error) {
	a.calls.Add(1)
	return nil, status.Error(codes.Unimplemented, "not here")
}

// TestGRPCAppWithoutOnTopicEvent: an event the app answers Unimplemented
// is acknowledged, not redelivered, as daprd; ListTopicSubscriptions being
// unimplemented means no programmatic subscriptions.
func TestGRPCAppWithoutOnTopicEvent(t *testing.T) {
	app := &unimplementedApp{}
	s := start(t, "grpcnone", mechatest.GRPCApp(t, app), "grpc", inMemory(t, "pubsub"), subscriptionV1("d", "t", "/t"))
	if subs := subscribed(t, s, 1); subs[0]["type"] != "DECLARATIVE" {
		t.Errorf("subscriptions = %v", subs)
	}
	if _, err := s.Dapr.PublishEvent(ctxT(t), &runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: "t", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	mechatest.Eventually(t, waitFor, func() error {
		if app.calls.Load() == 0 {
			return errString("not delivered yet")
		}
		return nil
	})
	settle()
	if n := app.calls.Load(); n != 1 {
		t.Errorf("OnTopicEvent called %d times, want 1", n)
	}
}

// TestGRPCMetadataSubscriptions checks GetMetadata's subscriptions.
func TestGRPCMetadataSubscriptions(t *testing.T) {
	app := &grpcSubApp{subs: []*runtimev1.TopicSubscription{{PubsubName: "pubsub", Topic: "t", DeadLetterTopic: "dl", Metadata: map[string]string{"k": "v"},
		Routes: &runtimev1.TopicRoutes{Rules: []*runtimev1.TopicRule{{Match: "event.type == \"x\"", Path: "/x"}}, Default: "/d"}}}}
	s := start(t, "grpcmeta", mechatest.GRPCApp(t, app), "grpc", inMemory(t, "pubsub"))
	subscribed(t, s, 1)
	md, err := s.Dapr.GetMetadata(ctxT(t), &runtimev1.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.GetSubscriptions()) != 1 {
		t.Fatalf("subscriptions = %v", md.GetSubscriptions())
	}
	sub := md.GetSubscriptions()[0]
	if sub.GetType() != runtimev1.PubsubSubscriptionType_PROGRAMMATIC || sub.GetDeadLetterTopic() != "dl" || sub.GetMetadata()["k"] != "v" ||
		len(sub.GetRules().GetRules()) != 2 || sub.GetRules().GetRules()[0].GetMatch() != `event.type == "x"` || sub.GetRules().GetRules()[1].GetPath() != "/d" {
		t.Errorf("subscription = %v", sub)
	}
}
