package pubsub

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
)

func TestScopes(t *testing.T) {
	md := map[string]string{
		"publishingScopes":   "app1=a,b; app2=",
		"SubscriptionScopes": "app1=a",
		"allowedTopics":      "a, b, c, secret",
		"protectedTopics":    "secret",
	}
	cases := []struct {
		app, topic    string
		pub, sub      bool
		name          string
		extraMetadata map[string]string
	}{
		{name: "scoped topic", app: "app1", topic: "a", pub: true, sub: true},
		{name: "outside the app's publishing scopes", app: "app1", topic: "c", pub: false, sub: false},
		{name: "app with empty scopes", app: "app2", topic: "a", pub: false, sub: true},
		{name: "unscoped app, unprotected topic", app: "app3", topic: "c", pub: true, sub: true},
		{name: "unscoped app, protected topic", app: "app3", topic: "secret", pub: false, sub: false},
		{name: "not an allowed topic", app: "app3", topic: "z", pub: false, sub: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := parseScopes(c.app, md)
			if got := s.canPublish(c.topic); got != c.pub {
				t.Errorf("canPublish(%s) = %v, want %v", c.topic, got, c.pub)
			}
			if got := s.canSubscribe(c.topic); got != c.sub {
				t.Errorf("canSubscribe(%s) = %v, want %v", c.topic, got, c.sub)
			}
		})
	}
	if s := parseScopes("x", nil); !s.canPublish("any") || !s.canSubscribe("any") {
		t.Errorf("no scoping metadata must allow everything")
	}
}

func TestNewEnvelope(t *testing.T) {
	ce, err := newEnvelope(envelopeRequest{
		source: "app", topic: "t", pubsub: "ps", contentType: "application/json; charset=utf-8",
		data: []byte(` {"big": 123456789012345678901234567890} `), traceParent: "tp", traceState: "ts",
		metadata: map[string]string{"Cloudevent.Type": "x.y", "cloudevent.traceparent": "override"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ce)
	s := string(b)
	for _, want := range []string{
		`"data":{"big":123456789012345678901234567890}`, `"type":"x.y"`, `"source":"app"`,
		`"traceid":"override"`, `"traceparent":"override"`, `"tracestate":"ts"`, `"specversion":"1.0"`,
		`"datacontenttype":"application/json; charset=utf-8"`, `"topic":"t"`, `"pubsubname":"ps"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("envelope %s lacks %s", s, want)
		}
	}
	for _, body := range []string{"null", "[1]", `"s"`, "{", `{"a":1} {"b":2}`} {
		if _, err := newEnvelope(envelopeRequest{contentType: "application/cloudevents+json", data: []byte(body)}); err == nil {
			t.Errorf("CloudEvent body %q accepted", body)
		}
	}
	ce, err = newEnvelope(envelopeRequest{contentType: "application/cloudevents+json", data: []byte(`{"id":"1","n":12345678901234567890}`), topic: "t", pubsub: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(ce); !strings.Contains(string(b), `"n":12345678901234567890`) {
		t.Errorf("passthrough lost number precision: %s", b)
	}
}

func TestTTL(t *testing.T) {
	cases := []struct {
		md   map[string]string
		want time.Duration
		ok   bool
	}{
		{map[string]string{"ttlInSeconds": "60"}, time.Minute, true},
		{map[string]string{"TTLINSECONDS": "2"}, 2 * time.Second, true},
		{map[string]string{"ttl": "1m30s"}, 90 * time.Second, true},
		{map[string]string{"ttlInSeconds": "0"}, 0, true}, // a duration of 0: expired at once, as daprd
		{map[string]string{"ttlInSeconds": "-3"}, 0, false},
		{map[string]string{"ttlInSeconds": "soon"}, 0, false},
		{nil, 0, false},
	}
	for _, c := range cases {
		got, ok := ttlFrom(c.md)
		if got != c.want || ok != c.ok {
			t.Errorf("ttlFrom(%v) = %v, %v; want %v, %v", c.md, got, ok, c.want, c.ok)
		}
	}
	ce := map[string]any{}
	applyTTL(ce, []cpubsub.Feature{cpubsub.FeatureMessageTTL}, map[string]string{"ttlInSeconds": "5"})
	if _, ok := ce[fieldExpiration]; ok {
		t.Errorf("expiration stamped for a broker with MESSAGE_TTL")
	}
	applyTTL(ce, nil, map[string]string{"ttlInSeconds": "5"})
	if _, err := time.Parse(time.RFC3339, ce[fieldExpiration].(string)); err != nil {
		t.Errorf("expiration %v: %v", ce[fieldExpiration], err)
	}
}

func TestTraceParent(t *testing.T) {
	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	child := childTraceParent(parent)
	if !strings.HasPrefix(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(child, "-01") || child == parent {
		t.Errorf("child of %s = %s", parent, child)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		root := childTraceParent(bad)
		if _, _, ok := parseTraceParent(root); !ok || strings.Contains(root, "4bf92f") || !strings.HasSuffix(root, "-00") {
			t.Errorf("childTraceParent(%q) = %s, want a new root", bad, root)
		}
	}
}

func TestRoute(t *testing.T) {
	compileAll := func(rs ...RuleSpec) []rule {
		t.Helper()
		var out []rule
		for _, r := range rs {
			cr, err := compileRule(r.Match, r.Path)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, cr)
		}
		return out
	}
	rules := compileAll(
		RuleSpec{`event.type == "a"`, "/a"},
		RuleSpec{`has(event.data.n) && event.data.n > 10`, "/big"},
		RuleSpec{"", "/default"},
	)
	var ev map[string]any
	_ = json.Unmarshal([]byte(`{"type":"b","data":{"n":11}}`), &ev)
	if p, ok, err := route(rules, ev); p != "/big" || !ok || err != nil {
		t.Errorf("route = %q %v %v, want /big", p, ok, err)
	}
	_ = json.Unmarshal([]byte(`{"type":"a"}`), &ev)
	if p, _, _ := route(rules, ev); p != "/a" {
		t.Errorf("route = %q, want /a", p)
	}
	if _, ok, err := route(compileAll(RuleSpec{`event.type == "z"`, "/z"}), ev); ok || err != nil {
		t.Errorf("no rule matches: ok %v err %v", ok, err)
	}
	if _, _, err := route(compileAll(RuleSpec{`event.data.missing == 1`, "/m"}), map[string]any{"data": map[string]any{}}); err == nil {
		t.Errorf("an evaluation error must be reported")
	}
	if _, _, err := route(compileAll(RuleSpec{`event.type`, "/t"}), map[string]any{"type": "x"}); err == nil || !strings.Contains(err.Error(), "not a boolean") {
		t.Errorf("a non-boolean result: %v", err)
	}
	for _, bad := range []string{"event.type ==", "1 + 1", "nosuchvar == 1"} {
		if _, err := compileRule(bad, "/x"); err == nil {
			t.Errorf("compileRule(%q) accepted", bad)
		}
	}
}

func TestCompile(t *testing.T) {
	s, err := compile(SubscriptionSpec{PubsubName: "p", Topic: "t", Default: "/d", BulkSubscribe: BulkSubscribe{Enabled: true}}, Declarative)
	if err != nil {
		t.Fatal(err)
	}
	if !s.bulk || s.bulkCount != defaultBulkCount || s.bulkAwait != defaultBulkAwait || len(s.rules) != 1 {
		t.Errorf("compiled = %+v", s)
	}
	for _, spec := range []SubscriptionSpec{
		{Topic: "t"}, {PubsubName: "p"},
		{PubsubName: "p", Topic: "t", Metadata: map[string]string{"rawPayload": "perhaps"}},
		{PubsubName: "p", Topic: "t", BulkSubscribe: BulkSubscribe{Enabled: true, MaxMessagesCount: -1}},
	} {
		if _, err := compile(spec, Programmatic); err == nil {
			t.Errorf("compile(%+v) accepted", spec)
		}
	}
	a, _ := compile(SubscriptionSpec{PubsubName: "p", Topic: "t", Default: "/a", Metadata: map[string]string{"k": "v"}}, Declarative)
	b, _ := compile(SubscriptionSpec{PubsubName: "p", Topic: "t", Default: "/b", Metadata: map[string]string{"k": "v"}}, Programmatic)
	c, _ := compile(SubscriptionSpec{PubsubName: "p", Topic: "t", Default: "/b", Metadata: map[string]string{"k": "w"}}, Programmatic)
	if !sameBrokerSubscription(a, b) || sameBrokerSubscription(a, c) {
		t.Errorf("sameBrokerSubscription is wrong")
	}
}

func TestEventData(t *testing.T) {
	b := New(Options{})
	br := &broker{name: "ps"}
	sub := &subscription{topic: "t"}
	cases := []struct {
		body, want string
		fail       bool
	}{
		{`{"datacontenttype":"application/json","data":{"a": 1, "z":[1,2]}}`, `{"a":1,"z":[1,2]}`, false},
		{`{"datacontenttype":"text/plain","data":"hello"}`, "hello", false},
		{`{"datacontenttype":"text/plain","data":{"not":"text"}}`, "", true},
		{`{"datacontenttype":"application/octet-stream","data_base64":"aGk="}`, "hi", false},
		{`{"data_base64":"%%%"}`, "", true},
		{`{"datacontenttype":"image/png","data":"x"}`, "", false},
	}
	for _, c := range cases {
		ev, err := b.decode(br, sub, &cpubsub.Message{Data: []byte(c.body)})
		if err != nil {
			t.Fatalf("decode(%s): %v", c.body, err)
		}
		got, err := ev.eventData()
		if (err != nil) != c.fail || string(got) != c.want {
			t.Errorf("eventData(%s) = %q, %v; want %q, fail %v", c.body, got, err, c.want, c.fail)
		}
	}
	for _, body := range []string{"", "null", "[]", "not json"} {
		if _, err := b.decode(br, sub, &cpubsub.Message{Data: []byte(body)}); err == nil {
			t.Errorf("decode(%q) accepted", body)
		}
	}
}

// FuzzEnvelope feeds arbitrary bodies through both sides of the envelope:
// publishing must never panic, and what it produces must decode on the
// subscriber side.
func FuzzEnvelope(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"a":1}`}, {"application/cloudevents+json", `{"id":"1","data":{"x":[1]}}`},
		{"text/plain", "hi"}, {"application/octet-stream", "\x00\xff"}, {"application/cloudevents+json", `{"data_base64":"!!"}`},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	b := New(Options{AppID: "fuzz"})
	br := &broker{name: "ps"}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		data, err := b.envelope(context.Background(), br, "t", ct, body, "", "", nil)
		if err != nil {
			return
		}
		ev, err := b.decode(br, &subscription{topic: "t"}, &cpubsub.Message{Data: data})
		if err != nil {
			t.Fatalf("the envelope of %q (%s) does not decode: %v: %s", body, ct, err, data)
		}
		_, _ = ev.topicEventRequest("/")
		_, _, _ = route(nil, ev.ce)
	})
}
