package pubsub_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// bulkBody is a bulk publish body of n JSON entries.
func bulkBody(n int, prefix string) []map[string]any {
	entries := make([]map[string]any, n)
	for i := range entries {
		entries[i] = map[string]any{"entryId": fmt.Sprintf("%s-%d", prefix, i), "event": map[string]any{"n": i, "p": prefix}, "contentType": "application/json"}
	}
	return entries
}

// TestBulkPublishDeliveredOnce bulk-publishes 1,000 events, with a broker
// that has BulkPublish and with one that publishes one by one, and checks
// that each reaches the subscriber exactly once.
func TestBulkPublishDeliveredOnce(t *testing.T) {
	for _, name := range []string{"native", "plain"} {
		t.Run(name, func(t *testing.T) {
			app := newSubApp(subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": "many", "route": "/many"}))
			comp := inMemory(t, "pubsub")
			if name == "plain" {
				comp = plain(t, "pubsub")
			}
			s := startPlain(t, "bulk-"+name, mechatest.HTTPApp(t, app), "http", comp)
			subscribed(t, s, 1)
			resp := s.Do(t, http.MethodPost, "/v1.0-alpha1/publish/bulk/pubsub/many", bulkBody(1000, name))
			if resp.Status != http.StatusNoContent {
				t.Fatalf("bulk publish: %d %s", resp.Status, resp.Body)
			}
			got := app.waitN(t, "/many", 1000)
			settle()
			got = app.deliveries("/many")
			seen := map[float64]int{}
			ids := map[string]bool{}
			for _, d := range got {
				ce := d.CE(t)
				data, _ := ce["data"].(map[string]any)
				seen[data["n"].(float64)]++
				ids[ce["id"].(string)] = true
				if ce["type"] != "com.dapr.event.sent" || ce["source"] != "bulk-"+name {
					t.Fatalf("entry not wrapped: %s", d.Body)
				}
			}
			if len(got) != 1000 || len(seen) != 1000 || len(ids) != 1000 {
				t.Errorf("%d deliveries of %d events with %d ids, want 1000 each exactly once", len(got), len(seen), len(ids))
			}
		})
	}
}

// TestBulkPublishErrors checks daprd's answers to bad bulk requests and
// the per-entry failure report.
func TestBulkPublishErrors(t *testing.T) {
	s := startPlain(t, "bulkerr", 0, "", inMemory(t, "pubsub"), plain(t, "broken", "failTopics", "t"))
	cases := []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"not a list", "/v1.0-alpha1/publish/bulk/pubsub/t", `{"entryId":"1"}`, 400, "ERR_PUBSUB_EVENTS_SER"},
		{"duplicate entry id", "/v1.0-alpha1/publish/bulk/pubsub/t", `[{"entryId":"1","event":"a","contentType":"text/plain"},{"entryId":"1","event":"b","contentType":"text/plain"}]`, 400, "ERR_PUBSUB_EVENTS_SER"},
		{"missing entry id", "/v1.0-alpha1/publish/bulk/pubsub/t", `[{"event":"a","contentType":"text/plain"}]`, 400, "ERR_PUBSUB_EVENTS_SER"},
		{"event does not match contentType", "/v1.0-alpha1/publish/bulk/pubsub/t", `[{"entryId":"1","event":{"a":1},"contentType":"text/plain"}]`, 400, "ERR_PUBSUB_EVENTS_SER"},
		{"no contentType", "/v1.0-alpha1/publish/bulk/pubsub/t", `[{"entryId":"1","event":"a"}]`, 400, "ERR_PUBSUB_EVENTS_SER"},
		{"unknown pubsub", "/v1.0-alpha1/publish/bulk/nope/t", `[]`, 404, "ERR_PUBSUB_NOT_FOUND"},
		{"missing topic", "/v1.0-alpha1/publish/bulk/pubsub", `[]`, 404, "ERR_TOPIC_NAME_EMPTY"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := s.Do(t, http.MethodPost, c.path, c.body)
			if resp.Status != c.status || resp.ErrorCode() != c.code {
				t.Errorf("%d %s, want %d %s", resp.Status, resp.Body, c.status, c.code)
			}
		})
	}
	t.Run("broker failure lists every entry", func(t *testing.T) {
		resp := s.Do(t, http.MethodPost, "/v1.0/publish/bulk/broken/t", bulkBody(3, "x"))
		var body struct {
			FailedEntries []struct{ EntryID, Error string } `json:"failedEntries"`
			ErrorCode     string                            `json:"errorCode"`
		}
		resp.JSON(t, &body)
		if resp.Status != http.StatusInternalServerError || body.ErrorCode != "ERR_PUBSUB_PUBLISH_MESSAGE" || len(body.FailedEntries) != 3 ||
			!strings.Contains(body.FailedEntries[0].Error, "broker refuses topic t") {
			t.Errorf("%d %s, want 500 with 3 failed entries", resp.Status, resp.Body)
		}
		_, err := s.Dapr.BulkPublishEvent(ctxT(t), &runtimev1.BulkPublishRequest{PubsubName: "broken", Topic: "t",
			Entries: []*runtimev1.BulkPublishRequestEntry{{EntryId: "1", Event: []byte("a"), ContentType: "text/plain"}}})
		if status.Code(err) != codes.Internal {
			t.Errorf("gRPC: %v, want Internal", err)
		}
	})
	t.Run("gRPC entry errors", func(t *testing.T) {
		_, err := s.Dapr.BulkPublishEventAlpha1(ctxT(t), &runtimev1.BulkPublishRequest{PubsubName: "pubsub", Topic: "t",
			Entries: []*runtimev1.BulkPublishRequestEntry{{EntryId: "1", Event: []byte("a")}, {EntryId: "1", Event: []byte("b")}}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("duplicate ids: %v, want InvalidArgument", err)
		}
	})
}

// TestBulkSubscribeHTTP subscribes in batches: the app gets daprd's bulk
// shape, at most maxMessagesCount entries at a time, and answers per
// entry: RETRY redelivers; with a dead-letter topic, DROP and RETRY
// entries go there.
func TestBulkSubscribeHTTP(t *testing.T) {
	bulk := map[string]any{"enabled": true, "maxMessagesCount": 10, "maxAwaitDurationMs": 50}
	app := newSubApp(subscribeJSON(
		map[string]any{"pubsubname": "pubsub", "topic": "batch", "route": "/batch", "bulkSubscribe": bulk},
		map[string]any{"pubsubname": "pubsub", "topic": "batchdl", "route": "/batch", "deadLetterTopic": "dl", "bulkSubscribe": bulk},
		map[string]any{"pubsubname": "pubsub", "topic": "dl", "route": "/dl"},
	))
	var mu sync.Mutex
	attempts := map[string]int{} // by data
	app.answer = func(d delivery, _ int) (int, string) {
		if d.Path != "/batch" {
			return http.StatusOK, ""
		}
		var env struct {
			Entries []struct {
				EntryID string         `json:"entryId"`
				Event   map[string]any `json:"event"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(d.Body, &env); err != nil {
			return http.StatusBadRequest, ""
		}
		var statuses []map[string]string
		mu.Lock()
		defer mu.Unlock()
		for _, e := range env.Entries {
			data := fmt.Sprint(e.Event["data"])
			attempts[data]++
			st := "SUCCESS"
			switch {
			case data == "retry-me" && attempts[data] == 1, data == "fail-me":
				st = "RETRY"
			case data == "drop-me":
				st = "DROP"
			}
			statuses = append(statuses, map[string]string{"entryId": e.EntryID, "status": st})
		}
		b, _ := json.Marshal(map[string]any{"statuses": statuses})
		return http.StatusOK, string(b)
	}
	s := start(t, "bulksub", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	subscribed(t, s, 3)
	entries := append(bulkBody(23, "b"), map[string]any{"entryId": "r", "event": "retry-me", "contentType": "text/plain"})
	if resp := s.Do(t, http.MethodPost, "/v1.0-alpha1/publish/bulk/pubsub/batch", entries); resp.Status != http.StatusNoContent {
		t.Fatalf("bulk publish: %d %s", resp.Status, resp.Body)
	}
	toDL := []map[string]any{
		{"entryId": "d", "event": "drop-me", "contentType": "text/plain"},
		{"entryId": "f", "event": "fail-me", "contentType": "text/plain"},
		{"entryId": "ok", "event": "fine", "contentType": "text/plain"},
	}
	if resp := s.Do(t, http.MethodPost, "/v1.0-alpha1/publish/bulk/pubsub/batchdl", toDL); resp.Status != http.StatusNoContent {
		t.Fatalf("bulk publish: %d %s", resp.Status, resp.Body)
	}
	dead := app.waitN(t, "/dl", 2)
	mechatest.Eventually(t, waitFor, func() error {
		mu.Lock()
		defer mu.Unlock()
		if attempts["retry-me"] < 2 || len(attempts) < 27 {
			return fmt.Errorf("attempts = %v", attempts)
		}
		return nil
	})
	settle()
	deadData := map[any]bool{}
	for _, d := range app.deliveries("/dl") {
		deadData[d.CE(t)["data"]] = true
	}
	if len(dead) != 2 || !deadData["drop-me"] || !deadData["fail-me"] || len(app.deliveries("/dl")) != 2 {
		t.Errorf("dead letters = %v, want drop-me and fail-me once each", deadData)
	}
	batches := app.deliveries("/batch")
	first := batches[0]
	if ct := first.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var env map[string]any
	if err := json.Unmarshal(first.Body, &env); err != nil {
		t.Fatal(err)
	}
	if env["type"] != "com.dapr.event.sent.bulk" || env["topic"] != "batch" || env["pubsubname"] != "pubsub" || env["id"] == "" {
		t.Errorf("bulk envelope = %v", env)
	}
	for _, b := range batches {
		var e struct {
			Entries []map[string]any `json:"entries"`
		}
		_ = json.Unmarshal(b.Body, &e)
		if len(e.Entries) == 0 || len(e.Entries) > 10 {
			t.Errorf("batch of %d entries, want 1..10", len(e.Entries))
		}
		for _, en := range e.Entries {
			if en["contentType"] != "application/cloudevents+json" || en["entryId"] == "" {
				t.Errorf("entry = %v", en)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for data, n := range attempts {
		want := 1
		if data == "retry-me" {
			want = 2
		}
		if n != want {
			t.Errorf("%s delivered %d times, want %d", data, n, want)
		}
	}
}

// TestBulkSubscribeGRPC delivers a batch with OnBulkTopicEvent.
func TestBulkSubscribeGRPC(t *testing.T) {
	app := &grpcSubApp{subs: []*runtimev1.TopicSubscription{{PubsubName: "pubsub", Topic: "batch",
		BulkSubscribe: &runtimev1.BulkSubscribeConfig{Enabled: true, MaxMessagesCount: 5, MaxAwaitDurationMs: 50}}}}
	s := start(t, "bulkgrpc", mechatest.GRPCApp(t, app), "grpc", inMemory(t, "pubsub"))
	subscribed(t, s, 1)
	if resp := s.Do(t, http.MethodPost, "/v1.0-alpha1/publish/bulk/pubsub/batch", bulkBody(12, "g")); resp.Status != http.StatusNoContent {
		t.Fatalf("bulk publish: %d %s", resp.Status, resp.Body)
	}
	var entries []*runtimev1.TopicEventBulkRequestEntry
	mechatest.Eventually(t, waitFor, func() error {
		app.mu.Lock()
		defer app.mu.Unlock()
		entries = nil
		for _, b := range app.bulks {
			if len(b.GetEntries()) > 5 || b.GetType() != "com.dapr.event.sent.bulk" || b.GetPubsubName() != "pubsub" || b.GetTopic() != "batch" {
				return fmt.Errorf("bad batch %v", b)
			}
			entries = append(entries, b.GetEntries()...)
		}
		if len(entries) < 12 {
			return fmt.Errorf("%d entries", len(entries))
		}
		return nil
	})
	ce := entries[0].GetCloudEvent()
	if ce == nil || ce.GetType() != "com.dapr.event.sent" || ce.GetSource() != "bulkgrpc" || !strings.HasPrefix(string(ce.GetData()), `{"n":`) {
		t.Errorf("entry = %v", entries[0])
	}
}
