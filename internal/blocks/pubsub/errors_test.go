package pubsub_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// TestPublishErrors checks daprd's status, errorCode and ErrorInfo reason
// for every way a publish can be refused, over HTTP and gRPC.
func TestPublishErrors(t *testing.T) {
	s := startPlain(t, "errs", 0, "",
		inMemory(t, "pubsub"),
		inMemory(t, "scoped", "publishingScopes", "errs=allowed;other=secret", "protectedTopics", "secret"),
		inMemory(t, "limited", "allowedTopics", "only"),
		plain(t, "broken", "failTopics", "t"),
	)
	cases := []struct {
		name, path, contentType, body string
		status                        int
		code, reason                  string
		grpc                          codes.Code
		req                           *runtimev1.PublishEventRequest
	}{
		{"unknown pubsub", "/v1.0/publish/nope/t", "", "x", 404, "ERR_PUBSUB_NOT_FOUND", "DAPR_PUBSUB_NOT_FOUND", codes.InvalidArgument,
			&runtimev1.PublishEventRequest{PubsubName: "nope", Topic: "t"}},
		{"missing topic", "/v1.0/publish/pubsub", "", "x", 404, "ERR_TOPIC_NAME_EMPTY", "DAPR_PUBSUB_TOPIC_NAME_EMPTY", codes.InvalidArgument,
			&runtimev1.PublishEventRequest{PubsubName: "pubsub"}},
		{"missing pubsub", "/v1.0/publish", "", "x", 404, "ERR_PUBSUB_EMPTY", "DAPR_PUBSUB_NAME_EMPTY", codes.InvalidArgument,
			&runtimev1.PublishEventRequest{Topic: "t"}},
		{"invalid CloudEvent", "/v1.0/publish/pubsub/t", "application/cloudevents+json", "{not json", 500, "ERR_PUBSUB_CLOUD_EVENTS_SER", "DAPR_PUBSUB_CLOUD_EVENT_CREATION", codes.InvalidArgument,
			&runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: "t", DataContentType: "application/cloudevents+json", Data: []byte("[1]")}},
		{"bad rawPayload", "/v1.0/publish/pubsub/t?metadata.rawPayload=yes", "", "x", 400, "ERR_PUBSUB_REQUEST_METADATA", "DAPR_PUBSUB_METADATA_DESERIALIZATION", codes.InvalidArgument,
			&runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: "t", Metadata: map[string]string{"rawPayload": "yes"}}},
		{"topic not in the app's scopes", "/v1.0/publish/scoped/other", "", "x", 403, "ERR_PUBSUB_FORBIDDEN", "DAPR_PUBSUB_FORBIDDEN", codes.PermissionDenied,
			&runtimev1.PublishEventRequest{PubsubName: "scoped", Topic: "other"}},
		{"protected topic", "/v1.0/publish/scoped/secret", "", "x", 403, "ERR_PUBSUB_FORBIDDEN", "DAPR_PUBSUB_FORBIDDEN", codes.PermissionDenied,
			&runtimev1.PublishEventRequest{PubsubName: "scoped", Topic: "secret"}},
		{"topic not allowed", "/v1.0/publish/limited/elsewhere", "", "x", 403, "ERR_PUBSUB_FORBIDDEN", "DAPR_PUBSUB_FORBIDDEN", codes.PermissionDenied,
			&runtimev1.PublishEventRequest{PubsubName: "limited", Topic: "elsewhere"}},
		{"broker failure", "/v1.0/publish/broken/t", "", "x", 500, "ERR_PUBSUB_PUBLISH_MESSAGE", "DAPR_PUBSUB_PUBLISH_MESSAGE", codes.Internal,
			&runtimev1.PublishEventRequest{PubsubName: "broken", Topic: "t"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h []string
			if c.contentType != "" {
				h = []string{"Content-Type", c.contentType}
			}
			resp := s.Do(t, http.MethodPost, c.path, c.body, h...)
			if resp.Status != c.status || resp.ErrorCode() != c.code {
				t.Errorf("HTTP: %d %s, want %d %s", resp.Status, resp.Body, c.status, c.code)
			}
			var body struct {
				Details []map[string]any `json:"details"`
			}
			_ = json.Unmarshal(resp.Body, &body)
			if len(body.Details) == 0 || body.Details[0]["reason"] != c.reason {
				t.Errorf("HTTP details = %v, want reason %s", body.Details, c.reason)
			}
			_, err := s.Dapr.PublishEvent(ctxT(t), c.req)
			st := status.Convert(err)
			if st.Code() != c.grpc {
				t.Errorf("gRPC: %v, want %v", err, c.grpc)
			}
			var reason string
			for _, d := range st.Details() {
				if ei, ok := d.(*errdetails.ErrorInfo); ok {
					reason = ei.GetReason()
				}
			}
			if reason != c.reason {
				t.Errorf("gRPC reason = %q, want %q", reason, c.reason)
			}
		})
	}
	// Allowed operations still work.
	for _, p := range []string{"/v1.0/publish/scoped/allowed", "/v1.0/publish/limited/only"} {
		if resp := s.Do(t, http.MethodPost, p, "x"); resp.Status != http.StatusNoContent {
			t.Errorf("%s: %d %s, want 204", p, resp.Status, resp.Body)
		}
	}
}

// TestSubscriptionScopes: a subscription to a topic the component's
// subscriptionScopes do not give the app is refused and reported.
func TestSubscriptionScopes(t *testing.T) {
	app := newSubApp(subscribeJSON(
		map[string]any{"pubsubname": "pubsub", "topic": "mine", "route": "/mine"},
		map[string]any{"pubsubname": "pubsub", "topic": "theirs", "route": "/theirs"},
	))
	s := start(t, "scopes", mechatest.HTTPApp(t, app), "http", inMemory(t, "pubsub", "subscriptionScopes", "scopes=mine"))
	subs := subscribed(t, s, 1)
	var m struct {
		ResourceErrors []struct{ Name, Error string } `json:"resourceErrors"`
	}
	mechatest.Eventually(t, waitFor, func() error {
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
		if len(m.ResourceErrors) == 0 {
			return errString("no resource error yet")
		}
		return nil
	})
	if len(subs) != 1 || subs[0]["topic"] != "mine" {
		t.Errorf("subscriptions = %v, want only mine", subs)
	}
	if !strings.Contains(m.ResourceErrors[0].Error, "subscription to topic 'theirs' on pubsub 'pubsub' is not allowed") {
		t.Errorf("resource errors = %+v", m.ResourceErrors)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
