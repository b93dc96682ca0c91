package mqtt3_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/bindingstest"
	"github.com/mecha-dev/mecha/components/bindings/mqtt3"
)

// unique returns a name unique to this run.
func unique(kind string) string { return fmt.Sprintf("mecha-test-%s-%d", kind, time.Now().UnixNano()) }

func newBinding(t *testing.T, props map[string]string) *mqtt3.Binding {
	t.Helper()
	b := mqtt3.New(components.Deps{})
	if err := b.Init(context.Background(), components.Metadata{Name: "mq", Type: "bindings.mqtt3", Properties: props}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// rawClient is a plain MQTT client standing in for other publishers and
// subscribers.
func rawClient(t *testing.T, url string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(unique("raw")).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, data []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, data); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publishing to %s: %v", topic, tok.Error())
	}
}

// subscribe returns a channel of the messages on topic.
func subscribe(t *testing.T, c mqtt.Client, topic string) <-chan mqtt.Message {
	t.Helper()
	ch := make(chan mqtt.Message, 100)
	if tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { ch <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribing to %s: %v", topic, tok.Error())
	}
	return ch
}

func receive(t *testing.T, ch <-chan mqtt.Message, want string) mqtt.Message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if string(m.Payload()) == want {
				return m
			}
		case <-timeout:
			t.Fatalf("message %q not received", want)
		}
	}
}

func TestConformance(t *testing.T) {
	url := bindingstest.ServiceEnv(t, "MQTT_URL")
	raw := rawClient(t, url)
	topic := unique("topic")
	other := topic + "/other"
	msgs := subscribe(t, raw, topic+"/#")
	props := func(kv ...string) map[string]string {
		p := map[string]string{"url": url, "topic": topic, "consumerID": unique("c"), "backOffMaxRetries": "3"}
		for i := 0; i+1 < len(kv); i += 2 {
			p[kv[i]] = kv[i+1]
		}
		return p
	}
	t.Run("output", func(t *testing.T) {
		bindingstest.RunOutput(t, func(t *testing.T) bindings.Output {
			return newBinding(t, props("topic", topic+"/out"))
		}, bindingstest.OutputOptions{
			Operations: []bindings.Operation{"create"},
			Cases: []bindingstest.OutputCase{
				{
					Name: "publish", Request: bindings.InvokeRequest{Operation: "create", Data: []byte(`{"n":1}`)}, NoContent: true,
					Check: func(t *testing.T, _ *bindings.InvokeResponse) {
						if m := receive(t, msgs, `{"n":1}`); m.Topic() != topic+"/out" {
							t.Errorf("published to %s, want %s/out", m.Topic(), topic)
						}
					},
				},
				{
					Name: "publish to the request's topic", Request: bindings.InvokeRequest{Operation: "create", Data: []byte("x"), Metadata: map[string]string{"topic": other}}, NoContent: true,
					Check: func(t *testing.T, _ *bindings.InvokeResponse) {
						if m := receive(t, msgs, "x"); m.Topic() != other {
							t.Errorf("published to %s, want %s", m.Topic(), other)
						}
					},
				},
				{Name: "bad retain", Request: bindings.InvokeRequest{Operation: "create", Metadata: map[string]string{"retain": "maybe"}}, WantErr: `"retain"`},
			},
		})
	})
	t.Run("input", func(t *testing.T) {
		in := topic + "/in"
		bindingstest.RunInput(t, func(t *testing.T) bindings.Input {
			return newBinding(t, props("topic", in))
		}, bindingstest.InputOptions{
			Trigger:    func(t *testing.T, data []byte) { publish(t, raw, in, data) },
			Redelivers: true,
		})
	})
}

// TestBrokerRedelivery checks the guarantee beyond in-process retries: a
// message the app never accepted is delivered again by the broker when the
// input side reconnects with the same consumerID.
func TestBrokerRedelivery(t *testing.T) {
	url := bindingstest.ServiceEnv(t, "MQTT_URL")
	raw := rawClient(t, url)
	topic := unique("redeliver")
	props := map[string]string{"url": url, "topic": topic, "consumerID": unique("c"), "backOffMaxRetries": "0"}
	got := make(chan string, 10)
	read := func(b *mqtt3.Binding, accept bool) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- b.Read(ctx, func(_ context.Context, e *bindings.Event) ([]byte, error) {
				got <- string(e.Data)
				if !accept {
					return nil, fmt.Errorf("rejected")
				}
				return nil, nil
			})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Read: %v", err)
			}
		}
	}
	await := func(want string) {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case d := <-got:
				if d == want {
					return
				}
			case <-timeout:
				t.Fatalf("%q not delivered", want)
			}
		}
	}
	// The first reader establishes the broker session, then rejects.
	stop := read(newBinding(t, props), false)
	// Publish until the subscription is in place.
	ready := fmt.Sprintf("ready-%d", time.Now().UnixNano())
	subscribed := false
	for deadline := time.Now().Add(10 * time.Second); !subscribed; {
		if time.Now().After(deadline) {
			t.Fatal("the input binding never received a message")
		}
		publish(t, raw, topic, []byte(ready))
		select {
		case d := <-got:
			subscribed = d == ready
		case <-time.After(300 * time.Millisecond):
		}
	}
	publish(t, raw, topic, []byte("precious"))
	await("precious")
	stop()
	// A new instance with the same consumerID gets it again and accepts it.
	stop = read(newBinding(t, props), true)
	defer stop()
	await("precious")
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  []string
	}{
		{"nothing", map[string]string{}, []string{`"url"`, `"topic"`, `"consumerID"`}},
		{"bad scheme", map[string]string{"url": "http://h:1", "topic": "t", "consumerID": "c"}, []string{`"url"`, "scheme"}},
		{"bad qos", map[string]string{"url": "tcp://h:1", "topic": "t", "consumerID": "c", "qos": "3"}, []string{`"qos"`}},
		{"bad retries", map[string]string{"url": "tcp://h:1", "topic": "t", "consumerID": "c", "backOffMaxRetries": "-2"}, []string{`"backOffMaxRetries"`}},
		{"bad bool", map[string]string{"url": "tcp://h:1", "topic": "t", "consumerID": "c", "cleanSession": "sometimes"}, []string{`"cleanSession"`}},
		{"bad ca", map[string]string{"url": "ssl://h:1", "topic": "t", "consumerID": "c", "caCert": "nope"}, []string{`"caCert"`}},
		{"password hidden", map[string]string{"url": "tcp://user:hunter2@", "topic": "t", "consumerID": "c"}, []string{`"url"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mqtt3.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil {
				t.Fatal("Init succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init error %q does not mention %s", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Init error leaks the password: %v", err)
			}
		})
	}
}
