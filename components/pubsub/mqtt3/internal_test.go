package mqtt3

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/pubsub/pubsubtest"
)

func TestMatches(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+/c", "a/x/c", true},
		{"+/+", "a/b", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"a/#", "a", true}, // '#' includes the parent level
		{"a/#", "a/b/c", true},
		{"a/#", "b/a", false},
		{"#", "a/b", true},
		{"#", "$SYS/x", false}, // MQTT-4.7.2-1
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	}
	for _, tt := range tests {
		if got := matches(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestTopicRules(t *testing.T) {
	long := strings.Repeat("x", maxTopicLen+1)
	for _, tt := range []struct {
		topic         string
		publish, subs bool // valid to publish to, to subscribe to
	}{
		{"orders", true, true},
		{"a/b/c", true, true},
		{"héllo/wörld", true, true},
		{"a/+/c", false, true},
		{"a/#", false, true},
		{"#", false, true},
		{"", false, false},
		{"a/#/c", false, false},
		{"a+", false, false},
		{"a/b#", false, false},
		{"$SYS/x", false, true},
		{"a\x00b", false, false},
		{"\xff", false, false},
		{long, false, false},
	} {
		if err := validTopic(tt.topic); (err == nil) != tt.publish {
			t.Errorf("validTopic(%.20q) = %v, want valid = %v", tt.topic, err, tt.publish)
		}
		if err := validFilter(tt.topic); (err == nil) != tt.subs {
			t.Errorf("validFilter(%.20q) = %v, want valid = %v", tt.topic, err, tt.subs)
		}
	}
}

func TestSettings(t *testing.T) {
	s, warnings, err := parseSettings(components.Metadata{Properties: map[string]string{
		"url": "tcp://h:1883", "consumerID": "app", "extra": "x",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Broker != "tcp://h:1883" || s.ConsumerID != "app" || s.ClientID != "" || s.QoS != 1 || s.Retain || s.CleanSession ||
		!s.SharedSubscriptions || s.Concurrency != DefaultConcurrency || s.MaxRetries != -1 ||
		s.InitialBackOff != DefaultInitialBackOff || s.MaxBackOff != DefaultMaxBackOff {
		t.Errorf("defaults = %+v", s)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"extra"`) {
		t.Errorf("warnings = %q, want one about \"extra\"", warnings)
	}

	s, warnings, err = parseSettings(components.Metadata{Properties: map[string]string{
		"URL": "mqtts://u:p@h:8883", "consumerid": "app", "clientID": " app-0 ", "qos": "2", "retain": "true",
		"cleanSession": "true", "sharedSubscriptions": "false", "concurrency": "1", "backOffMaxRetries": "3",
		"backOffInitialInterval": "10", "backOffMaxInterval": "1s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Broker != "ssl://h:8883" || s.TLS == nil || s.Username != "u" || s.ClientID != "app-0" || s.QoS != 2 || !s.Retain ||
		!s.CleanSession || s.SharedSubscriptions || s.Concurrency != 1 || s.MaxRetries != 3 ||
		s.InitialBackOff != 10*time.Millisecond || s.MaxBackOff != time.Second || len(warnings) != 0 {
		t.Errorf("settings = %+v, warnings %q", s, warnings)
	}
}

// TestUnwantedMessagesReleased: messages that arrive for a topic whose
// subscription ended, more than the server lets a client hold
// unacknowledged (Mosquitto: 20), are released after the hold time, so
// that they do not stall the sidecar's other subscriptions.
func TestUnwantedMessagesReleased(t *testing.T) {
	url := pubsubtest.ServiceEnv(t, "MQTT_URL")
	newBroker := func(group string) *Broker {
		b := New(components.Deps{})
		b.hold, b.unsubAfter = 300*time.Millisecond, 100*time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Init(ctx, components.Metadata{Properties: map[string]string{"url": url, "consumerID": group}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	sub, pub := newBroker("release-"+run), newBroker("release-pub-"+run)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ended, other := "release-"+run+"-ended", "release-"+run+"-other"

	// A subscription whose handler never succeeds ends while the server
	// keeps sending: its messages pile up unacknowledged.
	var attempts atomic.Int64
	sctx, stop := context.WithCancel(ctx)
	if err := sub.Subscribe(sctx, pubsub.SubscribeRequest{Topic: ended}, func(ctx context.Context, _ *pubsub.Message) error {
		attempts.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := pub.Publish(ctx, &pubsub.PublishRequest{Topic: ended, Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for attempts.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the first subscription never got a message")
		}
		time.Sleep(5 * time.Millisecond) // polling a counter
	}
	stop()
	before := attempts.Load() // at most concurrency, one per worker

	got := make(chan struct{}, 1)
	if err := sub.Subscribe(ctx, pubsub.SubscribeRequest{Topic: other}, func(context.Context, *pubsub.Message) error {
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, &pubsub.PublishRequest{Topic: other, Data: []byte("through")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("a message on another topic was not delivered: the unwanted messages stall the connection")
	}
	if n := attempts.Load(); n != before {
		t.Errorf("the ended subscription's handler ran %d more times after it ended", n-before)
	}
}
