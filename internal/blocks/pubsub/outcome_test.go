package pubsub_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// settle gives a wrongly redelivered message time to show up: the test
// brokers redeliver within 100ms.
func settle() { time.Sleep(400 * time.Millisecond) }

// TestRoutingRules sends events to different handlers by CEL rules over
// the event, in order, with the default catching the rest.
func TestRoutingRules(t *testing.T) {
	app := newSubApp(subscribeJSON(map[string]any{
		"pubsubname": "pubsub", "topic": "things",
		"routes": map[string]any{
			"rules": []map[string]string{
				{"match": `event.type == "widget"`, "path": "/widgets"},
				{"match": `has(event.data.size) && event.data.size > 10`, "path": "/big"},
				{"match": `event.source == "nobody"`, "path": "/never"},
			},
			"default": "/other",
		},
	}))
	s := start(t, "router", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	subs := subscribed(t, s, 1)
	if rules, _ := subs[0]["rules"].([]any); len(rules) != 4 {
		t.Errorf("metadata rules = %v, want 4 (3 rules and the default)", subs[0]["rules"])
	}
	publish(t, s, "pubsub", "things", `{"size": 3}`, "Content-Type", "application/json")
	publish(t, s, "pubsub", "things?metadata.cloudevent.type=widget", `{"size": 50}`, "Content-Type", "application/json")
	publish(t, s, "pubsub", "things", `{"size": 50}`, "Content-Type", "application/json")
	app.waitN(t, "/widgets", 1)
	app.waitN(t, "/big", 1)
	app.waitN(t, "/other", 1)
	settle()
	if n := len(app.deliveries("")); n != 3 {
		t.Errorf("%d deliveries, want 3", n)
	}
}

// TestOutcomes checks the app's answers: RETRY redelivers, 500 redelivers,
// an unknown status redelivers, SUCCESS and an empty or non-JSON body ack,
// DROP and 404 drop; DROP goes to the dead-letter topic.
func TestOutcomes(t *testing.T) {
	app := newSubApp(subscribeJSON(
		map[string]any{"pubsubname": "pubsub", "topic": "retry", "route": "/retry"},
		map[string]any{"pubsubname": "pubsub", "topic": "fail", "route": "/fail"},
		map[string]any{"pubsubname": "pubsub", "topic": "unknown", "route": "/unknown"},
		map[string]any{"pubsubname": "pubsub", "topic": "drop", "route": "/drop", "deadLetterTopic": "poison"},
		map[string]any{"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
		map[string]any{"pubsubname": "pubsub", "topic": "missing", "route": "/missing"},
		map[string]any{"pubsubname": "pubsub", "topic": "plain", "route": "/plain"},
	))
	app.answer = func(d delivery, n int) (int, string) {
		switch d.Path {
		case "/retry":
			if n == 1 {
				return http.StatusOK, `{"status":"RETRY"}`
			}
			return http.StatusOK, `{"status":"SUCCESS"}`
		case "/fail":
			if n < 3 {
				return http.StatusInternalServerError, "boom"
			}
		case "/unknown":
			if n == 1 {
				return http.StatusOK, `{"status":"MAYBE"}`
			}
		case "/drop":
			return http.StatusOK, `{"status":"DROP"}`
		case "/missing":
			return http.StatusNotFound, "no such route"
		case "/plain":
			return http.StatusOK, "not json"
		}
		return http.StatusOK, ""
	}
	s := start(t, "outcomes", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	subscribed(t, s, 7)
	for _, topic := range []string{"retry", "fail", "unknown", "drop", "missing", "plain"} {
		publish(t, s, "pubsub", topic, topic)
	}
	retried := app.waitN(t, "/retry", 2)
	if a, b := retried[0].CE(t)["id"], retried[1].CE(t)["id"]; a != b {
		t.Errorf("redelivered a different event: %v then %v", a, b)
	}
	app.waitN(t, "/fail", 3)
	app.waitN(t, "/unknown", 2)
	dead := app.waitN(t, "/poison", 1)[0]
	if ce := dead.CE(t); ce["data"] != "drop" || ce["topic"] != "drop" {
		t.Errorf("dead letter = %s, want the dropped event as published", dead.Body)
	}
	app.waitN(t, "/missing", 1)
	app.waitN(t, "/plain", 1)
	settle()
	for path, want := range map[string]int{"/retry": 2, "/fail": 3, "/unknown": 2, "/drop": 1, "/poison": 1, "/missing": 1, "/plain": 1} {
		if n := len(app.deliveries(path)); n != want {
			t.Errorf("%s got %d deliveries, want %d", path, n, want)
		}
	}
}

// TestDeadLetterOnFailure: with a dead-letter topic, an event the app
// fails (RETRY) goes there at once instead of being redelivered, as daprd
// does when no resiliency policy retries it.
func TestDeadLetterOnFailure(t *testing.T) {
	app := newSubApp(subscribeJSON(
		map[string]any{"pubsubname": "pubsub", "topic": "work", "route": "/work", "deadLetterTopic": "dlq"},
		map[string]any{"pubsubname": "pubsub", "topic": "dlq", "route": "/dlq"},
	))
	app.answer = func(d delivery, n int) (int, string) {
		if d.Path == "/work" {
			return http.StatusOK, `{"status":"RETRY"}`
		}
		return http.StatusOK, ""
	}
	s := start(t, "dlq", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	subscribed(t, s, 2)
	publish(t, s, "pubsub", "work", "job")
	app.waitN(t, "/dlq", 1)
	settle()
	if n := len(app.deliveries("/work")); n != 1 {
		t.Errorf("/work got %d deliveries, want 1", n)
	}
}

// TestRawPayload publishes without an envelope and subscribes with
// rawPayload: the app gets daprd's synthetic envelope; a subscriber
// without rawPayload still gets the published CloudEvent.
func TestRawPayload(t *testing.T) {
	app := newSubApp(subscribeJSON(
		map[string]any{"pubsubname": "pubsub", "topic": "raw", "route": "/raw", "metadata": map[string]string{"rawPayload": "true"}},
		map[string]any{"pubsubname": "pubsub", "topic": "wrapped", "route": "/wrapped", "metadata": map[string]string{"rawPayload": "true"}},
	))
	s := start(t, "raw", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	subscribed(t, s, 2)
	publish(t, s, "pubsub", "raw?metadata.rawPayload=true", `{"plain": "json"}`, "Content-Type", "application/json")
	ce := app.waitN(t, "/raw", 1)[0].CE(t)
	want := map[string]any{
		"specversion": "1.0", "datacontenttype": "application/octet-stream", "source": "Dapr",
		"type": "com.dapr.event.sent", "topic": "raw", "pubsubname": "pubsub",
		"data_base64": base64.StdEncoding.EncodeToString([]byte(`{"plain": "json"}`)),
	}
	for k, v := range want {
		if ce[k] != v {
			t.Errorf("%s = %v, want %v", k, ce[k], v)
		}
	}
	if id, _ := ce["id"].(string); !uuidRE.MatchString(id) {
		t.Errorf("id = %v, want a UUID", ce["id"])
	}
	// A raw subscriber of an enveloped event gets the envelope's bytes.
	publish(t, s, "pubsub", "wrapped", "hello")
	ce = app.waitN(t, "/wrapped", 1)[0].CE(t)
	inner, _ := base64.StdEncoding.DecodeString(fmt.Sprint(ce["data_base64"]))
	if !strings.Contains(string(inner), `"data":"hello"`) {
		t.Errorf("raw subscriber got %s, want the CloudEvent published", inner)
	}

	bad := s.Do(t, http.MethodPost, "/v1.0/publish/pubsub/raw?metadata.rawPayload=maybe", "x")
	if bad.Status != http.StatusBadRequest || bad.ErrorCode() != "ERR_PUBSUB_REQUEST_METADATA" {
		t.Errorf("rawPayload=maybe: %d %s, want 400 ERR_PUBSUB_REQUEST_METADATA", bad.Status, bad.Body)
	}
}

// TestTTL: a broker without MESSAGE_TTL gets the expiration stamped in the
// envelope, and an expired event is dropped (to the dead-letter topic) on
// delivery; a broker with MESSAGE_TTL gets no stamp.
func TestTTL(t *testing.T) {
	app := newSubApp(subscribeJSON(
		map[string]any{"pubsubname": "plain", "topic": "t", "route": "/t", "deadLetterTopic": "expired"},
		// The dead letter is expired too: only a raw subscriber still takes it.
		map[string]any{"pubsubname": "plain", "topic": "expired", "route": "/expired", "metadata": map[string]string{"rawPayload": "true"}},
		map[string]any{"pubsubname": "native", "topic": "t", "route": "/native"},
	))
	s := startPlain(t, "ttl", mechatest.HTTPApp(t, app), "http", plain(t, "plain"), inMemory(t, "native"))
	subscribed(t, s, 3)
	publish(t, s, "plain", "t?metadata.ttlInSeconds=60", "fresh")
	ce := app.waitN(t, "/t", 1)[0].CE(t)
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(ce["expiration"]))
	if err != nil || exp.Before(time.Now().Add(55*time.Second)) || exp.After(time.Now().Add(61*time.Second)) {
		t.Errorf("expiration = %v (%v), want about a minute from now", ce["expiration"], err)
	}
	publish(t, s, "native", "t?metadata.ttlInSeconds=60", "fresh")
	if ce := app.waitN(t, "/native", 1)[0].CE(t); ce["expiration"] != nil {
		t.Errorf("expiration stamped for a broker with MESSAGE_TTL: %v", ce["expiration"])
	}
	// An event whose expiration has passed is not delivered.
	publish(t, s, "plain", "t", `{"id":"old","expiration":"2001-01-01T00:00:00Z","data":"stale"}`, "Content-Type", "application/cloudevents+json")
	dead := app.waitN(t, "/expired", 1)[0].CE(t)
	if inner, _ := base64.StdEncoding.DecodeString(fmt.Sprint(dead["data_base64"])); !strings.Contains(string(inner), `"id":"old"`) {
		t.Errorf("dead letter = %s, want the expired event", inner)
	}
	settle()
	if n := len(app.deliveries("/t")); n != 1 {
		t.Errorf("/t got %d deliveries, want 1 (the expired event is dropped)", n)
	}
}

// TestAppDownThenUp: a declared subscription's events wait while the app
// is not listening, then flow once it is.
func TestAppDownThenUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens yet
	app := newSubApp("")
	sub := "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: later\nspec:\n  pubsubname: pubsub\n  topic: t\n  routes:\n    default: /t\n"
	s := start(t, "late", port, "http", inMemory(t, "pubsub"), sub)
	subscribed(t, s, 1)
	for i := range 5 {
		publish(t, s, "pubsub", "t", fmt.Sprint(i))
	}
	time.Sleep(300 * time.Millisecond) // the app stays down a while
	srv := httptest.NewUnstartedServer(app)
	srv.Listener.Close()
	if srv.Listener, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Fatalf("listening on the app port again: %v", err)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	got := app.waitN(t, "/t", 5)
	seen := map[string]bool{}
	for _, d := range got {
		seen[fmt.Sprint(d.CE(t)["data"])] = true
	}
	if len(seen) != 5 {
		t.Errorf("data seen %v, want 0..4", seen)
	}
}
