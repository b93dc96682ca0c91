package pubsub_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// TestSubscriptionTopicLimits: allowedTopics and protectedTopics also
// govern subscriptions (daprd's IsOperationAllowed for both directions):
// the app's subscriptions to a topic outside allowedTopics, or to a
// protected topic it has no subscription scope for, are refused and
// reported, while its subscription to an allowed, unprotected topic works
// end to end.
func TestSubscriptionTopicLimits(t *testing.T) {
	app := newSubApp(subscribeJSON(
		map[string]any{"pubsubname": "pubsub", "topic": "open", "route": "/open"},
		map[string]any{"pubsubname": "pubsub", "topic": "elsewhere", "route": "/elsewhere"},
		map[string]any{"pubsubname": "pubsub", "topic": "secret", "route": "/secret"},
	))
	s := start(t, "limits", mechatest.HTTPApp(t, app), "http",
		inMemory(t, "pubsub", "allowedTopics", "open,secret", "protectedTopics", "secret"))
	subs := subscribed(t, s, 1)
	if len(subs) != 1 || subs[0]["topic"] != "open" {
		t.Fatalf("subscriptions = %v, want only open", subs)
	}
	var m struct {
		ResourceErrors []struct{ Name, Error string } `json:"resourceErrors"`
	}
	mechatest.Eventually(t, waitFor, func() error {
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
		if len(m.ResourceErrors) < 2 {
			return errString("fewer than two resource errors yet")
		}
		return nil
	})
	var all strings.Builder
	for _, e := range m.ResourceErrors {
		all.WriteString(e.Error + "\n")
	}
	for _, topic := range []string{"elsewhere", "secret"} {
		if !strings.Contains(all.String(), "subscription to topic '"+topic+"' on pubsub 'pubsub' is not allowed") {
			t.Errorf("no refusal reported for %s: %s", topic, all.String())
		}
	}
	publish(t, s, "pubsub", "open", map[string]string{"n": "1"})
	app.waitN(t, "/open", 1)
}
