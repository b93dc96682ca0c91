package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/config"
)

func subDoc(apiVersion, name, spec string, extra ...string) string {
	return "apiVersion: " + apiVersion + "\nkind: Subscription\nmetadata:\n  name: " + name + "\nspec:\n" + spec + strings.Join(extra, "")
}

func TestSubscriptions(t *testing.T) {
	const file = "subs.yaml"
	cases := []struct {
		name     string
		data     string
		opts     config.LoadOptions
		want     []config.Subscription
		wantErrs []string
		skipped  []string
	}{
		{
			name: "v2alpha1 with rules, default, dead letter, bulk and metadata",
			data: subDoc("dapr.io/v2alpha1", "orders", `  pubsubname: pubsub
  topic: orders
  routes:
    rules:
    - match: event.type == "widget"
      path: /widgets
    - match: 'event.data.size > 10'
      path: /big
    default: /orders
  deadLetterTopic: poison
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 50
    maxAwaitDurationMs: 40
  metadata:
    rawPayload: true
    partitions: 3
`, "scopes: [me]\n"),
			opts: config.LoadOptions{AppID: "me"},
			want: []config.Subscription{{
				ObjectMeta: config.ObjectMeta{Name: "orders"}, APIVersion: "dapr.io/v2alpha1", Scopes: []string{"me"}, File: file,
				Spec: config.SubscriptionSpec{
					PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "poison",
					Metadata: map[string]string{"rawPayload": "true", "partitions": "3"},
					Routes: config.SubscriptionRoutes{Default: "/orders", Rules: []config.SubscriptionRule{
						{Match: `event.type == "widget"`, Path: "/widgets"}, {Match: "event.data.size > 10", Path: "/big"},
					}},
					BulkSubscribe: config.BulkSubscribeSpec{Enabled: true, MaxMessagesCount: 50, MaxAwaitDurationMs: 40},
				},
			}},
		},
		{
			name: "v1alpha1 route becomes the default; field names are case-insensitive as in daprd",
			data: subDoc("dapr.io/v1alpha1", "legacy", "  pubsubName: pubsub\n  Topic: t\n  route: /t\n"),
			want: []config.Subscription{{
				ObjectMeta: config.ObjectMeta{Name: "legacy"}, APIVersion: "dapr.io/v1alpha1", File: file,
				Spec: config.SubscriptionSpec{PubsubName: "pubsub", Topic: "t", Routes: config.SubscriptionRoutes{Default: "/t"}},
			}},
		},
		{
			name:     "v1alpha1 with routes",
			data:     subDoc("dapr.io/v1alpha1", "s", "  pubsubname: p\n  topic: t\n  routes:\n    default: /t\n"),
			wantErrs: []string{"Subscription s: spec.routes is a dapr.io/v2alpha1 field"},
		},
		{
			name:     "v2alpha1 with route",
			data:     subDoc("dapr.io/v2alpha1", "s", "  pubsubname: p\n  topic: t\n  route: /t\n"),
			wantErrs: []string{"Subscription s: spec.route is a dapr.io/v1alpha1 field: in v2alpha1 use spec.routes.default"},
		},
		{
			name:     "no route at all",
			data:     subDoc("dapr.io/v2alpha1", "s", "  pubsubname: p\n  topic: t\n"),
			wantErrs: []string{"Subscription s: missing spec.routes"},
		},
		{
			name:     "missing pubsubname and topic",
			data:     subDoc("dapr.io/v2alpha1", "s", "  routes:\n    default: /t\n"),
			wantErrs: []string{"Subscription s: missing spec.pubsubname\nmissing spec.topic"},
		},
		{
			name:     "rule without path",
			data:     subDoc("dapr.io/v2alpha1", "s", "  pubsubname: p\n  topic: t\n  routes:\n    rules:\n    - match: 'true'\n"),
			wantErrs: []string{"Subscription s: spec.routes.rules[0] has no path"},
		},
		{
			name:     "wrong type",
			data:     subDoc("dapr.io/v2alpha1", "s", "  pubsubname: p\n  topic: [a, b]\n  routes:\n    default: /t\n"),
			wantErrs: []string{"Subscription s: invalid spec: spec.topic must be a string, not array"},
		},
		{
			name:     "negative bulk settings",
			data:     subDoc("dapr.io/v2alpha1", "s", "  pubsubname: p\n  topic: t\n  routes:\n    default: /t\n  bulkSubscribe:\n    enabled: true\n    maxMessagesCount: -1\n"),
			wantErrs: []string{"Subscription s: spec.bulkSubscribe: maxMessagesCount and maxAwaitDurationMs must not be negative"},
		},
		{
			name:     "bad apiVersion and missing name",
			data:     subDoc("dapr.io/v3", "s", "  topic: t\n") + "---\n" + subDoc("dapr.io/v2alpha1", "", "  topic: t\n"),
			wantErrs: []string{`Subscription s: apiVersion "dapr.io/v3" is not dapr.io/v2alpha1 or dapr.io/v1alpha1`, "Subscription : missing metadata.name"},
		},
		{
			name:     "missing spec",
			data:     "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\n",
			wantErrs: []string{"Subscription s: missing spec"},
		},
		{
			name: "scopes and namespaces",
			data: subDoc("dapr.io/v2alpha1", "theirs", "  pubsubname: p\n  topic: t\n  routes:\n    default: /t\n", "scopes: [other]\n") + "---\n" +
				strings.Replace(subDoc("dapr.io/v2alpha1", "prod", "  pubsubname: p\n  topic: t\n  routes:\n    default: /t\n"), "  name: prod\n", "  name: prod\n  namespace: prod\n", 1),
			opts:    config.LoadOptions{AppID: "me", Namespace: "dev"},
			skipped: []string{`Subscription/theirs (scopes [other] do not include "me")`, "Subscription/prod (namespace prod, sidecar is in dev)"},
		},
		{
			name: "duplicate names",
			data: subDoc("dapr.io/v2alpha1", "s", "  pubsubname: p\n  topic: t\n  routes:\n    default: /t\n") + "---\n" +
				subDoc("dapr.io/v1alpha1", "s", "  pubsubname: p\n  topic: u\n  route: /u\n"),
			want: []config.Subscription{{
				ObjectMeta: config.ObjectMeta{Name: "s"}, APIVersion: "dapr.io/v2alpha1", File: file,
				Spec: config.SubscriptionSpec{PubsubName: "p", Topic: "t", Routes: config.SubscriptionRoutes{Default: "/t"}},
			}},
			wantErrs: []string{`Subscription s: duplicate subscription name "s" (first defined in subs.yaml)`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := config.ParseFile(file, []byte(c.data), c.opts)
			for i := range res.Subscriptions {
				// Files of later documents carry "(document N)".
				res.Subscriptions[i].File, _, _ = strings.Cut(res.Subscriptions[i].File, " ")
			}
			if !reflect.DeepEqual(res.Subscriptions, c.want) {
				t.Errorf("subscriptions =\n%+v\nwant\n%+v", res.Subscriptions, c.want)
			}
			var errs []string
			for _, e := range res.Errors {
				errs = append(errs, e.Kind+" "+e.Name+": "+e.Err)
			}
			if len(errs) != len(c.wantErrs) {
				t.Fatalf("errors = %q, want %d starting with %q", errs, len(c.wantErrs), c.wantErrs)
			}
			for i, w := range c.wantErrs {
				if !strings.HasPrefix(errs[i], w) {
					t.Errorf("error %d = %q, want it to start with %q", i, errs[i], w)
				}
				if !strings.HasPrefix(res.Errors[i].File, file) {
					t.Errorf("error %d names file %q, want %s", i, res.Errors[i].File, file)
				}
			}
			if !reflect.DeepEqual(res.Skipped, c.skipped) {
				t.Errorf("skipped = %q, want %q", res.Skipped, c.skipped)
			}
			if len(res.Components) != 0 {
				t.Errorf("components = %v, want none", res.Components)
			}
		})
	}
}
