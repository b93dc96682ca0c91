package pubsub_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/components"
	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/pubsub/inmemory"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// plainBroker is the in-memory broker without its extras: no features (so
// the runtime stamps TTLs itself) and no BulkPublish (so bulk publishing
// goes one by one). Metadata failTopics lists topics whose publishes fail.
type plainBroker struct {
	inner      *inmemory.Broker
	failTopics []string
}

func (p *plainBroker) Init(ctx context.Context, md components.Metadata) error {
	if v, ok := md.Properties["failTopics"]; ok {
		p.failTopics = strings.Split(v, ",")
		delete(md.Properties, "failTopics")
	}
	return p.inner.Init(ctx, md)
}

func (p *plainBroker) Features() []cpubsub.Feature { return nil }

func (p *plainBroker) Publish(ctx context.Context, req *cpubsub.PublishRequest) error {
	if slices.Contains(p.failTopics, req.Topic) {
		return errors.New("broker refuses topic " + req.Topic)
	}
	return p.inner.Publish(ctx, req)
}

func (p *plainBroker) Subscribe(ctx context.Context, req cpubsub.SubscribeRequest, h cpubsub.Handler) error {
	return p.inner.Subscribe(ctx, req, h)
}

func (p *plainBroker) Close() error { return p.inner.Close() }

// withPlain registers pubsub.plain in a sidecar's registries.
func withPlain(o *runtime.Options) {
	o.Registries.PubSub.Register("pubsub.plain", func(d components.Deps) cpubsub.Broker {
		return &plainBroker{inner: inmemory.New(d)}
	})
}

// plain is a pubsub.plain component on the test's bus.
func plain(t testing.TB, name string, kv ...string) string {
	return strings.Replace(inMemory(t, name, kv...), "pubsub.in-memory", "pubsub.plain", 1)
}

// startPlain runs a sidecar whose registries have pubsub.plain.
func startPlain(t *testing.T, id string, port int, protocol string, resources ...string) *mechatest.Sidecar {
	t.Helper()
	return mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = id
		if port != 0 {
			o.AppPort, o.AppProtocol = port, protocol
		}
		withPlain(o)
	}, resources...)
}
