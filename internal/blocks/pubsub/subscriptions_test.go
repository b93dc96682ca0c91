package pubsub_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

func subscriptionV1(name, topic, route string, extra ...string) string {
	return fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: %s\nspec:\n  pubsubname: pubsub\n  topic: %s\n  route: %s\n%s", name, topic, route, strings.Join(extra, ""))
}

func subscriptionV2(name, topic, routes string, extra ...string) string {
	return fmt.Sprintf("apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: %s\nspec:\n  pubsubname: pubsub\n  topic: %s\n  routes:\n%s%s", name, topic, routes, strings.Join(extra, ""))
}

// resourceErrors reads the metadata API's resourceErrors.
func resourceErrors(t testing.TB, s *mechatest.Sidecar) []map[string]string {
	var m struct {
		ResourceErrors []map[string]string `json:"resourceErrors"`
	}
	s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
	return m.ResourceErrors
}

// TestDeclarativeSubscriptions loads v1alpha1 and v2alpha1 Subscription
// resources: events follow their routes, the metadata API lists them as
// DECLARATIVE, one for another app is skipped and one with an invalid
// rule is refused with its file and reason.
func TestDeclarativeSubscriptions(t *testing.T) {
	app := newSubApp("")
	s := start(t, "declared", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"),
		subscriptionV1("legacy", "v1topic", "/v1"),
		subscriptionV2("modern", "v2topic", "    rules:\n    - match: event.data.kind == \"special\"\n      path: /special\n    default: /v2\n", "  deadLetterTopic: dl\n"),
		subscriptionV1("notmine", "other", "/other", "scopes: [someone-else]\n"),
		subscriptionV2("broken", "bad", "    rules:\n    - match: event.data.size >\n      path: /bad\n"),
	)
	subs := subscribed(t, s, 2)
	if len(subs) != 2 {
		t.Fatalf("subscriptions = %v, want 2", subs)
	}
	byTopic := map[string]map[string]any{}
	for _, sub := range subs {
		byTopic[fmt.Sprint(sub["topic"])] = sub
		if sub["type"] != "DECLARATIVE" || sub["pubsubname"] != "pubsub" {
			t.Errorf("subscription %v, want type DECLARATIVE on pubsub", sub)
		}
	}
	if byTopic["v2topic"]["deadLetterTopic"] != "dl" {
		t.Errorf("v2 deadLetterTopic = %v", byTopic["v2topic"]["deadLetterTopic"])
	}
	rules := fmt.Sprint(byTopic["v2topic"]["rules"])
	if !strings.Contains(rules, `event.data.kind == "special"`) || !strings.Contains(rules, "/v2") {
		t.Errorf("v2 rules = %s", rules)
	}
	errs := resourceErrors(t, s)
	if len(errs) != 1 || errs[0]["name"] != "broken" || errs[0]["kind"] != "Subscription" ||
		!strings.Contains(errs[0]["error"], "invalid match expression") || !strings.HasSuffix(errs[0]["file"], ".yaml") {
		t.Errorf("resource errors = %v, want the broken rule with its file", errs)
	}

	publish(t, s, "pubsub", "v1topic", "a")
	publish(t, s, "pubsub", "v2topic", `{"kind":"special"}`, "Content-Type", "application/json")
	publish(t, s, "pubsub", "v2topic", `{"kind":"plain"}`, "Content-Type", "application/json")
	app.waitN(t, "/v1", 1)
	app.waitN(t, "/special", 1)
	app.waitN(t, "/v2", 1)
}

// TestProgrammaticOverridesDeclarative: for the same pubsub and topic the
// app's answer wins, as in daprd.
func TestProgrammaticOverridesDeclarative(t *testing.T) {
	app := newSubApp(subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": "t", "route": "/programmatic"}))
	s := start(t, "override", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"), subscriptionV1("declared", "t", "/declared"))
	mechatest.Eventually(t, waitFor, func() error {
		subs := subscribed(t, s, 1)
		if subs[0]["type"] != "PROGRAMMATIC" {
			return fmt.Errorf("subscription %v, want the programmatic one", subs[0])
		}
		return nil
	})
	publish(t, s, "pubsub", "t", "x")
	app.waitN(t, "/programmatic", 1)
	if n := len(app.deliveries("/declared")); n != 0 {
		t.Errorf("%d deliveries to the declared route", n)
	}
}

// TestMalformedSubscribeAnswer: an answer that is not a list is logged
// and reported, a malformed entry is refused alone, and the sidecar keeps
// serving.
func TestMalformedSubscribeAnswer(t *testing.T) {
	t.Run("not a list", func(t *testing.T) {
		app := newSubApp(`{"pubsubname": "pubsub"`)
		s := start(t, "malformed", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
		mechatest.Eventually(t, waitFor, func() error {
			for _, e := range resourceErrors(t, s) {
				if strings.Contains(e["error"], "not a JSON array") {
					return nil
				}
			}
			return fmt.Errorf("resource errors = %v", resourceErrors(t, s))
		})
		publish(t, s, "pubsub", "t", "still serving")
	})
	t.Run("one bad entry", func(t *testing.T) {
		app := newSubApp(`[{"pubsubname":"pubsub","topic":"bad","route":"/bad","metadata":{"rawPayload":true}},
			{"pubsubname":"pubsub","topic":"good","route":"/good"},
			{"pubsubname":"pubsub","topic":"noroute"},
			{"pubsubname":"pubsub","topic":"badrule","routes":{"rules":[{"match":"event.type ==","path":"/x"}]}}]`)
		s := start(t, "halfgood", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub"))
		subs := subscribed(t, s, 1)
		if len(subs) != 1 || subs[0]["topic"] != "good" {
			t.Errorf("subscriptions = %v, want only good", subs)
		}
		mechatest.Eventually(t, waitFor, func() error {
			if errs := resourceErrors(t, s); len(errs) != 2 {
				return fmt.Errorf("resource errors = %v, want the bad entry and the bad rule", errs)
			}
			return nil
		})
		publish(t, s, "pubsub", "good", "x")
		app.waitN(t, "/good", 1)
	})
}

// TestSubscribeRetried: an app that answers /dapr/subscribe with 503 at
// first is asked again.
func TestSubscribeRetried(t *testing.T) {
	var asked atomic.Int32
	app := newSubApp(subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": "t", "route": "/t"}))
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/subscribe" && asked.Add(1) < 3 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		app.ServeHTTP(w, r)
	}))
	s := start(t, "retried", port, "http", inMemory(t, "pubsub"))
	subscribed(t, s, 1)
	if n := asked.Load(); n < 3 {
		t.Errorf("asked %d times, want 3", n)
	}
	publish(t, s, "pubsub", "t", "x")
	app.waitN(t, "/t", 1)
}

// TestNoApp: without an app port, declarations are not started (nothing
// to deliver to) and publishing works.
func TestNoApp(t *testing.T) {
	s := start(t, "noapp", 0, "", inMemory(t, "pubsub"), subscriptionV1("s", "t", "/t"))
	publish(t, s, "pubsub", "t", "x")
	var m struct {
		Subscriptions []any `json:"subscriptions"`
	}
	s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
	if len(m.Subscriptions) != 0 {
		t.Errorf("subscriptions = %v, want none without an app", m.Subscriptions)
	}
}
