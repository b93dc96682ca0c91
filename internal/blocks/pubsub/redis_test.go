package pubsub_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// TestConsumerGroupsAcrossSidecars runs on Redis Streams: two instances of
// one app (the consumer group defaults to the app id) share the events,
// each handled once, while another app gets them all.
func TestConsumerGroupsAcrossSidecars(t *testing.T) {
	addr := mechatest.ServiceEnv(t, "REDIS_ADDR")
	topic := fmt.Sprintf("groups-%d", time.Now().UnixNano())
	comp := mechatest.Component("pubsub", "pubsub.redis", "redisHost", addr, "redeliverInterval", "200ms", "processingTimeout", "1s")
	subscribe := subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": topic, "route": "/in"})
	w1, w2, audit := newSubApp(subscribe), newSubApp(subscribe), newSubApp(subscribe)
	s1 := start(t, "workers", mechatest.HTTPApp(t, w1), "http", comp)
	s2 := start(t, "workers", mechatest.HTTPApp(t, w2), "http", comp)
	s3 := start(t, "audit", mechatest.HTTPApp(t, audit), "http", comp)
	pub := start(t, "producer", 0, "", comp)
	for _, s := range []*mechatest.Sidecar{s1, s2, s3} {
		subscribed(t, s, 1)
	}
	const n = 40
	for i := range n {
		publish(t, pub, "pubsub", topic, fmt.Sprint(i))
	}
	audit.waitN(t, "/in", n)
	mechatest.Eventually(t, waitFor, func() error {
		if got := len(w1.deliveries("/in")) + len(w2.deliveries("/in")); got < n {
			return fmt.Errorf("workers handled %d of %d", got, n)
		}
		return nil
	})
	settle()
	seen := map[any]int{}
	for _, d := range append(w1.deliveries("/in"), w2.deliveries("/in")...) {
		seen[d.CE(t)["data"]]++
	}
	if len(seen) != n {
		t.Errorf("workers saw %d distinct events, want %d", len(seen), n)
	}
	for data, c := range seen {
		if c != 1 {
			t.Errorf("event %v handled %d times by the group", data, c)
		}
	}
	if len(w1.deliveries("/in")) == 0 || len(w2.deliveries("/in")) == 0 {
		t.Logf("one instance got everything (%d/%d): allowed, but the load was not shared", len(w1.deliveries("/in")), len(w2.deliveries("/in")))
	}
	if ce := audit.deliveries("/in")[0].CE(t); ce["source"] != "producer" {
		t.Errorf("source = %v, want producer", ce["source"])
	}
}
