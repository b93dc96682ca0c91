package pubsub_test

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// traceparentRE is a W3C traceparent.
var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// TestHTTPSubscriberGetsCloudEvent publishes JSON from one sidecar and
// checks every CloudEvent attribute and header the subscribing HTTP app of
// another sidecar sees.
func TestHTTPSubscriberGetsCloudEvent(t *testing.T) {
	app := newSubApp(subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}))
	sub := start(t, "subscriber", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	pub := start(t, "publisher", 0, "", inMemory(t, "pubsub"))
	subscribed(t, sub, 1)

	before := time.Now().Add(-time.Second)
	publish(t, pub, "pubsub", "orders", `{"orderId": 12345678901234567890, "item": "widget"}`,
		"Content-Type", "application/json",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate", "congo=t61rcWkgMzE")

	d := app.waitN(t, "/orders", 1)[0]
	if ct := d.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Errorf("Content-Type = %q, want application/cloudevents+json", ct)
	}
	if h := d.Header.Get("pubsubName"); h != "pubsub" {
		t.Errorf("pubsubName header = %q, want pubsub", h)
	}
	if !strings.Contains(string(d.Body), `"data":{"orderId": 12345678901234567890, "item": "widget"}`) &&
		!strings.Contains(string(d.Body), `"data":{"orderId":12345678901234567890,"item":"widget"}`) {
		t.Errorf("data not kept exactly: %s", d.Body)
	}
	ce := d.CE(t)
	want := map[string]any{
		"specversion": "1.0", "type": "com.dapr.event.sent", "source": "publisher",
		"datacontenttype": "application/json", "topic": "orders", "pubsubname": "pubsub",
		"tracestate": "congo=t61rcWkgMzE",
	}
	for k, v := range want {
		if ce[k] != v {
			t.Errorf("%s = %v, want %v", k, ce[k], v)
		}
	}
	if id, _ := ce["id"].(string); !uuidRE.MatchString(id) {
		t.Errorf("id = %v, want a UUID", ce["id"])
	}
	tp, _ := ce["traceparent"].(string)
	if !traceparentRE.MatchString(tp) || !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") || ce["traceid"] != tp {
		t.Errorf("traceparent = %v, traceid = %v, want a child of the caller's trace", ce["traceparent"], ce["traceid"])
	}
	if got := d.Header.Get("traceparent"); got != tp {
		t.Errorf("traceparent header = %q, want %q", got, tp)
	}
	ts, err := time.Parse(time.RFC3339, ce["time"].(string))
	if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("time = %v (%v), want now in RFC3339", ce["time"], err)
	}
	if _, ok := ce["expiration"]; ok {
		t.Errorf("expiration set without a ttl: %v", ce["expiration"])
	}
	data, _ := ce["data"].(map[string]any)
	if data["item"] != "widget" {
		t.Errorf("data = %v", ce["data"])
	}
}

// TestPublishDataEncodings checks how each content type becomes data.
func TestPublishDataEncodings(t *testing.T) {
	app := newSubApp(subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": "t", "route": "/t"}))
	s := start(t, "app", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	subscribed(t, s, 1)
	cases := []struct {
		contentType, body string
		field             string
		want              any
		wantType          string
	}{
		{"", "hello", "data", "hello", "text/plain"},
		{"text/plain; charset=utf-8", "hi", "data", "hi", "text/plain; charset=utf-8"},
		{"application/json", `"a string"`, "data", "a string", "application/json"},
		{"application/json", `not json`, "data", "not json", "application/json"},
		{"application/octet-stream", "\x00\x01bin", "data_base64", base64.StdEncoding.EncodeToString([]byte("\x00\x01bin")), "application/octet-stream"},
		{"application/xml", "<a/>", "data", "<a/>", "application/xml"},
	}
	for i, c := range cases {
		var h []string
		if c.contentType != "" {
			h = []string{"Content-Type", c.contentType}
		}
		publish(t, s, "pubsub", "t", c.body, h...)
		ce := app.waitN(t, "/t", i+1)[i].CE(t)
		if ce[c.field] != c.want || ce["datacontenttype"] != c.wantType {
			t.Errorf("%q %q: %s = %v, datacontenttype = %v; want %v, %v", c.contentType, c.body, c.field, ce[c.field], ce["datacontenttype"], c.want, c.wantType)
		}
	}
}

// TestCloudEventOverridesAndPassthrough checks metadata.cloudevent.*
// overrides and a body sent as a CloudEvent.
func TestCloudEventOverridesAndPassthrough(t *testing.T) {
	app := newSubApp(subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": "t", "route": "/t"}))
	s := start(t, "app", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
	subscribed(t, s, 1)

	resp := s.Do(t, http.MethodPost, "/v1.0/publish/pubsub/t?metadata.cloudevent.id=my-id&metadata.cloudevent.source=src&metadata.cloudevent.type=my.type&metadata.cloudevent.subject=subj", "x")
	if resp.Status != http.StatusNoContent {
		t.Fatalf("publish: %d %s", resp.Status, resp.Body)
	}
	ce := app.waitN(t, "/t", 1)[0].CE(t)
	for k, v := range map[string]string{"id": "my-id", "source": "src", "type": "my.type", "subject": "subj"} {
		if ce[k] != v {
			t.Errorf("override %s = %v, want %v", k, ce[k], v)
		}
	}

	publish(t, s, "pubsub", "t", `{"specversion":"1.0","id":"ce-1","source":"elsewhere","type":"custom.type","datacontenttype":"application/json","data":{"n":1},"custom":"ext","topic":"wrong","time":"2020-01-01T00:00:00Z"}`,
		"Content-Type", "application/cloudevents+json")
	ce = app.waitN(t, "/t", 2)[1].CE(t)
	for k, v := range map[string]any{"id": "ce-1", "source": "elsewhere", "type": "custom.type", "custom": "ext", "topic": "t", "pubsubname": "pubsub", "time": "2020-01-01T00:00:00Z"} {
		if ce[k] != v {
			t.Errorf("passthrough %s = %v, want %v", k, ce[k], v)
		}
	}
	if !traceparentRE.MatchString(ce["traceparent"].(string)) {
		t.Errorf("passthrough traceparent = %v, want one set by the sidecar", ce["traceparent"])
	}

	// A CloudEvent without the optional attributes gets daprd's defaults.
	publish(t, s, "pubsub", "t", `{"id":"ce-2","data":"d"}`, "Content-Type", "application/cloudevents+json")
	ce = app.waitN(t, "/t", 3)[2].CE(t)
	for k, v := range map[string]any{"source": "Dapr", "type": "com.dapr.event.sent", "specversion": "1.0"} {
		if ce[k] != v {
			t.Errorf("passthrough default %s = %v, want %v", k, ce[k], v)
		}
	}
}
